"""Issue 12 item 5, against a real `systemd --user`: `ReadWritePaths=-/sys/bus/pci/devices/` (the old
h100-vgpu setting) leaves a PCI device's files read-only under ProtectKernelTunables=yes, because that
directory's entries are symlinks into /sys/devices; ProtectKernelTunables=no (what the profile now sets)
or the device's real syspath keeps them writable. Writability is asked with access(2): nothing is written."""

from __future__ import annotations

import os

import pytest

from tests.reliability import namespace

pytestmark = [pytest.mark.root, pytest.mark.slow]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    why = namespace.usable()
    if why:
        pytest.skip(why)
    devices = sorted(os.listdir("/sys/bus/pci/devices")) if os.path.isdir("/sys/bus/pci/devices") else []
    if not devices:
        pytest.skip("this machine shows no PCI device in /sys/bus/pci/devices")
    out, work = tmp_path_factory.mktemp("out"), tmp_path_factory.mktemp("ns")
    proc, name = namespace.run("ns_rwpaths.sh", str(out), str(work), devices[0])
    if (out / "skip").exists():
        pytest.skip((out / "skip").read_text())
    assert proc.returncode == 0 and (out / "finished").exists(), proc.stderr[-2000:]
    assert namespace.processes_in(name) == [] and namespace.cgroups(name) == []
    return {p.stem: p.read_text().strip() for p in out.glob("*.rc")}


@pytest.mark.parametrize("setting, writable", [
    ("open", True),             # no sandbox: root may write the attribute
    ("protected", False),       # ProtectKernelTunables=yes: /sys read-only
    ("old_profile", False),     # + ReadWritePaths=-/sys/bus/pci/devices/: still read-only (the harm: no effect)
    ("real_syspath", True),     # + ReadWritePaths= the device's /sys/devices/... path: writable
    ("new_profile", True),      # ProtectKernelTunables=no, as h100-vgpu now sets
])
def test_which_sandbox_setting_leaves_the_device_writable(results, setting, writable):
    assert results[setting] == ("0" if writable else "1")
