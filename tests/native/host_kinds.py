"""The host kinds `vgpu-fix fix` must tell apart, each laid out as a v0.32.15 install.sh leaves it with
gcc-built shims (tests/native/build.py) under names of the vendor's own: `python -m
tests.native.host_kinds KIND ROOT NATIVE_JSON` lays one out (the namespace tier does, at /)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fixer.demo import SEED_UNIT
from tests import hosts
from tests.native import layout

VENDOR_DIR = "/opt/acme/lib64"  # neither /opt/vgpu nor "vgpu" in any name: shims are found by their symbols
GUEST_DEVICE = ("0000:00:05.0", "0x10de", "0x2331", "0x030200")  # not the profile's default 0x2330
DRIVER_LIB, DRIVER = "/usr/lib/x86_64-linux-gnu", "550.90.07"  # tests.hosts.grid_guest's driver
KINDS = ("library-path", "preload", "cuda13-only", "below-gate", "passthrough", "nothing")
FIXABLE = KINDS[:-1]


def _vendor_shims(root: Path, native: dict, shim: str, nvml: str, cudart: str) -> None:
    """The vendor's shims in a directory of its own (the v0.30 layout's /opt/vgpu/lib ones go away)."""
    for name in ("libvgpu-cuda.so", "libvgpu-cudart.so", "libvgpu-nvml.so"):
        (root / layout.SHIM_DIR.lstrip("/") / name).unlink()
    layout.place(root, f"{VENDOR_DIR}/libacme-drv.so", native[shim])
    layout.place(root, f"{VENDOR_DIR}/libacme-rt.so", native[cudart])
    layout.place(root, f"{VENDOR_DIR}/libacme-mgmt.so", native[nvml])


def host(root: Path, native: dict, kind: str, llama_server: Path | None = None) -> Path:
    """A host of `kind` before any fix: v0.32.15 layout, the stock unit, its device on the PCI bus.
    library-path: a driver shim that needs nothing but the library path; preload: one that wraps libc's
    open (only a preload interposes it) but leaves dlopen alone; cuda13-only: driver 13.0 and a CUDA 13
    runtime shim; below-gate: an NVML shim that answers "12.9.00"; passthrough: the nvidia driver bound;
    nothing: shims but no para-virtual device (only a virtio GPU)."""
    root = Path(root)
    nvml = "nvml-shim-12.9" if kind == "below-gate" else "nvml-shim"
    layout.lay_out_v030(root, native, llama_server, nvml=nvml)
    (root / "etc/systemd/system").mkdir(parents=True, exist_ok=True)
    (root / "etc/systemd/system/ollama.service").write_text(SEED_UNIT)
    shim = {"preload": "cuda-shim-open", "cuda13-only": "cuda-shim-13000"}.get(kind, "cuda-shim")
    _vendor_shims(root, native, shim, nvml, "cudart-shim-13" if kind == "cuda13-only" else "cudart-shim")
    if kind == "passthrough":
        hosts.grid_guest(str(root))
        # The driver package's libcuda (a gcc-built driver API stands in for the real one) and its link.
        layout.place(root, f"{DRIVER_LIB}/libcuda.so.{DRIVER}", native["cuda-shim"])
        layout.link(root, f"{DRIVER_LIB}/libcuda.so.1", f"libcuda.so.{DRIVER}")
    elif kind == "nothing":
        hosts.pci_device(str(root), "0000:00:02.0", "0x1af4", "0x1050", "0x030000")
    else:
        hosts.pci_device(str(root), *GUEST_DEVICE)
    return root


if __name__ == "__main__":
    kind, where, built, *given = sys.argv[1:]
    server = Path(given[0]) if given and given[0] else None  # a llama-server build: the program or its folder
    host(Path(where), {k: Path(v) for k, v in json.loads(Path(built).read_text()).items()}, kind,
         server / "llama-server" if server is not None and server.is_dir() else server)
