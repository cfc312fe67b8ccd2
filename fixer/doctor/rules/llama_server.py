"""Rules over logs of the llama-server generation (Ollama v0.30+): the filters that drop a device, and why."""

from __future__ import annotations

from fixer.doctor.rules.base import Context, Finding, finding, rule
from fixer.doctor.snapshot import VGPU_GUEST_FILES
from fixer.ollama.llama_server import COMPRESSED_FATBIN_DRIVER, LEGACY_JIT_DRIVER
from fixer.ollama.logs import Event, LogSummary
from fixer.ollama.versions import LLAMA_SERVER


def _applies(log: LogSummary | None) -> bool:
    """Only a llama-server-generation log (or one whose generation is unknown) carries these messages."""
    return log is not None and log.generation in (LLAMA_SERVER, None)


def vgpu_guest(host) -> list[str]:
    """Evidence that the root is an NVIDIA vGPU guest (its driver branch is the host's to choose)."""
    return [p for p in VGPU_GUEST_FILES if host is not None and host.exists.get(p)]


def _severity(log: LogSummary) -> str:
    return "error" if log.cpu_fallback or not log.gpu_devices else "warning"


def _folders(events: list[Event]) -> str:
    names = [(e.data.get("libdirs") or ["?"])[-1].rstrip("/").rsplit("/", 1)[-1] for e in events]
    return ", ".join(dict.fromkeys(names))


@rule
def nvidia_driver_gate(ctx: Context) -> list[Finding]:
    log = ctx.log
    if not _applies(log) or not log.driver_too_old:  # type: ignore[union-attr]
        return []
    assert log is not None
    events = log.driver_too_old
    first = events[0].data
    major = first.get("driver_major")
    required = first.get("required_driver") or f"{COMPRESSED_FATBIN_DRIVER} or newer"
    devices = ", ".join(dict.fromkeys(str(e.data.get("device") or "?") for e in events))
    evidence = [e.text for e in events[:2]] + [e.text for e in log.compute[:1]]
    gate = ("Ollama's NVIDIA driver gate for the cuda_v12 folder (discover/cuda_compat.go) dropped "
            f"{devices}: the NVIDIA driver major it read ({first.get('driver')}) is below {required}. "
            "The major comes from the native probe (`ollama gpu-discover`), which dlopens libnvidia-ml.so.1, "
            "calls nvmlSystemGetDriverVersion and keeps the text before the first dot. The gate runs only "
            "for a folder named exactly cuda_v12; with no NVML reading it only warns and keeps the device.")
    if major is not None and major < 100:
        summary = (f"the NVML driver gate dropped the GPU: NVML reports driver {major}.x, a CUDA version, "
                   f"so Ollama reads driver major {major} < {required.split()[0]}")
        cause = (f" A driver major of {major} is not an NVIDIA driver branch (those are 450–580+): the "
                 "libnvidia-ml.so.1 the service loads is a vGPU NVML shim that answers the CUDA version "
                 "(e.g. \"12.9.00\") where NVML returns the driver version. The CUDA backend itself loaded "
                 "and found the device — this is not a backend that never loaded.")
        # v0.32.15 discover/native_probe_linux.go:392-417: the probe dlopens libnvidia-ml.so.1, then
        # libnvidia-ml.so; when neither loads, the major stays 0 and cuda_compat.go:37-41 only warns.
        fix = ("`vgpu-fix apply --profile h100-vgpu --set nvml_link=absent`: the profile then links no "
               "libnvidia-ml.so.1 to the NVML shim, Ollama's native probe finds no NVML, logs \"could not verify "
               "NVIDIA driver compatibility for CUDA\" and keeps the GPU. This holds only while no other "
               "libnvidia-ml.so.1 or libnvidia-ml.so is reachable for the service (verify's nvml layer names the "
               "one it would load). Or fix the shim to report the host driver's version "
               f"({COMPRESSED_FATBIN_DRIVER} or newer).")
        return [finding("nvidia-driver-gate", _severity(log), summary, evidence, gate + cause, fix, "vars.nvml_link=absent")]
    else:
        summary = f"the NVIDIA driver {first.get('driver')} is too old for the cuda_v12 runtime ({required} needed)"
        cause = (f" The bundled CUDA 12.8 runtime may use compressed fatbins (driver {COMPRESSED_FATBIN_DRIVER}+) "
                 f"and PTX JIT for compute < 7 (driver {LEGACY_JIT_DRIVER}+).")
        before = (f"v0.30.10 or older (the {COMPRESSED_FATBIN_DRIVER} rule arrived in v0.30.11, "
                  "discover/cuda_compat.go:14,60-68)"
                  if required.startswith(str(COMPRESSED_FATBIN_DRIVER)) else
                  f"v0.24.0 or older (the {LEGACY_JIT_DRIVER} rule for compute < 7 is in every v0.30 release, v0.30.0 "
                  "discover/cuda_compat.go:31-39)")
        pinned = vgpu_guest(ctx.host)
        if pinned:
            cause += (" This is an NVIDIA vGPU guest (" + ", ".join(pinned) + "): its driver branch must "
                      "match the host's vGPU manager, so it cannot be upgraded from inside the guest (R535 "
                      "guests; ollama#17290, ollama#16415).")
            fix = (f"No fix inside this guest. The options: an Ollama release before the gate, {before}, whose "
                   "bundled runtime the gate was added to protect (prove it with `vgpu-fix verify --level "
                   "model`); or a newer vGPU branch on the host, which its administrator installs.")
        else:
            fix = (f"Upgrade the NVIDIA driver to {required}; or run an Ollama release before the gate, {before}; "
                   "on a shim host make the shim report the host driver's version.")
    return [finding("nvidia-driver-gate", _severity(log), summary, evidence, gate + cause, fix)]


