"""Compile the fake driver shims, CUDA runtime, cuBLAS, ggml libraries and the stand-in ollama."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Lib:
    source: str
    filename: str
    soname: str
    defines: tuple[str, ...] = ()
    version_node: str | None = None
    links: tuple[str, ...] = ()
    link_dir: str | None = None
    extra: tuple[str, ...] = field(default=())


def _shim(*defines: str, soname: str = "libcuda.so.1") -> Lib:
    return Lib("cuda_shim.c", "libvgpu-cuda.so", soname, defines, extra=("-ldl",))


STAGE1: dict[str, Lib] = {
    "ggml-base": Lib("ggml_base.c", "libggml-base.so.0", "libggml-base.so.0"),
    "cuda-shim": _shim(),
    "cuda-shim-13000": _shim("DRIVER_VERSION=13000"),
    "cuda-shim-2dev": _shim("DEFAULT_DEVICES=2"),
    "cuda-shim-wrong-soname": _shim(soname="libvgpu-cuda.so"),
    "cuda-shim-no-memcreate": _shim("OMIT_MEMCREATE"),
    "cuda-shim-dlopen": _shim("INTERPOSE_DLOPEN"),
    "cuda-shim-open": _shim("INTERPOSE_OPEN"),
    "cuda-shim-hang": _shim("HANG_INIT"),
    "cuda-shim-segv": _shim("SEGV_INIT"),
    "cuda-shim-ctx-segv": _shim("SEGV_CTX"),
    "cuda-shim-slow": _shim("INIT_DELAY_S=12"),
    "cuda-shim-partial": _shim("OMIT_DEVICEGET"),
    "cuda-shim-crash-at-exit": _shim("SEGV_EXIT"),
    "cuda-shim-22s": _shim("INIT_DELAY_S=22"),
    "nvml-shim": Lib("nvml_shim.c", "libvgpu-nvml.so", "libnvidia-ml.so.1"),
    # The field's shim answers nvmlSystemGetDriverVersion with a CUDA version; a real driver with its own.
    "nvml-shim-12.9": Lib("nvml_shim.c", "libvgpu-nvml.so", "libnvidia-ml.so.1", ('DRIVER_STRING="12.9.00"',)),
    "nvml-shim-580": Lib("nvml_shim.c", "libvgpu-nvml.so", "libnvidia-ml.so.1", ('DRIVER_STRING="580.65.06"',)),
    "nvml-shim-crash": Lib("nvml_shim.c", "libvgpu-nvml.so", "libnvidia-ml.so.1", ('DRIVER_STRING="12.9.00"', "CRASH")),
    "nvml-r535": Lib("nvml_shim.c", "libvgpu-nvml.so", "libnvidia-ml.so.1", ('DRIVER_STRING="535.154.05"',)),
    "cudart-12": Lib("cudart.c", "libcudart.so.12", "libcudart.so.12", ("CUDA_MAJOR=12",), "libcudart.so.12",
                     extra=("-ldl",)),
    "cudart-shim": Lib("cudart.c", "libvgpu-cudart.so", "libcudart.so.12", ("CUDA_MAJOR=12", "SHIM_STUBS"),
                       "libcudart.so.12", extra=("-ldl",)),
    # A CUDA-13-only vendor stack: its runtime shim answers as libcudart.so.13.
    "cudart-shim-13": Lib("cudart.c", "libvgpu-cudart.so", "libcudart.so.13", ("CUDA_MAJOR=13", "SHIM_STUBS"),
                          "libcudart.so.13", extra=("-ldl",)),
    "cudart-13": Lib("cudart.c", "libcudart.so.13", "libcudart.so.13", ("CUDA_MAJOR=13",), "libcudart.so.13",
                     extra=("-ldl",)),
    "cublas-12": Lib("cublas.c", "libcublas.so.12", "libcublas.so.12", (), "libcublas.so.12"),
    "cublasLt-12": Lib("cublas.c", "libcublasLt.so.12", "libcublasLt.so.12", ("LT",), "libcublasLt.so.12"),
    "cublas-13": Lib("cublas.c", "libcublas.so.13", "libcublas.so.13", (), "libcublas.so.13"),
    "cublasLt-13": Lib("cublas.c", "libcublasLt.so.13", "libcublasLt.so.13", ("LT",), "libcublasLt.so.13"),
    "cublas-stray": Lib("cublas.c", "libcublas.so.12", "libcublas.so.12", ("STRAY",)),
    "planted": Lib("planted.c", "libplanted.so", "libplanted.so"),
    "mlxc": Lib("mlxc.c", "libmlxc.so", "libmlxc.so"),
    "mlxc-api": Lib("mlxc.c", "libmlxc.so", "libmlxc.so", ("MLX_API",)),
}


def _backend(major: int, *defines: str, driver: bool = True, link_dir: str | None = None,
             source: str = "ggml_cuda.c") -> Lib:
    links = ["libggml-base.so.0", f"libcudart.so.{major}", f"libcublas.so.{major}", f"libcublasLt.so.{major}"]
    if driver:
        links.append("libcuda.so.1")
    return Lib(source, "libggml-cuda.so", "", defines, links=tuple(links), link_dir=link_dir or f"link{major}")


STAGE2: dict[str, Lib] = {
    "ggml-cuda-12": _backend(12),
    "ggml-cuda-13": _backend(13),
    # The same backend with real ggml's registry ABI, loadable by a real llama-server (GGML_BACKEND_DL).
    "ggml-cuda-dl-12": _backend(12, source="ggml_cuda_dl.c"),
    "ggml-cuda-dl-13": _backend(13, 'CUDA_ARCHS="750,800,860,870,890,900,1000,1030,1100,1200,1210"',
                                source="ggml_cuda_dl.c"),
}


def real_cudart() -> Path | None:
    """libcudart.so.12 of the nvidia-cuda-runtime-cu12 wheel, if installed."""
    spec = importlib.util.find_spec("nvidia.cuda_runtime")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "lib" / "libcudart.so.12"
        if candidate.is_file():
            return candidate
    return None


def _compile(key: str, lib: Lib, outdir: Path) -> Path:
    target = outdir / key / lib.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["gcc", "-shared", "-fPIC", "-O1", "-w", f"-I{HERE}", "-o", str(target), str(HERE / lib.source)]
    cmd += [f"-D{d}" for d in lib.defines]
    if lib.soname:
        cmd.append(f"-Wl,-soname,{lib.soname}")
    if lib.version_node:
        script = outdir / key / "version.map"
        script.write_text(f"{lib.version_node} {{ global: *; }};\n")
        cmd.append(f"-Wl,--version-script={script}")
    if lib.links:
        cmd += ["-Wl,--no-as-needed", f"-L{outdir / lib.link_dir}"] + [f"-l:{name}" for name in lib.links]
    cmd += list(lib.extra)
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return target


def _link_dir(outdir: Path, name: str, members: dict[str, Path]) -> None:
    folder = outdir / name
    folder.mkdir(parents=True, exist_ok=True)
    for filename, source in members.items():
        link = folder / filename
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(source)


def _ollama_v030(outdir: Path, key: str, version: str) -> Path:
    """The compiled v0.30+ stand-in ollama (ollama_v032.c) with `version` embedded."""
    target = outdir / key / "ollama"
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["gcc", "-O0", "-pie", "-fPIE", "-s", f'-DVERSION="{version}"', "-o", str(target),
                    str(HERE / "ollama_v032.c"), "-ldl"], check=True, capture_output=True, text=True)
    return target


def _standin(outdir: Path) -> Path:
    target = outdir / "ollama" / "ollama"
    target.parent.mkdir(parents=True, exist_ok=True)
    text = (HERE / "ollama_standin.py").read_text()
    # A python every user can run: an untrusted root's ollama runs as an unprivileged user.
    from fixer.probe.placement import interpreter

    target.write_text(f"#!{interpreter({'uid': 65534})} -I\n{text}")
    target.chmod(0o755)
    return target


def build_native(outdir: Path) -> dict[str, Path]:
    """Build every artifact into `outdir`; keys name variants (see STAGE1/STAGE2), values are files."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 4) as pool:
        built = dict(zip(STAGE1, pool.map(lambda k: _compile(k, STAGE1[k], outdir), STAGE1)))
        for major in (12, 13):
            _link_dir(outdir, f"link{major}", {
                "libggml-base.so.0": built["ggml-base"], "libcuda.so.1": built["cuda-shim"],
                f"libcudart.so.{major}": built[f"cudart-{major}"],
                f"libcublas.so.{major}": built[f"cublas-{major}"],
                f"libcublasLt.so.{major}": built[f"cublasLt-{major}"],
            })
        stage2 = dict(STAGE2)
        real = real_cudart()
        if real is not None:
            _link_dir(outdir, "link-realrt", {
                "libggml-base.so.0": built["ggml-base"], "libcudart.so.12": real,
                "libcublas.so.12": built["cublas-12"], "libcublasLt.so.12": built["cublasLt-12"],
            })
            stage2["ggml-cuda-realrt"] = _backend(12, "NO_DRIVER_IMPORT", driver=False, link_dir="link-realrt")
            built["cudart-real"] = real
        built.update(zip(stage2, pool.map(lambda k: _compile(k, stage2[k], outdir), stage2)))
    built["ollama"] = _standin(outdir)
    for version in ("0.30.0", "0.30.11", "0.32.15", "0.33.0"):
        built[f"ollama-{version}"] = _ollama_v030(outdir, f"ollama-{version}", version)
    return built


if __name__ == "__main__":
    for key, path in build_native(Path(sys.argv[1] if len(sys.argv) > 1 else "build-native")).items():
        print(f"{key:24} {path}")
