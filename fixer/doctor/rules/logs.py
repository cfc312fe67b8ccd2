"""Rules over Ollama's log: what discovery did, and why the GPU is or is not in use."""

from __future__ import annotations

import os
import re

from fixer.doctor.rules import libs, preload
from fixer.doctor.rules.base import Context, Finding, finding, rule
from fixer.doctor.rules.preload import is_driver_shim
from fixer.ollama.logs import BOOTSTRAP_TIMEOUT_S, SLOW_BOOTSTRAP_S, Event, LogSummary
from fixer.ollama.versions import LLAMA_SERVER, RUNNER_ENGINE

# Emulated display adapters and BMCs: a VM or server has these without any usable GPU.
NOT_A_GPU_VENDORS = {"0x1234", "0x1b36", "0x1af4", "0x15ad", "0x1013", "0x1414", "0x5853", "0x80ee", "0x102b", "0x1a03"}


def _folder(libdirs: list[str]) -> str:
    return os.path.basename(libdirs[-1].rstrip("/")) if libdirs else ""


def _fast_gpu_bootstraps(log: LogSummary) -> list[Event]:
    return [e for e in log.gpu_bootstraps() if (e.data.get("seconds") or 0) < SLOW_BOOTSTRAP_S]


def _on_cpu(log: LogSummary | None) -> bool:
    return log is not None and log.cpu_fallback


def likely_causes(ctx: Context) -> list[Finding]:
    """Host findings that explain a backend that never loaded, most likely first."""
    if ctx.host is None:
        return []
    checks = (
        preload.preload_interposes_dlopen,
        preload.ld_so_preload,
        libs.libcuda_unresolvable,
        libs.shim_soname,
        libs.shim_missing_exports,
        libs.cudart_replaced,
        libs.shim_shadows_bundled,
    )
    return [f for check in checks for f in check(ctx) if f.severity == "error"]


def _unverified_preload(ctx: Context) -> str | None:
    """A preloaded driver shim we could not inspect: still the first suspect on a shim host."""
    host = ctx.host
    if host is None:
        return None
    shims = [p for p in host.preload if is_driver_shim(p, host.elf_of(p))]
    return shims[0] if shims else None


def _other_outcome(log: LogSummary) -> bool:
    """The log names what happened to the device (dropped by a filter, a crash, a failure): not a silent load failure."""
    return bool(log.filtered or log.verifying or log.failures or log.driver_too_old or log.arch_dropped
                or log.igpu_dropped or log.zero_memory or log.watchdog or log.startup_timeouts)


@rule
def log_not_ollama(ctx: Context) -> list[Finding]:
    """A log given to doctor in which not one line is Ollama's: say so, instead of judging from nothing."""
    log = ctx.log
    if log is None or log.recognised:
        return []
    evidence = [f"first line: {log.first_line}"] if log.first_line else ["the log is empty"]
    return [finding(
        "log-not-ollama", "warning",
        f"the log holds no Ollama log line ({log.lines} line(s) read, none of them Ollama's)",
        evidence,
        "doctor reads Ollama's own lines (`time=… level=… source=… msg=…` and its plain loader messages) "
        "as journalctl prints them (short, -o cat, -o json), and as docker logs [--timestamps], docker compose "
        "logs and kubectl logs [--timestamps] [--prefix] wrap them. Nothing in this file is one of those, so "
        "no finding below comes from Ollama's log.",
        "Give the ollama service's own log: `journalctl -u ollama --no-pager > FILE`, `docker logs --timestamps "
        "CONTAINER > FILE 2>&1`, `docker compose logs ollama > FILE` or `kubectl logs POD > FILE`.",
    )]


