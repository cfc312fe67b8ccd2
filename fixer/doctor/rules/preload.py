"""Rules over preloading: the unit's LD_PRELOAD and the system-wide /etc/ld.so.preload."""

from __future__ import annotations

import os

from fixer.doctor.rules.base import Context, Finding, finding, rule
from fixer.doctor.snapshot import HostFacts, is_shim_name
from fixer.facts.elf import ElfInfo

CUDA_SONAMES = ("libcuda.so", "libcudart.so", "libnvidia-ml.so", "libcublas")


def is_driver_shim(path: str, info: ElfInfo | None) -> bool:
    name = os.path.basename(path).lower()
    if info is not None and info.soname == "libcuda.so.1":
        return True
    return is_shim_name(name) and "cuda" in name and "cudart" not in name


@rule
def preload_missing(ctx: Context) -> list[Finding]:
    host = ctx.host
    if host is None:
        return []
    missing = [p for p in host.preload if host.exists.get(p) is False]
    if not missing:
        return []
    logged = [e.text for e in (ctx.log.preload_ignored if ctx.log else [])][:3]
    return [
        finding(
            "preload-missing",
            "warning",
            f"LD_PRELOAD names {len(missing)} file(s) that do not exist; the loader ignores them silently",
            [f"{p}: does not exist{_origin(host, 'LD_PRELOAD')}" for p in missing] + logged,
            "ld.so treats a preload it cannot open as a warning on stderr (\"cannot be preloaded … ignored\"), "
            "which Ollama discards for its runners, so the intended shim is simply absent.",
            "Fix or drop the entries (the h100-vgpu profile uses no preload at all).",
            "preload",
        )
    ]


def _origin(host: HostFacts, name: str) -> str:
    origin = host.env_origin.get(name)
    return f" (LD_PRELOAD from {origin})" if origin else ""


@rule
def preload_interposes_dlopen(ctx: Context) -> list[Finding]:
    host = ctx.host
    if host is None:
        return []
    out = []
    for source, entries, setting in (("LD_PRELOAD", host.preload, "preload"), ("/etc/ld.so.preload", host.ld_so_preload, "ld_so_preload.remove")):
        for path in entries:
            info = host.elf_of(path)
            if info is None or not {"dlopen", "dlsym", "dlmopen"} & set(info.interposes):
                continue
            out.append(
                finding(
                    "preload-interposes-dlopen",
                    "error",
                    f"the preloaded shim {path} interposes dlopen: {source} routes ggml's load of libggml-cuda.so through it",
                    [f"{source}: {path}{_origin(host, 'LD_PRELOAD') if source == 'LD_PRELOAD' else ''}",
                     f"{path} defines {', '.join(info.interposes)}"],
                    "A preloaded object comes first in symbol lookup, so its dlopen replaces libc's for the "
                    "whole process, runners included (they inherit LD_PRELOAD). On real shim hosts this "
                    "swallowed the runner's dlopen of cuda_v12/libggml-cuda.so: discovery finished in a few "
                    "hundred milliseconds with no device and Ollama fell back to the CPU. LD_PRELOAD was the "
                    "problem, not the fix: reach the shims by name through the library path instead.",
                    "Remove the shims from LD_PRELOAD and make them findable as libcuda.so.1 / "
                    "libnvidia-ml.so.1 on the library path.",
                    setting,
                )
            )
    return out


@rule
def preload_order(ctx: Context) -> list[Finding]:
    """A CUDA-family symbol defined by several preloads where the first is not its owner."""
    host = ctx.host
    if host is None or len(host.preload) < 2:
        return []
    conflicts = [c for c in (host.runner.preload_conflicts if host.runner else ())
                 if c.winner in host.preload and c.loser in host.preload]
    out = []
    for conflict in conflicts:
        winner, loser, symbols = conflict.winner, conflict.loser, conflict.symbols
        shown = ", ".join(sorted(symbols)[:8]) + (" …" if len(symbols) > 8 else "")
        out.append(
            finding(
                "preload-order",
                "warning",
                f"{winner} is preloaded before {loser} and wins {len(symbols)} symbol(s) that belong to the latter",
                [f"LD_PRELOAD order: {' '.join(host.preload)}", f"won by {os.path.basename(winner)}: {shown}"],
                "For a symbol defined twice the first preloaded object wins; the definition the backend "
                "needs (the library whose SONAME owns the symbol) never runs.",
                f"Preload {loser} before {winner}, or drop the duplicate definitions.",
                "preload",
            )
        )
    return out


@rule
def ld_so_preload(ctx: Context) -> list[Finding]:
    host = ctx.host
    if host is None or not host.ld_so_preload:
        return []
    out = []
    shims = [p for p in host.ld_so_preload if is_shim_name(p) or os.path.basename(p).startswith(CUDA_SONAMES)
             or ((info := host.elf_of(p)) is not None and (info.soname or "").startswith(CUDA_SONAMES))]
    if shims:
        out.append(
            finding(
                "ld-so-preload-shim",
                "error",
                f"/etc/ld.so.preload loads {len(shims)} GPU shim(s) into every process on the host",
                [f"/etc/ld.so.preload: {p}" for p in shims],
                "Every program, systemd and the shell included, then runs the shim's constructors and its "
                "interposed libc functions; on real shim hosts a system-wide preload bricked two VMs. "
                "Ollama's runners also get the shim whatever their unit says.",
                "Remove these lines from /etc/ld.so.preload (other lines stay).",
                "ld_so_preload.remove",
            )
        )
    missing = [p for p in host.ld_so_preload if host.exists.get(p) is False and p not in shims]
    if missing:
        out.append(
            finding(
                "ld-so-preload-missing",
                "warning",
                f"/etc/ld.so.preload lists {len(missing)} file(s) that do not exist",
                [f"/etc/ld.so.preload: {p} (missing)" for p in missing],
                "The loader prints an error for the missing entry in every process it starts and carries on "
                "without it.",
                "Remove the dead lines.",
                "ld_so_preload.remove",
            )
        )
    return out
