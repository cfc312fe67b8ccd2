"""Where Ollama installs itself and what it ships: library dirs, backend names, the runner's library path."""

from __future__ import annotations

import os
from typing import Mapping

from fixer.facts.elf import ElfError, read_elf
from fixer.facts.linker import resolve_in_root, split_path_list
from fixer.facts.paths import host_path
from fixer.ollama.defaults import BACKEND, CUDA_LIB, DEFAULT_LIB, OLLAMA_BIN  # noqa: F401  (re-exported)

# Where install.sh and distribution packages put lib/ollama, after the one beside the binary.
LIB_CANDIDATES = (DEFAULT_LIB, "/usr/lib/ollama", "/opt/ollama/lib/ollama")
# What a ggml backend NEEDs of libggml-base when its ELF cannot say: Ollama v0.13.2+ builds it with
# SOVERSION 0 (SONAME libggml-base.so.0); older builds (and ggml before its SOVERSION) use libggml-base.so.
GGML_BASE = "libggml-base.so.0"


def is_library_dir(names: list[str]) -> bool:
    """Ollama turns a subfolder of lib/ollama into a library dir when it holds a `*ggml-*` file."""
    return any("ggml-" in n for n in names)


def library_folders(root: str, ollama_lib: str) -> list[str]:
    """The subfolders of lib/ollama that Ollama turns into library dirs, sorted."""
    inside = resolve_in_root(root, ollama_lib)
    if inside is None:
        return []
    try:
        names = sorted(os.listdir(host_path(root, inside)))
    except OSError:
        return []
    out = []
    for name in names:
        folder = resolve_in_root(root, f"{inside}/{name}")
        try:
            if folder is not None and is_library_dir(os.listdir(host_path(root, folder))):
                out.append(name)
        except OSError:
            continue
    return out


def pinned_library(env: Mapping[str, str]) -> str | None:
    """The library folder OLLAMA_LLM_LIBRARY pins discovery to; unset, empty or an `mlx_*` value (the MLX
    engine's variant) pins nothing (v0.32.15 discover/runner.go:100, v0.24.0 discover/runner.go:97)."""
    requested = env.get("OLLAMA_LLM_LIBRARY", "")
    return requested if requested and not requested.startswith("mlx_") else None


def scanned_folders(root: str, ollama_lib: str, env: Mapping[str, str]) -> list[str]:
    """The library folders `ollama serve` bootstraps in turn: only the pinned one when OLLAMA_LLM_LIBRARY
    names a folder (none when it names no folder); every one when unset or an mlx_* name (exempt from
    the pin), Vulkan folders only when OLLAMA_VULKAN is not false (v0.32.15 discover/runner.go:98-106)."""
    folders = library_folders(root, ollama_lib)
    requested = pinned_library(env)
    if requested:
        return [f for f in folders if f == requested]
    if env.get("OLLAMA_VULKAN", "").strip().lower() in ("0", "f", "false"):  # strconv.ParseBool
        folders = [f for f in folders if "vulkan" not in f]
    return folders


def cuda_major(library: str) -> str:
    """The CUDA major of a variant folder (`cuda_v13` -> "13"); cuda_v12 for anything else."""
    return "13" if library.endswith("13") else "12"


def bundled_sonames(library: str) -> tuple[str, ...]:
    """The driver and the CUDA libraries a CUDA backend of `library` NEEDs (Ollama bundles all but the driver)."""
    major = cuda_major(library)
    return ("libcuda.so.1", f"libcudart.so.{major}", f"libcublas.so.{major}", f"libcublasLt.so.{major}")


def guess_lib(root: str, binary: str | None) -> str:
    """lib/ollama for the binary ExecStart names (as Ollama finds it, lib_ollama_path), else the first
    install location present."""
    candidates = []
    if binary and binary.startswith("/"):
        found = lib_ollama_path(root, binary)
        if found != os.path.dirname(resolve_in_root(root, binary, strict=False) or binary):
            candidates.append(found)
    candidates += list(LIB_CANDIDATES)
    return next((c for c in candidates if os.path.isdir(host_path(root, c))), DEFAULT_LIB)