@rule
def backend_never_loaded(ctx: Context) -> list[Finding]:
    log = ctx.log
    if log is None or not _on_cpu(log) or _other_outcome(log):
        return []
    fast = _fast_gpu_bootstraps(log)
    if not fast or len(fast) != len(log.gpu_bootstraps()):
        return []
    folders = ", ".join(dict.fromkeys(_folder(e.data.get("libdirs", [])) for e in fast))
    evidence = [e.text for e in fast[:2]]
    if log.initial_count is not None:
        evidence.append(f"initial_count={log.initial_count}: the runner reported no device")
    evidence.append("no \"verifying if device is supported\" line")
    evidence += [e.text for e in log.compute[:1]]
    causes = likely_causes(ctx)
    suspect = _unverified_preload(ctx)
    if causes:
        headline = causes[0].summary
        cause_text = "Most likely cause on this host: " + "; ".join(c.summary for c in causes[:3]) + "."
        setting = causes[0].fix.setting
    elif suspect:
        headline = f"LD_PRELOAD of the driver shim {suspect} (it interposes dlopen on shim hosts of this kind)"
        cause_text = (f"Most likely cause: the unit preloads the driver shim {suspect}; shims of this kind "
                      "interpose libc's dlopen and swallowed ggml's load of the backend on real hosts.")
        setting = "preload"
    else:
        headline = "a library or symbol the backend needs did not resolve in the runner"
        cause_text = ("The host probe found no single culprit: run `vgpu-fix verify` (it repeats the runner's "
                      "dlopen and prints the loader's error) or set OLLAMA_DEBUG=2 to see the runner's stderr.")
        setting = None
    pinned = ctx.host.env.get("OLLAMA_LLM_LIBRARY") if ctx.host else log.server_env.get("OLLAMA_LLM_LIBRARY")
    llama_server = log.generation == LLAMA_SERVER
    nvml = ("in this generation NVML is read only for the cuda_v12 driver gate, which logs \"NVIDIA driver too "
            "old\" when it drops a device" if llama_server else
            "discovery in this Ollama range does not use NVML at all, so no NVML device count is involved")
    not_cause = (
        f" Not the cause: OLLAMA_LLM_LIBRARY={pinned} only selects which folder is tried, and the bootstrap "
        f"line shows discovery ran for {folders}; it bypasses nothing — {nvml}."
        if pinned
        else ""
    )
    how = (("Discovery started the bundled llama-server for the CUDA folder (GGML_BACKEND_PATH = its "
            "libggml-cuda.so) and it listed no CUDA device within ", "ggml's dlopen of the backend or its "
            "ggml_backend_init failed, or CUDA found no device, and Ollama logs neither. ")
           if llama_server else
           ("Discovery started `ollama runner` for the CUDA folder and it answered within ",
            "the runner's dlopen of libggml-cuda.so (RTLD_NOW) or its ggml_backend_init failed, and every "
            "such failure is silent in Ollama. "))
    return [
        finding(
            "backend-never-loaded",
            "error",
            f"the CUDA backend never loaded in the discovery runner ({folders}): {headline}",
            evidence,
            how[0] + f"{max(e.data.get('seconds') or 0 for e in fast):.2f} s with no device, so ggml never "
            "registered the CUDA backend: " + how[1] + "A backend that loads but finds a device that fails "
            "would instead show a \"verifying if device is supported\" line; one that crashes a \"failure "
            "during … GPU discovery\" line; a hung one a ~30 s pause. "
            + cause_text
            + not_cause,
            causes[0].fix.text if causes else ("Stop preloading the shims; reach them through the library path."
                                               if suspect else "Run `vgpu-fix verify` to see the loader error."),
            setting,
        )
    ]


@rule
def no_gpu_library_tried(ctx: Context) -> list[Finding]:
    log = ctx.log
    if log is None or not _on_cpu(log) or not log.bootstraps or log.gpu_bootstraps():
        return []
    evidence = [e.text for e in log.skipped_libraries[:3]] + [e.text for e in log.bootstraps[:1]]
    return [
        finding(
            "no-gpu-library-tried",
            "error",
            "discovery started no runner for a GPU library folder",
            evidence,
            "Every bootstrap ran with lib/ollama alone. Either OLLAMA_LLM_LIBRARY names no existing folder "
            "(the log then shows \"skipping available library at user's request\" for each), or lib/ollama "
            "has no cuda_v12/cuda_v13 subfolder (a CPU-only install or a damaged tree).",
            "Set OLLAMA_LLM_LIBRARY to the CUDA folder name (or unset it); reinstall Ollama if the folder is missing.",
            "service.environment.OLLAMA_LLM_LIBRARY",
        )
    ]


