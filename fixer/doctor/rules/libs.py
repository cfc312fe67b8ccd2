"""Rules over libraries: the lib/ollama tree and how the runner's loader resolves the CUDA libraries."""

from __future__ import annotations

import fnmatch
import os
import statistics

from fixer.doctor.rules.base import Context, Finding, finding, rule
from fixer.doctor.snapshot import HostFacts, is_shim_name
from fixer.facts.linker import Lookup, symbol_family
from fixer.ollama.generations import top_level_shipped
from fixer.ollama.layout import CUDA_LIB, bundled_sonames

DAY = 86400.0
ORIGINS = {"preload": "preloaded object with that SONAME", "LD_LIBRARY_PATH": "LD_LIBRARY_PATH",
           "ld.so.cache": "ld.so.cache", "default": "default directories", "RPATH": "RPATH", "RUNPATH": "RUNPATH"}


def runner_lookup(host: HostFacts, soname: str) -> Lookup | None:
    """How the runner's loader finds `soname` (fixer.facts.linker's answer, gathered with the host facts)."""
    return host.runner.lookups.get(soname) if host.runner is not None else None


@rule
def toplevel_ggml_cuda(ctx: Context) -> list[Finding]:
    host = ctx.host
    if host is None:
        return []
    out = []
    for name, entry in host.lib_top.items():
        if not fnmatch.fnmatch(name, "libggml-cuda*.so*"):
            continue
        what = f"symlink -> {entry.target}" if entry.kind == "symlink" else entry.kind
        out.append(
            finding(
                "toplevel-ggml-cuda",
                "warning",
                f"{host.ollama_lib}/{name} ({what}) cannot help and can hurt",
                [f"{host.ollama_lib}/{name}: {what}"],
                "Ollama only turns subfolders of lib/ollama into library folders; the CUDA backend in "
                f"{CUDA_LIB}/ is scanned anyway (same file). A copy at the top level is loaded by every runner, "
                "CPU-only ones included, and registers the CUDA devices twice. install.sh deletes lib/ollama "
                "on upgrade, so the link does not survive either.",
                f"Remove {host.ollama_lib}/{name}.",
                "symlinks",
            )
        )
    return out


def _outside(host: HostFacts, path: str) -> bool:
    real = host.realpaths.get(path, path)
    return not any(real == lib or real.startswith(lib + "/") for lib in (host.ollama_lib, host.lib_real))


@rule
def lib_tree_modified(ctx: Context) -> list[Finding]:
    """Files added to lib/ollama (its top and the folders Ollama scans), links that leave it, and files much
    newer than the rest of the tree."""
    host = ctx.host
    if host is None or not host.lib_present:
        return []
    entries = {f"{host.ollama_lib}/{n}": e for n, e in host.lib_top.items()}
    scanned = host.scanned_dirs()
    for sub, names in ((s, n) for s, n in host.lib_dirs.items() if s in scanned):
        entries.update({f"{host.ollama_lib}/{sub}/{n}": e for n, e in names.items()})
    # tar keeps the archive's mtimes on files (not always on links): a much newer file was changed here.
    mtimes = [e.mtime for e in entries.values() if e.kind == "file" and e.mtime]
    median = statistics.median(mtimes) if len(mtimes) >= 3 else None
    evidence = []
    shipped = top_level_shipped(ctx.generation)
    for path, entry in sorted(entries.items()):
        name = os.path.basename(path)
        top = os.path.dirname(path) == host.ollama_lib
        if top and fnmatch.fnmatch(name, "libggml-cuda*"):
            continue  # its own rule
        if top and entry.kind != "dir" and not any(fnmatch.fnmatch(name, p) for p in shipped):
            release = f"the {ctx.generation} generation of Ollama" if ctx.generation else "any known Ollama"
            evidence.append(f"{path}: not shipped at the top level by {release}")
        elif entry.kind == "symlink" and _outside(host, path):
            evidence.append(f"{path} -> {entry.target}: points outside {host.ollama_lib}")
        elif is_shim_name(name) or name.startswith(("libcuda.so", "libnvidia-ml.so")):
            evidence.append(f"{path}: driver or shim library inside Ollama's tree")
        elif median is not None and entry.kind == "file" and entry.mtime - median > DAY:
            evidence.append(f"{path}: modified {((entry.mtime - median) / DAY):.0f} days after the rest of the tree")
    if not evidence:
        return []
    return [
        finding(
            "lib-ollama-modified",
            "warning",
            f"{len(evidence)} file(s) in {host.ollama_lib} were added or changed by hand",
            evidence,
            "install.sh deletes lib/ollama and unpacks a fresh copy on every upgrade, so anything placed "
            "there is lost silently; lib/ollama is also the first directory on every runner's library path, "
            "so a foreign library there shadows the bundled one for all backends.",
            "Remove them and keep shims in their own directory reached through the library path.",
            "files",
        )
    ]


