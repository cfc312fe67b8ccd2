"""Helpers for doctor tests: host trees in tmp dirs, real shim ELF files built with gcc, log files."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from fixer.demo import SEED_UNIT
from fixer.facts.elf import Definition, ElfInfo, Header

LOGS = Path(__file__).parent / "logs"
LIB = "/usr/local/lib/ollama"

# The stock unit install.sh writes (the same text the demo host uses).
STOCK_UNIT = SEED_UNIT

# The seed host's hand-made override (what `systemctl edit ollama` wrote there).
SEED_OVERRIDE = """\
[Service]
Environment="OLLAMA_DEBUG=1"
Environment="OLLAMA_LLM_LIBRARY=cuda_v12"
Environment="OLLAMA_NUM_GPU=999"
Environment="LD_PRELOAD=/opt/vgpu/lib/libvgpu-cuda.so:/opt/vgpu/lib/libvgpu-cudart.so"
"""

SHIM_SOURCES = {
    # Driver shim as on the real hosts: SONAME libcuda.so.1, driver entry points, and a dlopen wrapper.
    "driver_dlopen": ("libcuda.so.1", "int cuInit(unsigned f){return 0;}\nint cuDriverGetVersion(int*v){*v=13000;return 0;}\n"
                      "int cuDeviceGetCount(int*c){*c=1;return 0;}\nvoid *dlopen(const char*f,int m){return 0;}\n"),
    "driver_plain": ("libcuda.so.1", "int cuInit(unsigned f){return 0;}\nint cuDriverGetVersion(int*v){*v=12040;return 0;}\n"
                     "int cuDeviceGetCount(int*c){*c=1;return 0;}\nint cuMemCreate(void*a,unsigned long s,void*p,unsigned long long f){return 0;}\n"),
    "driver_wrong_soname": ("libvgpu-cuda.so", "int cuInit(unsigned f){return 0;}\n"),
    "cudart": ("libcudart.so.12", "int cudaGetDeviceCount(int*c){*c=1;return 0;}\nint cuInit(unsigned f){return 1;}\n"),
    "nvml": ("libnvidia-ml.so.1", "int nvmlInit_v2(void){return 0;}\n"),
}


def elf_info(path: str, soname: str | None = None, defines: tuple[str, ...] = ()) -> ElfInfo:
    """fixer.facts.elf facts of a shared object, written by hand for rule tests (no file)."""
    return ElfInfo(path, Header(64, "EM_X86_64", "ET_DYN", True), True, soname,
                   defined=[Definition(name, None, False, "STB_GLOBAL", "STT_FUNC") for name in defines])


def _build(out: Path, soname: str, source: str, extra: list[str] | None = None) -> Path:
    c_file = out.with_suffix(".c")
    c_file.write_text(source)
    subprocess.run(["gcc", "-shared", "-fPIC", f"-Wl,-soname,{soname}", "-o", str(out), str(c_file), *(extra or [])],
                   check=True, capture_output=True)
    return out


@pytest.fixture(scope="session")
def elf_libs(tmp_path_factory) -> dict[str, Path]:
    """Real shared objects: shims with chosen SONAMEs/exports, and a backend importing driver symbols."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build test shared objects")
    out = tmp_path_factory.mktemp("elf")
    built = {name: _build(out / f"{name}.so", soname, src) for name, (soname, src) in SHIM_SOURCES.items()}
    backend_src = ("int cuInit(unsigned);int cuMemCreate(void*,unsigned long,void*,unsigned long long);\n"
                   "void *ggml_backend_init(void){cuInit(0);cuMemCreate(0,0,0,0);return 0;}\n")
    built["backend"] = _build(out / "libggml-cuda.so", "libggml-cuda.so", backend_src, [str(built["driver_plain"])])
    return built


class HostTree:
    """A fake host root: write files, links and units with guest paths."""

    def __init__(self, root: Path):
        self.root = root

    def path(self, guest: str) -> Path:
        return self.root / guest.lstrip("/")

    def write(self, guest: str, text: str = "x", mtime: float | None = None) -> Path:
        p = self.path(guest)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        if mtime is not None:
            os.utime(p, (mtime, mtime))
        return p

    def copy(self, guest: str, source: Path) -> None:
        p = self.path(guest)
        p.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, p)

    def link(self, guest: str, target: str) -> None:
        p = self.path(guest)
        p.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, p)

    def unit(self, text: str = STOCK_UNIT) -> None:
        self.write("/etc/systemd/system/ollama.service", text)

    def dropin(self, name: str, text: str) -> None:
        self.write(f"/etc/systemd/system/ollama.service.d/{name}", text)

    def ollama(self, folders: tuple[str, ...] = ("cuda_v12", "cuda_v13")) -> None:
        """Ollama's install.sh layout (files as tar extracts them, with the archive's old mtime)."""
        old = 1_750_000_000.0
        self.write("/usr/local/bin/ollama", "#!ollama", old)
        for name in ("libggml-base.so.0.0.0", "libggml-cpu-haswell.so", "libggml-cpu-icelake.so"):
            self.write(f"{LIB}/{name}", "x", old)
        self.link(f"{LIB}/libggml-base.so.0", "libggml-base.so.0.0.0")
        for folder in folders:
            major = folder.rsplit("v", 1)[-1]
            self.write(f"{LIB}/{folder}/libggml-cuda.so", "x", old)
            for lib in ("libcudart", "libcublas", "libcublasLt"):
                self.write(f"{LIB}/{folder}/{lib}.so.{major}.8.90", "x", old)
                self.link(f"{LIB}/{folder}/{lib}.so.{major}", f"{lib}.so.{major}.8.90")


@pytest.fixture
def tree(tmp_path) -> HostTree:
    return HostTree(tmp_path / "root")


@pytest.fixture
def seed_tree(tree: HostTree, elf_libs) -> HostTree:
    """The seed's host: stock unit, override.conf with its settings, top-level symlink, preloaded shims."""
    tree.unit()
    tree.dropin("override.conf", SEED_OVERRIDE)
    tree.ollama()
    tree.link(f"{LIB}/libggml-cuda.so", "cuda_v12/libggml-cuda.so")
    tree.copy("/opt/vgpu/lib/libvgpu-cuda.so", elf_libs["driver_dlopen"])
    tree.copy("/opt/vgpu/lib/libvgpu-cudart.so", elf_libs["cudart"])
    tree.copy("/opt/vgpu/lib/libvgpu-nvml.so", elf_libs["nvml"])
    return tree


def read_log(name: str) -> str:
    return (LOGS / name).read_text()
