"""verify's nvml layer on a v0.30+ layout: the gcc-built NVML shim read in a fresh process with the
service's environment, judged by the cuda_v12 driver gate of the detected release."""

from __future__ import annotations

import pytest

from fixer import profiles
from fixer.verify import layers
from tests.native import layout


def _verify(root, nvml_link="present"):
    env = layout.use_library_path(root)
    if nvml_link == "absent":
        (root / layout.SHIM_DIR.lstrip("/") / "libnvidia-ml.so.1").unlink()
    profile = profiles.load("h100-vgpu", str(root), {"nvml_link": nvml_link})
    return layers.verify(str(root), profile, env=env, layers=("nvml",), timeout=15, probe=True).to_dict()


def test_shim_reporting_12_9_fails_with_the_gate_named_and_the_fix(tmp_path, native):
    """v0.32.15 discover/cuda_compat.go:64-68: driver "12.9.00" -> 12 < 550 with runtime 12.8."""
    report = _verify(layout.lay_out_v030(tmp_path, native, nvml="nvml-shim-12.9"))
    nvml = report["checks"][0]
    assert nvml["status"] == "fail"
    assert 'NVIDIA driver too old driver=12 required_driver="550 or newer"' in nvml["cause"]
    assert "--set nvml_link=absent" in nvml["fix"]
    assert any("'12.9.00' -> driver major 12" in line for line in nvml["evidence"])
    assert report["installation"]["version"] == "0.32.15"


@pytest.mark.parametrize("version,nvml,link,status", [
    ("0.32.15", "nvml-shim-12.9", "absent", "pass"),   # no NVML: cuda_compat.go:38-41 only warns
    ("0.32.15", "nvml-shim-580", "present", "pass"),   # a real driver string passes
    ("0.32.15", "nvml-shim", "present", "pass"),       # no nvmlSystemGetDriverVersion: major 0, warn
    ("0.30.0", "nvml-shim-12.9", "present", "pass"),   # v0.30.0 cuda_compat.go:11-24: cc 9.0 never gated
    ("0.30.11", "nvml-shim-12.9", "present", "fail"),  # the 550 rule arrived in v0.30.11
    # Ollama's own `ollama gpu-discover` dies in NVML: the major stays 0 and the gate only warns
    # (v0.32.15 discover/native_probe.go:93-97, cuda_compat.go:37-41), whatever the string would have said.
    ("0.32.15", "nvml-shim-crash", "present", "pass"),
])
def test_gate_by_release_and_reading(tmp_path, native, version, nvml, link, status):
    report = _verify(layout.lay_out_v030(tmp_path, native, version=version, nvml=nvml), link)
    assert report["checks"][0]["status"] == status, report["checks"][0]


def test_runtime_12_0_has_no_gate(tmp_path, native):
    """Only libcudart.so.12 in cuda_v12: runtime 12.0, neither rule applies (cuda_compat.go:46-56)."""
    root = layout.lay_out_v030(tmp_path, native, nvml="nvml-shim-12.9", runtime="12")
    (root / "usr/local/lib/ollama/cuda_v12/libcudart.so.12").unlink()
    layout.place(root, "/usr/local/lib/ollama/cuda_v12/libcudart.so.12", native["cudart-12"])
    assert _verify(root)["checks"][0]["status"] == "pass"


def test_the_gate_reads_the_major_from_the_roots_own_gpu_discover(tmp_path, native):
    """v0.32.15 discover/llama_server.go:157 and native_probe.go:82-88: the driver major is what
    `ollama gpu-discover --lib-dir LIB --lib-dir FOLDER` of the root prints, run like llama-server."""
    nvml = _verify(layout.lay_out_v030(tmp_path, native, nvml="nvml-shim-crash"))["checks"][0]
    assert "Ollama's native probe failed" in nvml["summary"]
    assert nvml["evidence"][0].startswith("native probe: ollama gpu-discover SIGSEGV")


def test_a_real_r535_driver_is_told_the_release_before_the_gate(tmp_path, native):
    """NVML answering a driver branch (535) below 550 (v0.32.15 discover/cuda_compat.go:60-68): removing the
    NVML link is no fix for a real driver; a release before the gate (v0.30.10, the gate arrived in v0.30.11) is,
    and on a vGPU guest the branch is the host's."""
    nvml = _verify(layout.lay_out_v030(tmp_path, native, nvml="nvml-r535"))["checks"][0]
    assert nvml["status"] == "fail"
    assert 'driver=535 required_driver="550 or newer"' in nvml["cause"]
    assert "v0.30.10 or older" in nvml["fix"] and "nvml_link" not in nvml["fix"]