@rule
def libcuda_unresolvable(ctx: Context) -> list[Finding]:
    host = ctx.host
    if host is None or not host.lib_present or not any(d.startswith("cuda") for d in host.ggml_dirs()):
        return []
    look = runner_lookup(host, "libcuda.so.1")
    if look is None or look.path is not None:
        return []
    res = host.runner
    evidence = [f"runner search path: {':'.join(res.library_path)}", f"ld.so.cache: {res.cache}"]
    evidence += [f"skipped {c.path} ({c.origin}): {c.detail}" for c in look.candidates if c.status == "skipped"]
    evidence += [f"preloaded: {o.name} (SONAME {o.soname})" for o in res.objects if o.group == "preload"]
    if host.shim_host:
        fix = ("Make the driver shim findable as libcuda.so.1: a libcuda.so.1 symlink to it in the shim "
               "directory, and that directory on the unit's LD_LIBRARY_PATH.")
        setting = "library_path"
    else:
        fix = "Install the NVIDIA driver's user-space library (libcuda.so.1) for this GPU."
        setting = None
    return [
        finding(
            "libcuda-unresolvable",
            "error",
            "libcuda.so.1 cannot be found by Ollama's runner",
            evidence,
            "libggml-cuda.so NEEDs libcuda.so.1, which Ollama does not ship. When the loader cannot find it, "
            "the runner's dlopen of the backend fails and Ollama silently uses the CPU. A preloaded shim "
            "counts only if its ELF SONAME is exactly libcuda.so.1.",
            fix,
            setting,
        )
    ]


@rule
def shim_soname(ctx: Context) -> list[Finding]:
    """A shim meant to be the driver (or NVML) whose SONAME does not say so."""
    host = ctx.host
    if host is None:
        return []
    out = []
    for path in dict.fromkeys([*host.preload, *host.shim_paths()]):
        info = host.elf_of(path)
        name = os.path.basename(path)
        if info is None:
            continue
        expected = None
        if name.startswith("libcuda.so") or ("cuda" in name and "cudart" not in name and is_shim_name(name)):
            expected = "libcuda.so.1"
        elif name.startswith("libnvidia-ml") or ("nvml" in name and is_shim_name(name)):
            expected = "libnvidia-ml.so.1"
        elif "cudart" in name:
            expected = "libcudart.so.12" if not name.endswith("13") else "libcudart.so.13"
        if expected is None or info.soname == expected:
            continue
        if expected == "libcudart.so.12" and (info.soname or "").startswith("libcudart.so."):
            continue
        out.append(
            finding(
                "shim-soname",
                "error" if expected == "libcuda.so.1" else "warning",
                f"{path} has SONAME {info.soname or '(none)'}, not {expected}",
                [f"{path}: SONAME {info.soname or '(none)'}"],
                f"The loader satisfies `NEEDED {expected}` with an already loaded object only when that "
                "object's SONAME matches; a preloaded shim with another SONAME sits in the process unused "
                "while the loader looks for the real library (and fails on a shim host).",
                f"Use a shim built with SONAME {expected}, or link {expected} to it in the shim directory "
                "on the library path.",
                "symlinks" if expected != "libcudart.so.12" else None,
            )
        )
    return out


def _driver_api(symbol: str) -> bool:
    return symbol_family(symbol) == "libcuda.so"


@rule
def shim_missing_exports(ctx: Context) -> list[Finding]:
    """Undefined symbols of the backend's closure that libcuda.so.1's provider should define and nothing does."""
    host = ctx.host
    if host is None or not host.lib_present:
        return []
    look = runner_lookup(host, "libcuda.so.1")
    provider = look.path if look is not None else None
    if provider is None:
        return []
    missing = sorted({m.symbol + (f"@{m.version}" if m.version else "") for m in host.runner.missing_symbols
                      if m.file == "libcuda.so.1" or m.expected_from == provider or (m.file is None and _driver_api(m.symbol))})
    if not missing:
        return []
    backend = host.runner.backend
    shown = ", ".join(missing[:12]) + (f" (+{len(missing) - 12} more)" if len(missing) > 12 else "")
    return [
        finding(
            "shim-missing-exports",
            "error",
            f"the libcuda.so.1 the runner gets ({provider}) lacks {len(missing)} driver entry point(s) the backend imports",
            [f"missing: {shown}", f"backend: {backend}", f"provider: {provider}"],
            "Ollama loads libggml-cuda.so with RTLD_NOW: every undefined symbol must resolve at dlopen time, "
            "so a single missing driver entry point makes the load fail, silently, and the runner reports "
            "no GPU.",
            "Install a shim version that exports these symbols (a profile cannot add them).",
        )
    ]