@rule
def driver_unverified(ctx: Context) -> list[Finding]:
    log = ctx.log
    if not _applies(log) or not log.driver_unverified:  # type: ignore[union-attr]
        return []
    assert log is not None
    evidence = [e.text for e in log.driver_unverified[:1]] + [e.text for e in log.native_failed[:1]]
    return [
        finding(
            "nvidia-driver-unverified",
            "info",
            "Ollama could not read the NVIDIA driver version, so its cuda_v12 driver gate was skipped",
            evidence,
            "The native probe got no driver major from NVML (no libnvidia-ml.so.1 reachable, or nvmlInit "
            "failed), so discover/cuda_compat.go only warned and kept every CUDA device. On a vGPU shim host "
            "whose NVML shim reports a CUDA version as the driver version this is the state that keeps the "
            "GPU; with a real NVIDIA driver it means NVML is missing from the service's library path.",
            "Nothing to do on a shim host. With a real driver, make libnvidia-ml.so.1 resolvable for the service.",
        )
    ]


@rule
def cuda_arch_not_compiled(ctx: Context) -> list[Finding]:
    log = ctx.log
    if not _applies(log) or not log.arch_dropped:  # type: ignore[union-attr]
        return []
    assert log is not None
    first = log.arch_dropped[0].data
    cc = str(first.get("cc") or "?")
    shown = f"{cc[:-2]}.{cc[-2]}" if cc.isdigit() and len(cc) >= 3 else cc
    return [
        finding(
            "cuda-arch-not-compiled",
            _severity(log),
            f"{first.get('device') or 'the CUDA device'} (compute {shown}) is not in the compiled CUDA "
            f"architectures of {_folders(log.arch_dropped)}",
            [e.text for e in log.arch_dropped[:2]],
            "llama-server's system_info lists the backend's compiled architectures (`CUDA : ARCHS = …`); "
            "Ollama drops a CUDA device whose compute capability is not in that list exactly (no PTX "
            "fallback to a lower architecture is considered; discover/llama_server.go).",
            "Use a library folder whose build lists this architecture (pin it with OLLAMA_LLM_LIBRARY), or "
            "an Ollama build compiled for it.",
        )
    ]


