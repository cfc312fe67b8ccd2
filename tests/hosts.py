"""Host kinds a profile may meet, laid over the seed host: what each adds to a root (files under ROOT/sys,
the driver package's files, a root-run unit, Ollama's v0.32 layout)."""

from __future__ import annotations

import os

SHIM_DEVICE = ("0000:00:05.0", "0x10de", "0x2330", "0x030200")  # the para-virtual H100 of a shim guest
REAL_GPU = ("0000:3b:00.0", "0x10de", "0x2330", "0x030200")


def _write(root: str, path: str, text: str | bytes, mode: int = 0o644) -> None:
    real = os.path.join(root, path.lstrip("/"))
    os.makedirs(os.path.dirname(real), exist_ok=True)
    with open(real, "wb") as fh:
        fh.write(text.encode() if isinstance(text, str) else text)
    os.chmod(real, mode)


def pci_device(root: str, address: str, vendor: str, device: str, cls: str, driver: str | None = None) -> str:
    """A device as sysfs shows it: /sys/devices/pci0000:00/ADDR with vendor/device/class, the
    /sys/bus/pci/devices link, and (with `driver`) both driver links. Returns its syspath."""
    syspath = f"/sys/devices/pci0000:00/{address}"
    for name, value in (("vendor", vendor), ("device", device), ("class", cls)):
        _write(root, f"{syspath}/{name}", value + "\n")
    bus = os.path.join(root, "sys/bus/pci/devices")
    os.makedirs(bus, exist_ok=True)
    os.symlink(f"../../../devices/pci0000:00/{address}", os.path.join(bus, address))
    if driver:
        drivers = os.path.join(root, "sys/bus/pci/drivers", driver)
        os.makedirs(drivers, exist_ok=True)
        os.symlink(f"../../../../devices/pci0000:00/{address}", os.path.join(drivers, address))
        os.symlink(f"../../../bus/pci/drivers/{driver}", os.path.join(root, syspath.lstrip("/"), "driver"))
    return syspath


def shim_guest(root: str) -> None:
    """The para-virtual guest of the seed: its PCI device with no driver bound; fake /dev/nvidia* nodes."""
    pci_device(root, *SHIM_DEVICE)


def grid_guest(root: str) -> None:
    """An NVIDIA vGPU/GRID guest (or HAMi host): the real nvidia kernel driver bound to the device."""
    pci_device(root, *REAL_GPU, driver="nvidia")
    _write(root, "/sys/module/nvidia/version", "550.90.07\n")


def real_gpu(root: str, version: str = "580.65.06") -> None:
    """A real GPU with the driver package installed: bound driver, libcuda.so.VERSION and its links."""
    pci_device(root, *REAL_GPU, driver="nvidia")
    _write(root, "/proc/driver/nvidia/version", f"NVRM version: NVIDIA UNIX x86_64 Kernel Module  {version}\n")
    lib = "/usr/lib/x86_64-linux-gnu"
    _write(root, f"{lib}/libcuda.so.{version}", b"\x7fELF placeholder for the driver's libcuda\n", 0o755)
    os.symlink(f"libcuda.so.{version}", os.path.join(root, lib.lstrip("/"), "libcuda.so.1"))


def root_unit(root: str) -> None:
    """The unit runs as root (no User=), as many hand-written ollama units do."""
    path = os.path.join(root, "etc/systemd/system/ollama.service")
    with open(path) as fh:
        text = fh.read()
    with open(path, "w") as fh:
        fh.write(text.replace("User=ollama\n", "").replace("Group=ollama\n", ""))


def v032_layout(root: str) -> None:
    """Ollama v0.32's lib/ollama: llama-server and llama.cpp's libraries beside the cuda_v12/v13 folders."""
    lib = "/usr/local/lib/ollama"
    for name in ("llama-server", "libllama.so", "libggml.so", "libggml-base.so", "libggml-base.so.0",
                 "cuda_v12/libggml-cuda.so", "cuda_v13/libggml-cuda.so"):
        _write(root, f"{lib}/{name}", f"placeholder for {name}\n", 0o755)


HOST_KINDS = {
    "shim-guest": [shim_guest],
    "grid-guest": [grid_guest],
    "real-gpu": [real_gpu],
    "shim-guest-root-unit": [shim_guest, root_unit],
    "shim-guest-v032": [shim_guest, v032_layout],
    "real-gpu-v032": [real_gpu, v032_layout],
}