@rule
def cudart_replaced(ctx: Context) -> list[Finding]:
    host = ctx.host
    if host is None or not host.lib_present:
        return []
    out = []
    for sub in host.scanned_cuda_dirs():
        soname = "libcudart.so.13" if sub.endswith("13") else "libcudart.so.12"
        path = f"{host.ollama_lib}/{sub}/{soname}"
        entry = host.lib_dirs[sub].get(soname)
        evidence = []
        if entry is None:
            evidence.append(f"{path}: missing")
        else:
            real = host.realpaths.get(path, path)
            info = host.elf_of(path)
            if _outside(host, path):
                evidence.append(f"{path} resolves to {real}, outside {host.ollama_lib}")
            if is_shim_name(real):
                evidence.append(f"{path} resolves to the shim {real}")
            if info is not None and info.soname and info.soname != soname:
                evidence.append(f"{path}: SONAME {info.soname}")
        if evidence:
            out.append(
                finding(
                    "cudart-replaced",
                    "error",
                    f"Ollama's bundled {soname} in {sub}/ is missing or replaced",
                    evidence,
                    "The backend was built against the exact CUDA runtime Ollama bundles; runners put "
                    f"{sub}/ first on their library path so that one is used. A deploy that overwrote it "
                    "(often through a symlink to a shim) broke the CUDA backend on real shim hosts.",
                    "Reinstall Ollama (install.sh restores lib/ollama) and keep the runtime shim out of the "
                    "tree; the h100-vgpu profile leaves the bundled runtime in charge.",
                )
            )
    return out


@rule
def shim_shadows_bundled(ctx: Context) -> list[Finding]:
    """A shim-named CUDA library found before Ollama's bundled copy."""
    host = ctx.host
    if host is None or not host.lib_present:
        return []
    libdir = host.cuda_dir()
    out = []
    for soname in bundled_sonames(libdir)[1:]:
        bundled = f"{host.ollama_lib}/{libdir}/{soname}"
        look = runner_lookup(host, soname)
        if look is None:
            continue
        path, how = look.found, ORIGINS.get(look.origin, look.origin)
        if path is not None and path != bundled:
            out.append(
                finding(
                    "shim-shadows-bundled",
                    "error",
                    f"{soname} resolves to {path} ({how}) instead of Ollama's bundled copy",
                    [f"{soname} -> {path} via {how}" + (f" (-> {look.path})" if look.path != path else ""),
                     f"bundled: {bundled}"],
                    "Whatever the loader finds first under a SONAME is used for the whole process. A shim or "
                    "another CUDA release under the name of a bundled library replaces Ollama's own, and the "
                    "backend then fails to load or finds no device: a known cause of CPU fallback on shim hosts.",
                    f"Remove {path} (or take it out of the preload list).",
                    "files" if look.origin != "preload" else "preload",
                )
            )
            continue
        for c in look.candidates:
            directory = os.path.dirname(c.path)
            if c.status != "shadowed" or c.origin != "LD_LIBRARY_PATH" or directory not in host.library_path:
                continue
            if not (is_shim_name(c.real or c.path) or directory.rstrip("/").endswith(("vgpu/lib", "vgpu"))):
                continue
            if soname.startswith("libcudart."):
                out.append(finding(
                    "vendor-cudart-in-shim-dir", "warning",
                    f"{soname} in the shim directory {directory} (left in place)",
                    [f"{c.path} -> {c.real or c.path}", f"bundled: {bundled} (wins for runners)"],
                    "The vendor ships its runtime there on purpose, and stock Ollama's runners never reach it "
                    "(Ollama's own folders come first), so vgpu-fix no longer deletes it. It matters only to a "
                    "process that searches the shim directory first, or to a patched Ollama that keeps the unit's "
                    "order: then the shim runtime replaces the bundled one.",
                    f"Nothing, unless verify or the log shows {c.path} loaded; then remove it by hand.",
                ))
                continue
            out.append(
                finding(
                    "shim-shadows-bundled",
                    "warning",
                    f"shim-named {soname} in {directory} (on the unit's LD_LIBRARY_PATH)",
                    [f"{c.path} -> {c.real or c.path}"],
                    "Ollama's runners search their own folders first, so today the bundled copy wins; but "
                    "every other process of the service (and a patched Ollama that keeps the unit's order) "
                    "gets the shim under the bundled library's name. Real shim hosts lost the GPU this way.",
                    f"Remove {c.path}.",
                    "files",
                )
            )
    return out