@rule
def discovery_timeout(ctx: Context) -> list[Finding]:
    log = ctx.log
    if log is None:
        return []
    slow = [e for e in log.bootstraps if (e.data.get("seconds") or 0) >= SLOW_BOOTSTRAP_S]
    timeouts = [e for e in log.failures if e.data.get("timeout")] + log.watchdog + log.startup_timeouts
    gaps = [(a, b, s) for a, b, s in log.gaps if s < BOOTSTRAP_TIMEOUT_S * 3]
    if not (slow or timeouts or gaps):
        return []
    evidence = [e.text for e in slow[:2]] + [e.text for e in timeouts[:3]]
    evidence += [f"{s:.1f} s pause between log lines {a.line} and {b.line}" for a, b, s in gaps[:2]]
    return [
        finding(
            "discovery-timeout",
            "error" if _on_cpu(log) else "warning",
            f"{'llama-server' if log.generation == LLAMA_SERVER else 'a discovery runner'} hung until "
            f"Ollama's {BOOTSTRAP_TIMEOUT_S:.0f} s discovery limit",
            evidence,
            ("Ollama waits at most 30 s (hard-coded) for llama-server to print its system_info line and "
             "list the devices, then kills it and drops that library folder (discover/runner.go watchdog). "
             if log.generation == LLAMA_SERVER else
             "Ollama waits at most 30 s (hard-coded) for each discovery runner to answer GET /info, then "
             "kills it and drops that library folder. ")
            + "A discovery process that hangs is usually stuck in the driver "
            "shim's initialisation: the para-virtual device or the host-side mediator not answering, the "
            "sandbox blocking the device, or a second library folder (cuda_v13) whose runner never returns.",
            "Check the shim can reach the device outside Ollama; apply the sandbox directives; pin the one "
            "CUDA folder that works so no other folder is tried.",
            "service.environment.OLLAMA_LLM_LIBRARY",
        )
    ]


@rule
def devices_filtered(ctx: Context) -> list[Finding]:
    log = ctx.log
    if log is None or not log.filtered:
        return []
    evidence = [e.text for e in log.verifying[:2]] + [e.text for e in log.filtered[:2]]
    pinned = (ctx.host.env.get("OLLAMA_LLM_LIBRARY") if ctx.host else None) or log.server_env.get("OLLAMA_LLM_LIBRARY")
    mig = [e.text for e in log.compute + log.verifying + log.filtered if MIG_DEVICE.search(e.text)]
    if mig and log.generation != LLAMA_SERVER:
        return [finding(
            "mig-second-pass",
            "error" if _on_cpu(log) else "warning",
            f"{len(log.filtered)} MIG slice(s) dropped by Ollama's second discovery pass: an Ollama limit, not the shim",
            mig[:1] + evidence,
            "Ollama v0.13.2-v0.24 re-checks each CUDA device in a runner started with CUDA_VISIBLE_DEVICES=<the "
            "device's UUID> and GGML_CUDA_INIT=1 (v0.24.0 discover/runner.go:118-180). For a MIG slice that "
            "UUID is the parent GPU's, and CUDA enumerates no device of a MIG-enabled GPU named that way, so "
            "the slice is filtered whatever library serves it (ollama#14031, ollama#13800).",
            "Ollama v0.30.0 or newer re-checks by device index (v0.32.15 ml/device.go:631-673); or give the "
            "guest the whole GPU (MIG disabled). No profile setting changes how Ollama names the device.",
        )]
    return [
        finding(
            "devices-filtered",
            "error" if _on_cpu(log) else "warning",
            f"{len(log.filtered)} device(s) found by the first pass were dropped by the second",
            evidence,
            "Ollama re-checks every CUDA device in a fresh "
            + ("llama-server with CUDA_VISIBLE_DEVICES=<device index> and " if log.generation == LLAMA_SERVER
               else "runner with CUDA_VISIBLE_DEVICES=<device UUID> and ") +
            "GGML_CUDA_INIT=1 (full initialisation). On shim hosts that runner crashed or found no device — "
            "the shim did not accept the UUID filter or its deep init failed — and Ollama dropped the device. "
            "A shim reporting driver 13.0 made this worse (cuda_v13 is tried too).",
            "Pin cuda_v12 and keep CUDA_VISIBLE_DEVICES out of the unit; if the device is still filtered the "
            "shim (or Ollama) needs a fix for UUID-filtered deep init — no profile setting can supply it."
            if pinned != "cuda_v12"
            else "The shim (or Ollama) needs a fix for UUID-filtered deep init; no profile setting can supply it.",
            "service.environment.OLLAMA_LLM_LIBRARY" if pinned != "cuda_v12" else None,
        )
    ]


