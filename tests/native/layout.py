"""Lay out a fake host root: Ollama's lib dirs, the vGPU shims in /opt/vgpu/lib, a stand-in ollama."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

OLLAMA_LIB = "/usr/local/lib/ollama"
SHIM_DIR = "/opt/vgpu/lib"
OLLAMA_BIN = "/usr/local/bin/ollama"


def place(root: Path, path: str, source: Path) -> Path:
    """Copy `source` to absolute `path` inside `root` (replacing what is there)."""
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink()
    shutil.copy2(source, target)
    return target


def link(root: Path, path: str, target: str) -> Path:
    """Create symlink `path` -> `target` inside `root` (target taken literally)."""
    where = root / path.lstrip("/")
    where.parent.mkdir(parents=True, exist_ok=True)
    if where.is_symlink() or where.exists():
        where.unlink()
    where.symlink_to(target)
    return where


def lay_out_host(root: Path, native: dict[str, Path], *, shim: str = "cuda-shim", cuda_v13: bool = True,
                 backend: str = "ggml-cuda-12", cudart: str = "cudart-12") -> Path:
    """A host as Ollama's installer and the vGPU package leave it; no strategy applied yet."""
    root = Path(root)
    place(root, f"{OLLAMA_LIB}/libggml-base.so.0", native["ggml-base"])
    v12 = f"{OLLAMA_LIB}/cuda_v12"
    place(root, f"{v12}/libggml-cuda.so", native[backend])
    place(root, f"{v12}/libcudart.so.12", native[cudart])
    place(root, f"{v12}/libcublas.so.12", native["cublas-12"])
    place(root, f"{v12}/libcublasLt.so.12", native["cublasLt-12"])
    if cuda_v13:
        v13 = f"{OLLAMA_LIB}/cuda_v13"
        place(root, f"{v13}/libggml-cuda.so", native["ggml-cuda-13"])
        place(root, f"{v13}/libcudart.so.13", native["cudart-13"])
        place(root, f"{v13}/libcublas.so.13", native["cublas-13"])
        place(root, f"{v13}/libcublasLt.so.13", native["cublasLt-13"])
    place(root, f"{SHIM_DIR}/libvgpu-cuda.so", native[shim])
    place(root, f"{SHIM_DIR}/libvgpu-cudart.so", native["cudart-shim"])
    place(root, f"{SHIM_DIR}/libvgpu-nvml.so", native["nvml-shim"])
    place(root, OLLAMA_BIN, native["ollama"]).chmod(0o755)
    etc = root / "etc"
    (etc / "ld.so.conf.d").mkdir(parents=True, exist_ok=True)
    (etc / "ld.so.conf").write_text("include /etc/ld.so.conf.d/*.conf\n")
    (root / "var/cache/ldconfig").mkdir(parents=True, exist_ok=True)
    return root


def use_library_path(root: Path) -> dict[str, str]:
    """The strategy proven in the field: libcuda.so.1 / libnvidia-ml.so.1 links, shim dir on the path."""
    link(root, f"{SHIM_DIR}/libcuda.so.1", "libvgpu-cuda.so")
    link(root, f"{SHIM_DIR}/libnvidia-ml.so.1", "libvgpu-nvml.so")
    return {"LD_LIBRARY_PATH": SHIM_DIR, "OLLAMA_LLM_LIBRARY": "cuda_v12"}


PRELOAD_ORDER = ("libvgpu-cuda.so", "libvgpu-nvml.so")


def use_preload(root: Path, order: tuple[str, ...] = PRELOAD_ORDER) -> dict[str, str]:
    """Shims preloaded by path in `order` (driver shim first: the first definition of a symbol wins)."""
    del root
    return {"LD_PRELOAD": ":".join(f"{SHIM_DIR}/{name}" for name in order), "OLLAMA_LLM_LIBRARY": "cuda_v12"}


def add_ld_so_conf(root: Path, name: str, dirs: list[str]) -> None:
    (root / "etc/ld.so.conf.d" / name).write_text("".join(d + "\n" for d in dirs))


def run_ldconfig(root: Path) -> None:
    import subprocess

    env = dict(os.environ, LC_ALL="C")
    subprocess.run(["ldconfig", "-X", "-r", str(root)], check=True, env=env, capture_output=True)


def lay_out_v030(root: Path, native: dict[str, Path], llama_server: Path | None = None, *,
                 version: str = "0.32.15", nvml: str = "nvml-shim", runtime: str = "12.8.90",
                 shim: str = "cuda-shim", ollama_lib: str = OLLAMA_LIB, ollama_bin: str = OLLAMA_BIN) -> Path:
    """A host as a v0.30+ install.sh leaves it (Dockerfile v0.32.15 :83-97, llama/server/CMakeLists.txt
    :418-569): lib/ollama holds llama-server and its libraries (copied from `llama_server`'s folder, the
    real build), cuda_v12/ and cuda_v13/ hold libggml-cuda.so (the real-ABI fake) and versioned CUDA
    libraries; the runtime version Ollama reads from `libcudart.so.12.N` file names is `runtime`. A distro
    package puts them elsewhere (`ollama_bin` /usr/bin/ollama, `ollama_lib` /usr/lib/ollama)."""
    root = Path(root)
    if llama_server is not None:
        for item in Path(llama_server).parent.iterdir():
            if item.name == "llama-server" or item.name.startswith("lib"):
                if item.is_symlink():
                    link(root, f"{ollama_lib}/{item.name}", os.readlink(item))
                elif item.is_file():
                    place(root, f"{ollama_lib}/{item.name}", item)
    for major, rt in ((12, runtime), (13, "13.0.48")):
        folder = f"{ollama_lib}/cuda_v{major}"
        place(root, f"{folder}/libggml-cuda.so", native[f"ggml-cuda-dl-{major}"])
        place(root, f"{folder}/libcudart.so.{rt}", native[f"cudart-{major}"])
        link(root, f"{folder}/libcudart.so.{major}", f"libcudart.so.{rt}")
        place(root, f"{folder}/libcublas.so.{major}", native[f"cublas-{major}"])
        place(root, f"{folder}/libcublasLt.so.{major}", native[f"cublasLt-{major}"])
    if llama_server is None:  # what the fake backend NEEDs of lib/ollama when no real build is there
        place(root, f"{ollama_lib}/libggml-base.so.0", native["ggml-base"])
    place(root, f"{SHIM_DIR}/libvgpu-cuda.so", native[shim])
    place(root, f"{SHIM_DIR}/libvgpu-cudart.so", native["cudart-shim"])
    place(root, f"{SHIM_DIR}/libvgpu-nvml.so", native[nvml])
    place(root, ollama_bin, native[f"ollama-{version}"]).chmod(0o755)
    etc = root / "etc"
    (etc / "ld.so.conf.d").mkdir(parents=True, exist_ok=True)
    (etc / "ld.so.conf").write_text("include /etc/ld.so.conf.d/*.conf\n")
    (root / "var/cache/ldconfig").mkdir(parents=True, exist_ok=True)
    return root
