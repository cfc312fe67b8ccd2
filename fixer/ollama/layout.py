"""Where Ollama installs itself and what it ships: library dirs, backend names, the runner's library path."""

from __future__ import annotations

import os
from typing import Mapping

from fixer.facts import paths
from fixer.facts.elf import ElfError, read_elf
from fixer.facts.linker import resolve_in_root, split_path_list
from fixer.model.stock_ollama import BACKEND, CUDA_LIB, DEFAULT_LIB, OLLAMA_BIN  # noqa: F401  (re-exported)

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
    return [name for name in paths.names(root, ollama_lib)
            if paths.is_dir(root, f"{ollama_lib}/{name}") and is_library_dir(paths.names(root, f"{ollama_lib}/{name}"))]


def pinned_library(env: Mapping[str, str]) -> str | None:
    """The library folder OLLAMA_LLM_LIBRARY pins discovery to; unset, empty or an `mlx_*` value (the MLX
    engine's variant) pins nothing (v0.32.15 discover/runner.go:100, v0.24.0 discover/runner.go:97)."""
    requested = env.get("OLLAMA_LLM_LIBRARY", "")
    return requested if requested and not requested.startswith("mlx_") else None


def scanned_folders(root: str, ollama_lib: str, env: Mapping[str, str]) -> list[str]:
    """The library folders `ollama serve` bootstraps in turn (see `scanned`)."""
    return scanned(library_folders(root, ollama_lib), env)


def scanned(folders: list[str], env: Mapping[str, str]) -> list[str]:
    """Of `folders`, those `ollama serve` bootstraps: only the pinned one when OLLAMA_LLM_LIBRARY names a
    folder (none when it names no folder); every one when unset or an mlx_* name (exempt from the pin),
    Vulkan folders only when OLLAMA_VULKAN is not false (v0.32.15 discover/runner.go:98-106; v0.24.0 :97)."""
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
    return next((c for c in candidates if paths.is_dir(root, c)), DEFAULT_LIB)


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
        arch = _goarch(root, exe)
        local = ["{}/build/lib/ollama", f"{{}}/dist/linux-{arch}/lib/ollama", f"{{}}/dist/linux_{arch}/lib/ollama"]
        candidates = [f"{exe_dir}/../lib/ollama", f"{exe_dir}/lib/ollama"] + [
            form.format(base) for base in (exe_dir, cwd) for form in local]
    for candidate in dict.fromkeys(os.path.normpath(c) for c in candidates):
        found = paths.is_dir(root, candidate) if generation != "runner-engine" else \
            resolve_in_root(root, candidate) is not None
        if found:
            return candidate
    return exe_dir


def find_llama_server(root: str, ollama_bin: str, ollama_lib: str, working_dir: str = "/") -> str | None:
    """FindLlamaCppBinary("llama-server") on Linux (v0.32.15 llm/llama_binary.go:22-39, :61-157; the same
    blob v0.30.0...v0.33.0-rc2): the first candidate that exists (os.Stat, :52-55), in this order:
    lib/ollama; exeDir/../lib/ollama; exeDir/build/lib/ollama and exeDir/dist/linux-ARCH|linux_ARCH/lib/ollama;
    the same three under the service's working directory; then exeDir/build/llama-server-*/bin and
    workingDir/build/llama-server-*/bin, cuda/rocm/darwin builds first (:136-155, :166-173). exeDir is the
    binary's real path (:23-28); ARCH is GOARCH, read from the binary's ELF machine. Not exeDir itself
    (darwin only, :92-94)."""
    exe = resolve_in_root(root, ollama_bin, strict=False) or ollama_bin
    exe_dir = os.path.dirname(exe)
    arch = _goarch(root, exe)

    def local(base: str) -> list[str]:
        return [f"{base}/build/lib/ollama", f"{base}/dist/linux-{arch}/lib/ollama", f"{base}/dist/linux_{arch}/lib/ollama"]

    def build_outputs(base: str) -> list[str]:
        found = [p for p in paths.matching(root, f"{base.rstrip('/')}/build", "llama-server-*")]
        ranked = sorted(found, key=lambda p: (not any(k in p for k in BUILD_FIRST), p))
        return [f"{p}/bin" for p in ranked]

    dirs = [ollama_lib, f"{exe_dir}/../lib/ollama", *local(exe_dir), *local(working_dir),
            *build_outputs(exe_dir), *build_outputs(working_dir)]
    for folder in dict.fromkeys(os.path.normpath(d) for d in dirs):
        candidate = f"{folder}/llama-server"
        if resolve_in_root(root, candidate) is not None:
            return candidate
    return None


# v0.32.15 llm/llama_binary.go:166-173: build outputs whose names hold these sort first.
BUILD_FIRST = ("llama-server-darwin", "llama-server-cuda", "llama-server-rocm")
GOARCH = {"EM_X86_64": "amd64", "EM_AARCH64": "arm64", "EM_386": "386", "EM_ARM": "arm", "EM_PPC64": "ppc64le",
          "EM_S390": "s390x", "EM_RISCV": "riscv64", "EM_LOONGARCH": "loong64"}


def _goarch(root: str, exe: str) -> str:
    """GOARCH of the ollama binary (its ELF machine); amd64 when it cannot be read."""
    from fixer.facts.elf import read_header

    real = paths.real_path(root, exe)
    try:
        return GOARCH.get(read_header(real).machine, "amd64") if real else "amd64"
    except (ElfError, OSError):
        return "amd64"


def runner_library_path(ollama_lib: str, library: str, env: Mapping[str, str]) -> list[str]:
    """LD_LIBRARY_PATH as the v0.13–v0.24 runner gets it: lib/ollama and the variant dir, then the service's."""
    return [ollama_lib, f"{ollama_lib}/{library}"] + split_path_list(env.get("LD_LIBRARY_PATH"))


def ggml_base_name(root: str, backend: str) -> str:
    """The libggml-base name that `backend` (an absolute path inside `root`) NEEDs: the one ld.so looks
    for when the backend is dlopened, so the one the runner's libggml-base must answer to."""
    real = paths.real_path(root, backend)
    if real is not None:
        try:
            needed = read_elf(real, symbols=False).needed
        except (ElfError, OSError):
            needed = []
        for name in needed:
            if name == "libggml-base.so" or name.startswith("libggml-base.so."):
                return name
    return GGML_BASE