def _driver_major(text: str | None) -> int | None:
    if not text:
        return None
    head = text.split(".")[0]
    if not head.isdigit():
        return None
    value = int(head)
    return value // 1000 if value >= 1000 else value


@rule
def driver_prefers_cuda_v13(ctx: Context) -> list[Finding]:
    host, log = ctx.host, ctx.log
    driver = log.driver if log else None
    major = _driver_major(driver)
    has_v13 = bool(host and "cuda_v13" in host.ggml_dirs())
    pinned = (host.env.get("OLLAMA_LLM_LIBRARY") if host else None) or (log.server_env.get("OLLAMA_LLM_LIBRARY") if log else None)
    on_v13 = [e for e in (log.gpu_devices if log else []) if "cuda_v13" in e.data.get("libdirs", "")]
    if on_v13 and pinned != "cuda_v13":
        return [
            finding(
                "driver-prefers-cuda-v13",
                "warning",
                "Ollama chose the cuda_v13 backend (PTX only) for the GPU",
                [e.text for e in on_v13[:1]],
                "With a driver reporting 13.0 Ollama prefers the newest CUDA folder. cuda_v13 carries PTX that "
                "the driver must JIT-compile; a shim without JIT support fails at the first kernel, and the "
                "cubin build in cuda_v12 covers compute capability 9.0 (H100) directly.",
                "Pin OLLAMA_LLM_LIBRARY=cuda_v12 (or use the h100-vgpu-cuda13 profile if the shim supports JIT).",
                "service.environment.OLLAMA_LLM_LIBRARY",
            )
        ]
    if not has_v13 or pinned in ("cuda_v12", "cuda_v13"):
        if has_v13 and pinned == "cuda_v12" and host is not None and host.shim_host:
            note = f"the logged driver is {driver}" if driver else "no driver version in the log (shims of this kind have reported 13000)"
            return [
                finding(
                    "driver-prefers-cuda-v13",
                    "info",
                    "keep OLLAMA_LLM_LIBRARY=cuda_v12: without the pin Ollama would prefer cuda_v13",
                    [f"{host.ollama_lib}/cuda_v13 exists", "OLLAMA_LLM_LIBRARY=cuda_v12", note],
                    "A driver (or shim) reporting 13.0 makes Ollama prefer the newest folder, cuda_v13, which "
                    "is PTX only and needs a JIT-capable driver; the pin keeps the cubin build for compute 9.0.",
                    "Keep the pin (the h100-vgpu profile sets it).",
                    "service.environment.OLLAMA_LLM_LIBRARY",
                )
            ]
        return []
    if major is not None and major >= 13:
        return [
            finding(
                "driver-prefers-cuda-v13",
                "warning",
                f"driver {driver} makes Ollama prefer cuda_v13 and nothing pins cuda_v12",
                [f"driver={driver}", f"{host.ollama_lib if host else 'lib/ollama'}/cuda_v13 exists"],
                "Ollama keeps the newest CUDA folder that sees every device; cuda_v13 is PTX only and needs a "
                "JIT-capable driver, which shims of this kind are not.",
                "Set OLLAMA_LLM_LIBRARY=cuda_v12.",
                "service.environment.OLLAMA_LLM_LIBRARY",
            )
        ]
    return []


@rule
def no_gpu_visible(ctx: Context) -> list[Finding]:
    host, log = ctx.host, ctx.log
    if host is None or host.pci_gpus is None:
        return []
    if log is not None and (log.verifying or log.gpu_devices):
        return []
    candidates = [g for g in host.pci_gpus if g.split()[-1].split(":")[0] not in NOT_A_GPU_VENDORS]
    if candidates:
        return []
    return [
        finding(
            "no-gpu-visible",
            "external",
            "no GPU device is visible to this guest at all",
            [f"PCI display controllers: {', '.join(host.pci_gpus) or 'none'}"],
            "The para-virtual GPU device is not on this VM's PCI bus, so no shim, driver or Ollama setting can "
            "reach a GPU. This is outside the guest: the device must be attached to the VM and the host-side "
            "mediator must be running. Do not install the NVIDIA driver in the guest to \"fix\" it.",
            "Ask the hypervisor administrator to attach the GPU device to this VM (and start the host-side "
            "mediator); then run doctor again.",
        )
    ]


