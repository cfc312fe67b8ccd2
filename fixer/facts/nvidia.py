"""Read-only facts about the GPU side of a root: PCI devices, a bound NVIDIA kernel driver, the driver package."""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field

from fixer.facts import paths
from fixer.facts.ldso import TRUSTED_DIRS

PCI_DEVICES = "/sys/bus/pci/devices"
PCI_DRIVERS = "/sys/bus/pci/drivers"
PCI_ADDRESS = re.compile(r"^[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
DRIVER_LIBCUDA = re.compile(r"^libcuda\.so\.([0-9]{3,})\.[0-9]+(\.[0-9]+)?$")
DRIVER_VERSION = re.compile(r"\b([0-9]{3,})\.[0-9]+(\.[0-9]+)?\b")
CUDA13_MIN_DRIVER = 580  # the first driver branch with CUDA 13


@dataclass(frozen=True)
class PciDevice:
    address: str
    vendor: str
    device: str
    cls: str
    driver: str | None
    syspath: str  # /sys/devices/..., what udev calls the device's syspath

    @property
    def nvidia_driver(self) -> bool:
        return self.driver is not None and self.driver.startswith("nvidia")


@dataclass(frozen=True)
class NvidiaFacts:
    """Whether a real NVIDIA driver is in charge of this root's GPU, with the evidence."""

    bound: tuple[str, ...] = ()  # "ADDRESS (driver NAME)" for every device an NVIDIA driver holds
    packaged_libcuda: tuple[str, ...] = ()  # libcuda.so.<version> files a driver package installed
    version: str | None = None  # e.g. 580.65.06
    evidence: tuple[str, ...] = field(default_factory=tuple)

    @property
    def present(self) -> bool:
        return bool(self.bound or self.packaged_libcuda)

    @property
    def major(self) -> int | None:
        return int(self.version.split(".")[0]) if self.version else None


_read = paths.read_small
_link = paths.link_target


def pci_devices(root: str) -> list[PciDevice]:
    """Every device under ROOT/sys/bus/pci/devices; link targets are read as text, never followed out."""
    out = []
    for name in paths.names(root, PCI_DEVICES):
        if not PCI_ADDRESS.match(name):
            continue
        base = f"{PCI_DEVICES}/{name}"
        target = _link(root, base)
        syspath = os.path.normpath(os.path.join(PCI_DEVICES, target)) if target else base
        driver = _link(root, f"{base}/driver")
        out.append(PciDevice(name, _read(root, f"{base}/vendor").lower(), _read(root, f"{base}/device").lower(),
                             _read(root, f"{base}/class").lower(),
                             os.path.basename(driver.rstrip("/")) if driver else None, syspath))
    return out


def display_controllers(root: str) -> list[PciDevice] | None:
    """PCI display controllers (class 0x03xxxx); None where the root has no PCI sysfs at all."""
    if not paths.is_dir(root, PCI_DEVICES):
        return None
    return [d for d in pci_devices(root) if d.cls.startswith("0x03")]


def nvidia(root: str) -> NvidiaFacts:
    bound: dict[str, str] = {}
    for dev in pci_devices(root):
        if dev.nvidia_driver:
            bound[dev.address] = dev.driver or "nvidia"
    for driver in paths.names(root, PCI_DRIVERS):
        if driver.startswith("nvidia"):
            for entry in paths.names(root, f"{PCI_DRIVERS}/{driver}"):
                if PCI_ADDRESS.match(entry):
                    bound.setdefault(entry, driver)
    packaged, seen = [], set()
    for directory in TRUSTED_DIRS:  # where a driver package installs libcuda.so.<driver version>: the loader's own dirs
        for name in paths.names(root, directory):
            path = f"{directory}/{name}"
            own = paths.stat_in(root, path, follow=False)
            # /lib and /usr/lib are one directory on a merged-/usr host: one file, named once
            if DRIVER_LIBCUDA.match(name) and own is not None and stat.S_ISREG(own.st_mode) \
                    and (own.st_dev, own.st_ino) not in seen:
                seen.add((own.st_dev, own.st_ino))
                packaged.append(path)
    version, evidence = None, []
    for source in ("/sys/module/nvidia/version", "/proc/driver/nvidia/version"):
        found = DRIVER_VERSION.search(_read(root, source))
        if found:
            version = found.group(0)
            evidence.append(f"{source}: {version}")
            break
    if version is None and packaged:
        version = os.path.basename(packaged[0]).removeprefix("libcuda.so.")
        evidence.append(f"{packaged[0]}: driver {version}")
    evidence += [f"{PCI_DRIVERS}/{drv}/{addr}: bound" for addr, drv in sorted(bound.items())]
    evidence += [f"{p}: installed by a driver package" for p in packaged]
    return NvidiaFacts(tuple(f"{a} (driver {d})" for a, d in sorted(bound.items())), tuple(packaged), version,
                       tuple(evidence))


def chosen_library(root: str, ollama_lib: str, facts: NvidiaFacts | None = None) -> str:
    """The CUDA folder unpinned Ollama picks: cuda_v13 for a CUDA 13 driver (>= 580) when that folder
    exists, else cuda_v12."""
    facts = facts or nvidia(root)
    if facts.major is not None and facts.major >= CUDA13_MIN_DRIVER \
            and paths.is_dir(root, f"{ollama_lib}/cuda_v13"):
        return "cuda_v13"
    return "cuda_v12"