def lib_ollama_path(root: str, ollama_bin: str, cwd: str = "/", generation: str = "llama-server") -> str:
    """ml.LibOllamaPath on Linux, from the executable's real path inside `root` and the working directory:
    the first candidate that exists, else the executable's own folder. v0.30+ (v0.32.15 ml/path.go:19-53,
    :78-118): exeDir/../lib/ollama, exeDir/lib/ollama, then build/ and dist/linux-ARCH/ beside the binary
    and in the working directory, each a directory. v0.13-v0.24 (v0.24.0 ml/path.go:16-56):
    exeDir/../lib/ollama, exeDir/build/lib/ollama, cwd/build/lib/ollama, anything that exists."""
    exe = resolve_in_root(root, ollama_bin, strict=False) or ollama_bin
    exe_dir = os.path.dirname(exe)
    if generation == "runner-engine":
        candidates = [f"{exe_dir}/../lib/ollama", f"{exe_dir}/build/lib/ollama", f"{cwd}/build/lib/ollama"]
    else:
        arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
        local = [f"{{}}/build/lib/ollama", f"{{}}/dist/linux-{arch}/lib/ollama", f"{{}}/dist/linux_{arch}/lib/ollama"]
        candidates = [f"{exe_dir}/../lib/ollama", f"{exe_dir}/lib/ollama"] + [
            form.format(base) for base in (exe_dir, cwd) for form in local]
    for candidate in dict.fromkeys(os.path.normpath(c) for c in candidates):
        inside = resolve_in_root(root, candidate)
        if inside is not None and (generation == "runner-engine" or os.path.isdir(host_path(root, inside))):
            return candidate
    return exe_dir


def find_llama_server(root: str, ollama_bin: str, ollama_lib: str) -> str | None:
    """FindLlamaServer on Linux (llm/llama_binary.go:61-157, same blob v0.30.0...v0.33.0-rc2): lib/ollama
    first, then exeDir/../lib/ollama, then the build/dist layouts next to the binary. Not the binary's
    own folder (darwin only, :92-94)."""
    exe = resolve_in_root(root, ollama_bin, strict=False) or ollama_bin
    exe_dir = os.path.dirname(exe)
    dirs = [ollama_lib, os.path.normpath(f"{exe_dir}/../lib/ollama"), f"{exe_dir}/build/lib/ollama",
            f"{exe_dir}/dist/linux-amd64/lib/ollama", f"{exe_dir}/dist/linux_amd64/lib/ollama"]
    for folder in dict.fromkeys(dirs):
        candidate = f"{folder}/llama-server"
        inside = resolve_in_root(root, candidate)
        if inside is not None and os.path.isfile(host_path(root, inside)):
            return candidate
    return None


def runner_library_path(ollama_lib: str, library: str, env: Mapping[str, str]) -> list[str]:
    """LD_LIBRARY_PATH as the v0.13–v0.24 runner gets it: lib/ollama and the variant dir, then the service's."""
    return [ollama_lib, f"{ollama_lib}/{library}"] + split_path_list(env.get("LD_LIBRARY_PATH"))


def ggml_base_name(root: str, backend: str) -> str:
    """The libggml-base name that `backend` (an absolute path inside `root`) NEEDs: the one ld.so looks
    for when the backend is dlopened, so the one the runner's libggml-base must answer to."""
    real = resolve_in_root(root, backend)
    if real is not None:
        try:
            needed = read_elf(host_path(root, real), symbols=False).needed
        except (ElfError, OSError):
            needed = []
        for name in needed:
            if name == "libggml-base.so" or name.startswith("libggml-base.so."):
                return name
    return GGML_BASE