@rule
def cpu_fallback_without_debug(ctx: Context) -> list[Finding]:
    log = ctx.log
    if log is None or not _on_cpu(log) or log.bootstraps or log.debug or _other_outcome(log):
        return []
    return [
        finding(
            "cpu-fallback-no-debug",
            "info",
            "Ollama runs on the CPU and the log has no discovery details",
            [e.text for e in log.compute[:1]],
            "Without OLLAMA_DEBUG=1 Ollama logs only the outcome (\"inference compute\" id=cpu). With it, the "
            "bootstrap timings, initial_count and the verify/filter lines tell a backend that never loaded "
            "from a device that was filtered or a runner that hung.",
            "Set OLLAMA_DEBUG=1 for one restart and run doctor again on the new log.",
            "service.environment.OLLAMA_DEBUG",
        )
    ]


@rule
def loader_errors_logged(ctx: Context) -> list[Finding]:
    log = ctx.log
    if log is None:
        return []
    out = []
    if log.preload_ignored:
        out.append(
            finding(
                "preload-ignored-logged",
                "warning",
                "the dynamic loader reported preloads it could not load",
                [e.text for e in log.preload_ignored[:3]],
                "ld.so skips a preload it cannot open or that has the wrong architecture and only says so on "
                "stderr; the shim meant to be there is missing from the process.",
                "Fix or drop the preload entries.",
                "preload",
            )
        )
    if log.loader_errors:
        out.append(
            finding(
                "loader-error-logged",
                "error",
                "the dynamic loader failed to resolve a library or symbol",
                [e.text for e in log.loader_errors[:3]],
                "A missing NEEDED library or an undefined symbol stops the program (or the dlopen) that hit it; "
                "for the CUDA backend that means CPU fallback.",
                "Make the named library resolvable (library path) or use a shim that exports the symbol.",
                "library_path",
            )
        )
    if log.backend_failed:
        out.append(
            finding(
                "backend-load-failed-logged",
                "error",
                "ggml reported a backend it could not load",
                [e.text for e in log.backend_failed[:3]],
                "ggml's loader tried the backend library and gave up: the error names the missing library or "
                "symbol, or the backend's own init returned nothing.",
                "Fix what the error names (see the other findings for the library path and shims).",
                "library_path",
            )
        )
    failed_init = [e for e in log.cuda_init if e.kind == "cuda_init_failed"]
    if failed_init:
        out.append(
            finding(
                "cuda-init-failed-logged",
                "error",
                "the CUDA backend loaded but CUDA initialisation failed",
                [e.text for e in failed_init[:2]],
                "cudaGetDeviceCount failed inside the backend: the runtime could not talk to the driver "
                "(a shim that rejects the runtime's version, a missing device, or a sandbox hiding it).",
                "Check the shim reaches the device and reports a driver version the bundled runtime accepts.",
            )
        )
    return out


@rule
def runner_crashes(ctx: Context) -> list[Finding]:
    log = ctx.log
    if log is None or not (log.crashes or log.load_timeouts):
        return []
    evidence = [e.text for e in log.crashes[:3]] + [e.text for e in log.load_timeouts[:2]]
    return [
        finding(
            "runner-crashed",
            "warning",
            f"runners crashed or timed out ({len(log.crashes)} crash line(s), {len(log.load_timeouts)} load timeout(s))",
            evidence,
            "A model runner that dies or never answers takes its model with it; on shim hosts the first load "
            "through the shim can exceed the default 5 min load timeout, and crashes in the shim show up here.",
            "Raise OLLAMA_LOAD_TIMEOUT (service.environment; h100-vgpu's load_timeout) and check the shim's own log for the crash.",
            "service.environment.OLLAMA_LOAD_TIMEOUT",
        )
    ]


