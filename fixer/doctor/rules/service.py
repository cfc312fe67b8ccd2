"""Rules over the unit: environment variables, drop-ins, ExecStart, packaging."""

from __future__ import annotations

import os

from fixer.doctor.rules.base import Context, Finding, finding, rule
from fixer.facts.systemd import exec_argv

# Variables whose shadowing or leftovers change what the runner does.
RELEVANT_PREFIXES = ("OLLAMA_", "LD_", "CUDA_", "GGML_")


def _where(ctx: Context, name: str) -> str:
    origin = ctx.host.env_origin.get(name) if ctx.host else None
    return f" (set in {origin})" if origin else ""


@rule
def llm_library_invalid(ctx: Context) -> list[Finding]:
    host = ctx.host
    value = host.env.get("OLLAMA_LLM_LIBRARY") if host else None
    if host is None or value is None or not host.lib_present:
        return []
    dirs = host.ggml_dirs()
    if value in dirs:
        return []
    evidence = [f"OLLAMA_LLM_LIBRARY={value}{_where(ctx, 'OLLAMA_LLM_LIBRARY')}", f"library folders in {host.ollama_lib}: {', '.join(dirs) or 'none'}"]
    if ctx.log:
        evidence += [e.text for e in ctx.log.skipped_libraries[:3]]
    best = "cuda_v12" if "cuda_v12" in dirs else (dirs[0] if dirs else "cuda_v12")
    return [
        finding(
            "llm-library-invalid",
            "error",
            f"OLLAMA_LLM_LIBRARY={value} names no library folder, so every GPU folder is skipped (CPU only)",
            evidence,
            "Ollama compares OLLAMA_LLM_LIBRARY with the name of each subfolder of lib/ollama that holds a "
            "ggml backend and skips every folder that differs. Values such as `cuda`, `cuda_v12_avx` or "
            "`cpu_avx2` (from older Ollama releases) match nothing, so discovery runs no GPU runner at all.",
            f"Set OLLAMA_LLM_LIBRARY to an existing folder name ({best}) or remove it.",
            "service.environment.OLLAMA_LLM_LIBRARY",
        )
    ]


NOOP = {
    "OLLAMA_NUM_GPU": (
        "noop-num-gpu",
        "Ollama reads no OLLAMA_NUM_GPU variable; the number of offloaded layers is the per-request "
        "`num_gpu` option (or a Modelfile PARAMETER). Setting it here changes nothing and suggests a "
        "knob that does not exist.",
    ),
    "OLLAMA_LIBRARY_PATH": (
        "noop-library-path",
        "Ollama overwrites OLLAMA_LIBRARY_PATH for every runner it starts with lib/ollama and the library "
        "folder being tried, so a value set in the unit never reaches the backend loader.",
    ),
}


@rule
def noop_variables(ctx: Context) -> list[Finding]:
    if ctx.host is None:
        return []
    out = []
    for name, (fid, why) in NOOP.items():
        if name in ctx.host.env:
            out.append(
                finding(
                    fid,
                    "info",
                    f"{name} is set but has no effect",
                    [f"{name}={ctx.host.env[name]}{_where(ctx, name)}"],
                    why,
                    f"Remove {name} from the unit (the profile unsets it).",
                    "service.unset",
                )
            )
    return out


@rule
def dropin_without_service(ctx: Context) -> list[Finding]:
    if ctx.host is None:
        return []
    out = []
    for d in ctx.host.dropins:
        if not d.has_service:
            out.append(
                finding(
                    "dropin-without-service",
                    "warning",
                    f"drop-in {d.path} has no [Service] section and is ignored",
                    [d.path],
                    "systemd applies a setting only inside its section; a drop-in whose Environment= lines "
                    "are not under a [Service] header changes nothing, however right its values look.",
                    "Put the settings under [Service]; the profile writes its own drop-in with the header.",
                    "service.dropin",
                )
            )
    return out