@rule
def integrated_gpu_dropped(ctx: Context) -> list[Finding]:
    log = ctx.log
    if not _applies(log) or not log.igpu_dropped:  # type: ignore[union-attr]
        return []
    assert log is not None
    first = log.igpu_dropped[0].data
    return [
        finding(
            "integrated-gpu-dropped",
            "error" if log.cpu_fallback else "warning",
            f"Ollama dropped the integrated GPU {first.get('description') or first.get('name') or ''}".rstrip(),
            [e.text for e in log.igpu_dropped[:2]],
            "Since v0.30 Ollama drops integrated GPUs unless OLLAMA_IGPU_ENABLE is true (by default it keeps "
            "CUDA iGPUs and ROCm gfx1151 only; discover/runner.go filterIntegratedGPUs).",
            "Set OLLAMA_IGPU_ENABLE=1 in the service's environment if the iGPU should be used.",
        )
    ]


@rule
def llama_server_failed(ctx: Context) -> list[Finding]:
    log = ctx.log
    if not _applies(log):
        return []
    assert log is not None
    failures = [e for e in log.failures if e.data.get("generation") == LLAMA_SERVER and not e.data.get("timeout")]
    missing = [e for e in log.server_errors if e.kind in ("llama_server_missing", "llama_server_start_failed")]
    if not (failures or missing):
        return []
    evidence = [e.text for e in (missing + failures)[:3]]
    if missing:
        return [
            finding(
                "llama-server-missing",
                "error",
                "Ollama could not find or start its bundled llama-server, so no GPU discovery ran",
                evidence,
                "Since v0.30 discovery runs lib/ollama/llama-server (FindLlamaServer); without it every GPU "
                "folder fails and Ollama runs on the CPU.",
                "Reinstall Ollama so lib/ollama/llama-server is present and executable by the service user.",
            )
        ]
    first = failures[0].data
    error, detail = first.get("error", ""), first.get("detail") or ""
    crashed = bool(first.get("crashed"))
    summary = (f"llama-server crashed during GPU discovery for {_folders(failures)}"
               if crashed else f"llama-server GPU discovery failed for {_folders(failures)}: {error}")
    why = ("The process was killed by a signal: the CUDA backend loaded and crashed while initialising the "
           "device (on shim hosts: inside the driver shim's cuInit/cudaGetDeviceCount). "
           if crashed else "llama-server exited with an error before it listed the devices. ")
    return [
        finding(
            "llama-server-discovery-failed",
            _severity(log),
            summary,
            evidence,
            why + (f"Its last error line: {detail}. " if detail else "")
            + "Ollama drops that library folder; with no other folder the GPU is unused.",
            "Run `vgpu-fix verify` (it starts the root's llama-server the way Ollama does and shows its "
            "stderr), or set OLLAMA_DEBUG=2 for one restart to log llama-server's own output.",
        )
    ]


@rule
def arch_filter_disabled(ctx: Context) -> list[Finding]:
    log = ctx.log
    if not _applies(log) or not (log.system_info_missing or log.arch_unchecked):  # type: ignore[union-attr]
        return []
    assert log is not None
    return [
        finding(
            "arch-filter-disabled",
            "warning",
            "Ollama could not check the GPU's compute capability against the backend's architectures",
            [e.text for e in (log.system_info_missing + log.arch_unchecked)[:2]],
            "llama-server stopped before its system_info line, or printed no compute capability or "
            "`CUDA : ARCHS`; Ollama then keeps the device unchecked. A llama-server that crashes during "
            "start-up, or one of another llama.cpp version than the bundled one, does this; a model load "
            "may then crash on an unsupported GPU.",
            "Run `vgpu-fix verify` to see llama-server's start-up output; reinstall Ollama if lib/ollama was mixed.",
        )
    ]
