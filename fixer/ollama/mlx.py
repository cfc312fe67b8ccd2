"""Ollama's MLX loader, which runs in every `ollama` process on Linux: the library folder it prepends."""

# v0.32.15 x/mlxrunner/mlx/dynamic.go:190-253 (the same since v0.20.4, where prependLibraryPath first
# appears; v0.24.0 alike): at start-up each `ollama` process dlopens lib/ollama/mlx_*/libmlxc.* and, when
# every mlx-c entry point resolves (:57-79), prepends that folder to LD_LIBRARY_PATH (:173-188), which
# `ollama runner` (v0.13-v0.24) and llama-server (v0.30+) then inherit after Ollama's own folders.

from __future__ import annotations

from typing import Mapping

from fixer.facts import paths
from fixer.facts.elf import ElfError, read_elf
from fixer.facts.linker import split_path_list

SINCE = (0, 20, 4)


def _exports_mlx_api(root: str, path: str) -> bool:
    """Whether `path` defines mlx-c's functions (`mlx_*`): a library without them is opened and let go."""
    real = paths.real_path(root, path)
    try:
        return real is not None and any(d.name.startswith("mlx_") for d in read_elf(real).defined)
    except (ElfError, OSError):
        return False


def loaded_dir(root: str, ollama_lib: str, env: Mapping[str, str]) -> str | None:
    """The folder whose libmlxc.* Ollama loads: OLLAMA_LLM_LIBRARY=mlx_* names it (:197-203), else the
    mlx_* folders in reverse name order, then lib/ollama itself (:214-253)."""
    forced = env.get("OLLAMA_LLM_LIBRARY", "")
    if forced.startswith("mlx_"):
        candidates = [f"{ollama_lib}/{forced}"]
    else:
        candidates = [f"{ollama_lib}/{n}" for n in reversed(paths.names(root, ollama_lib)) if n.startswith("mlx_")]
        candidates.append(ollama_lib)
    for folder in candidates:
        if any(n.startswith("libmlxc.") and _exports_mlx_api(root, f"{folder}/{n}") for n in paths.names(root, folder)):
            return folder
    return None


def process_env(root: str, ollama_lib: str, env: Mapping[str, str],
                version: tuple[int, int, int] | None) -> tuple[dict[str, str], str | None]:
    """The environment every `ollama` process runs with once its MLX loader ran, and a note saying so."""
    out = dict(env)
    if version is not None and version < SINCE:
        return out, None
    folder = loaded_dir(root, ollama_lib, env)
    if folder is None:
        return out, None
    out["LD_LIBRARY_PATH"] = ":".join([folder] + split_path_list(env.get("LD_LIBRARY_PATH")))
    return out, (f"{folder}/libmlxc loads in every ollama process, which prepends {folder} to LD_LIBRARY_PATH "
                 "(x/mlxrunner/mlx/dynamic.go:173-211)")