@rule
def env_shadowed(ctx: Context) -> list[Finding]:
    """A variable set in one file and replaced or unset by a later one; ours shadowed is an error."""
    if ctx.host is None:
        return []
    out = []
    for name, history in ctx.host.env_history.items():
        if len(history) < 2 or not name.startswith(RELEVANT_PREFIXES):
            continue
        last_path, last_value = history[-1]
        earlier = [(p, v) for p, v in history[:-1] if p != last_path and v != last_value]
        if not earlier:
            continue
        ours = [p for p, _ in earlier if os.path.basename(p) == ctx.our_dropin]
        shown = "unset" if last_value is None else f"{name}={last_value}"
        evidence = [f"{p}: {name}={v}" if v is not None else f"{p}: UnsetEnvironment={name}" for p, v in history]
        if ours:
            out.append(
                finding(
                    "env-shadowed",
                    "error",
                    f"{name} from our drop-in is overridden by {last_path} ({shown})",
                    evidence,
                    "systemd merges drop-ins in file-name order and the last assignment of a variable wins; "
                    "`override.conf` (what `systemctl edit` writes) sorts after names like `90-….conf`.",
                    f"Remove {name} from {last_path}, or give the profile's drop-in a name that sorts last.",
                    "service.dropin",
                )
            )
        else:
            out.append(
                finding(
                    "env-overridden",
                    "info",
                    f"{name} is set in several files; {last_path} wins ({shown})",
                    evidence,
                    "The last assignment in systemd's drop-in order is the one the service gets; the earlier "
                    "ones only mislead whoever reads them.",
                    f"Keep {name} in one place (the profile's drop-in).",
                    f"service.environment.{name}",
                )
            )
    return out


@rule
def cuda_visible_devices(ctx: Context) -> list[Finding]:
    value = ctx.host.env.get("CUDA_VISIBLE_DEVICES") if ctx.host else None
    logged = ctx.log.overrides if ctx.log else []
    if value is None and not logged:
        return []
    evidence = [f"CUDA_VISIBLE_DEVICES={value}{_where(ctx, 'CUDA_VISIBLE_DEVICES')}"] if value is not None else []
    evidence += [e.text for e in logged[:2]]
    return [
        finding(
            "cuda-visible-devices",
            "warning",
            "CUDA_VISIBLE_DEVICES is set for the service",
            evidence,
            "Ollama's second discovery pass re-checks each device with CUDA_VISIBLE_DEVICES=<its UUID>; a "
            "fixed value in the unit (an index, or a UUID the shim reports differently) can hide the only "
            "device, and Ollama itself warns that GPUs may not be discovered correctly while it is set.",
            "Unset CUDA_VISIBLE_DEVICES in the unit.",
            "service.unset",
        )
    ]


@rule
def exec_start_wrapper(ctx: Context) -> list[Finding]:
    host = ctx.host
    if host is None or not host.exec_start:
        return []
    argv = exec_argv(host.exec_start)
    if argv and os.path.basename(argv[0]) == "ollama" and argv[1:2] == ["serve"]:
        return []
    origin = host.directive_origin.get("ExecStart", host.unit_path or "the unit")
    in_dropin = origin != host.unit_path
    return [
        finding(
            "exec-start-wrapper",
            "error" if in_dropin else "warning",
            f"ExecStart runs `{' '.join(argv[:3])}`, not `ollama serve`",
            [f"{origin}: ExecStart={host.exec_start}"],
            "Ollama starts its runners from its own executable (/proc/self/exe) and locates lib/ollama "
            "relative to it. A wrapper script or another binary changes the environment the runners "
            "inherit and has repeatedly brought back the CPU fallback on shim hosts; whatever the wrapper "
            "sets belongs in the drop-in's Environment= instead.",
            f"Remove the ExecStart override from {origin} and move its settings into the profile's drop-in.",
            "files" if in_dropin else None,
        )
    ]


@rule
def snap_packaged(ctx: Context) -> list[Finding]:
    if ctx.host is None or not ctx.host.snap:
        return []
    return [
        finding(
            "snap-ollama",
            "external",
            "Ollama is installed as a snap: its library tree is read-only and its unit is generated",
            ctx.host.snap,
            "A snap's lib/ollama lives in a read-only squashfs and its service unit is written by snapd, so "
            "neither the library layout nor the drop-in environment can be corrected the way the profiles "
            "do; the snap's confinement also hides the shim directory from the service.",
            "Remove the snap and install Ollama with the official install.sh (tarball under /usr/local), "
            "then run the profile.",
        )
    ]