@rule
def runner_crashed_in_init(ctx: Context) -> list[Finding]:
    log = ctx.log
    if log is None or log.generation == LLAMA_SERVER:
        return []
    crashed = [e for e in log.failures if e.data.get("crashed") and e.data.get("generation") == RUNNER_ENGINE]
    if not crashed:
        return []
    first = crashed[0].data
    second_pass = [e for e in crashed if "GGML_CUDA_INIT" in (e.data.get("extra_envs") or {})]
    folders = ", ".join(dict.fromkeys(_folder(e.data.get("libdirs", [])) for e in crashed))
    detail = first.get("detail") or ""
    stage = ("in the second pass (CUDA_VISIBLE_DEVICES=<uuid>, GGML_CUDA_INIT=1: the full CUDA initialisation)"
             if second_pass else "in the first pass")
    return [
        finding(
            "runner-crashed-in-init",
            "error" if _on_cpu(log) else "warning",
            f"the CUDA backend loaded and then crashed during initialisation in the discovery runner ({folders})",
            [e.text for e in crashed[:2]] + [e.text for e in log.compute[:1]],
            f"Ollama logs \"runner crashed\" only when the discovery runner died from a signal {stage} "
            "(a plain exit is logged at TRACE only; discover/runner.go, ml/device.go): ggml had loaded "
            "libggml-cuda.so and the process crashed inside CUDA initialisation — not a backend that never "
            "loaded. On shim hosts the shim's deep init (cuInit, context creation, the UUID filter of the "
            "second pass) is what crashes"
            + (f"; the runner's last error line was: {detail}." if detail else "."),
            "Check the shim reaches the device outside Ollama (its own log names the crash); pin the one CUDA "
            "folder that works (OLLAMA_LLM_LIBRARY=cuda_v12) and keep CUDA_VISIBLE_DEVICES out of the unit. A "
            "crash in the second pass needs a shim (or Ollama) that survives GGML_CUDA_INIT=1 — no profile "
            "setting can supply that.",
            None if second_pass else "service.environment.OLLAMA_LLM_LIBRARY",
        )
    ]


# A MIG slice as the CUDA runtime names it ("NVIDIA A100-SXM4-40GB MIG 1g.5gb") or its UUID ("MIG-...").
MIG_DEVICE = re.compile(r"\bMIG[- ](?:\d+g\.\d+gb|[0-9a-f]{8}-)", re.IGNORECASE)


# Folder names Ollama has shipped under lib/ollama (any release); a pin outside these names no folder.
_FOLDER_NAME = re.compile(r"^(?:cuda_v\d+|cuda_jetpack\d+|rocm(?:_v[\d_]+)?|vulkan|mlx_\w+)$")


@rule
def llm_library_invalid_logged(ctx: Context) -> list[Finding]:
    """The log-only form of service.llm_library_invalid: `server config` names a pin that matched no folder."""
    log = ctx.log
    if log is None or (ctx.host is not None and ctx.host.lib_present) or not _on_cpu(log):
        return []
    value = log.server_env.get("OLLAMA_LLM_LIBRARY", "").strip().strip("\"'")
    if not value or value.startswith("mlx_"):
        return []
    skipped = {os.path.basename(e.data.get("libDir", "").rstrip("/")) for e in log.skipped_libraries}
    tried = {_folder(e.data.get("libdirs", [])) for e in log.bootstraps + log.failures}
    if value in skipped or value in tried:
        return []
    if not skipped and _FOLDER_NAME.match(value):
        return []  # a plausible folder name, and no debug lines to show it missing
    evidence = [f"server config: OLLAMA_LLM_LIBRARY:{value}"] + [e.text for e in log.skipped_libraries[:3]]
    evidence += [e.text for e in log.compute[:1]]
    return [
        finding(
            "llm-library-invalid",
            "error",
            f"OLLAMA_LLM_LIBRARY={value} names no library folder, so every GPU folder was skipped (CPU only)",
            evidence,
            "Ollama compares OLLAMA_LLM_LIBRARY with the base name of each lib/ollama subfolder and skips every "
            "folder that differs, before any discovery process starts — so the log has no bootstrap line, only "
            "the value in \"server config\" (and, with OLLAMA_DEBUG=1, one \"skipping available library\" line "
            "per folder). Values such as `cuda` or `cpu_avx2` match nothing.",
            "Set OLLAMA_LLM_LIBRARY to an existing folder name (cuda_v12) or remove it.",
            "service.environment.OLLAMA_LLM_LIBRARY",
        )
    ]
