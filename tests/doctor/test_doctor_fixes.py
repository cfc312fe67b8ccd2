"""doctor's fixes follow Ollama's source: folder rules only for the folders Ollama scans, MIG second-pass drops
named as Ollama's own limit, and the 550 gate on a vGPU guest answered with the options that exist there."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fixer.demo import build_seed_host
from fixer.doctor.verdict import diagnose

LOGS = Path(__file__).parent / "logs"


def _seed(tmp_path) -> str:
    root = tmp_path / "root"
    root.mkdir()
    build_seed_host(str(root))
    return str(root)


def test_a_folder_the_pin_skips_is_not_judged(tmp_path):
    """v0.32.15 discover/runner.go:100: with OLLAMA_LLM_LIBRARY=cuda_v12 Ollama never scans cuda_v13, so its
    missing libcudart.so.13 is no cause; the watchdog on cuda_v12 is (the issue's transcript)."""
    root = _seed(tmp_path)
    os.unlink(os.path.join(root, "usr/local/lib/ollama/cuda_v13/libcudart.so.13"))
    found = diagnose(root, (LOGS / "v0.32.15_watchdog_timeout.log").read_text())
    assert not any("cuda_v13" in f.summary for f in found.findings if f.id == "cudart-replaced"), found.findings
    assert "libcudart.so.13" not in found.verdict
    ids = [f.id for f in found.findings]
    assert "cudart-replaced" not in ids[:ids.index(next(f.id for f in found.findings if "watchdog" in f.explanation
                                                             or "hung" in f.summary))]


def test_unpinned_every_cuda_folder_is_judged(tmp_path):
    """Unpinned, Ollama scans every folder (runner.go:98-110): cuda_v13's missing runtime is a cause."""
    root = _seed(tmp_path)
    os.unlink(os.path.join(root, "usr/local/lib/ollama/cuda_v13/libcudart.so.13"))
    dropin = os.path.join(root, "etc/systemd/system/ollama.service.d/override.conf")
    Path(dropin).write_text(Path(dropin).read_text().replace('Environment="OLLAMA_LLM_LIBRARY=cuda_v12"\n', ""))
    found = diagnose(root, None)
    assert any(f.id == "cudart-replaced" and "cuda_v13" in f.summary for f in found.findings)


MIG_LOG = """\
time=2026-03-02T11:02:10.000Z level=INFO source=routes.go:1589 msg="Listening on 127.0.0.1:11434 (version 0.24.0)"
time=2026-03-02T11:02:10.500Z level=DEBUG source=runner.go:124 msg="evaluating which, if any, devices to filter out" initial_count=1
time=2026-03-02T11:02:10.510Z level=DEBUG source=runner.go:145 msg="verifying if device is supported" library=/usr/local/lib/ollama/cuda_v12 description="NVIDIA A100-SXM4-40GB MIG 1g.5gb" compute=8.0 id=GPU-a0a1a2a3-a4a5-a6a7-a8a9-aaabacadae00 pci_id=0000:3b:00.0
time=2026-03-02T11:02:11.020Z level=DEBUG source=runner.go:153 msg="filtering device which didn't fully initialize" id=GPU-a0a1a2a3-a4a5-a6a7-a8a9-aaabacadae00 libdir=/usr/local/lib/ollama/cuda_v12 pci_id=0000:3b:00.0 library=CUDA
time=2026-03-02T11:02:11.100Z level=INFO source=types.go:60 msg="inference compute" id=cpu library=cpu compute="" name=cpu description=cpu libdirs=ollama driver="" pci_id="" type="" total="62.5 GiB" available="60.1 GiB"
"""


def test_a_mig_slice_dropped_by_the_second_pass_is_not_blamed_on_the_shim(tmp_path):
    """v0.13.2-v0.24 (v0.24.0 discover/runner.go:118-180) re-check a MIG slice by its parent's UUID: an Ollama
    limit (ollama#14031, #13800), fixed by v0.30's index-based second pass."""
    found = diagnose(_seed(tmp_path), MIG_LOG)
    mig = next(f for f in found.findings if f.id == "mig-second-pass")
    assert "not the shim" in mig.summary
    assert "v0.30.0 or newer" in mig.fix.text
    assert not any(f.id == "devices-filtered" for f in found.findings)


GATE_LOG = """\
time=2026-08-20T09:30:00.105+02:00 level=INFO source=routes.go:2008 msg="Listening on 127.0.0.1:11434 (version 0.32.15)"
time=2026-08-20T09:30:01.000+02:00 level=WARN source=cuda_compat.go:64 msg="NVIDIA driver too old" device="NVIDIA H100 80GB HBM3" compute=9.0 driver=535 required_driver="550 or newer"
time=2026-08-20T09:30:01.100+02:00 level=INFO source=types.go:50 msg="inference compute" id=cpu library=cpu compute="" name=cpu description=cpu libdirs=ollama driver="" pci_id="" type="" total="62.5 GiB" available="60.1 GiB"
"""


def test_the_550_gate_on_a_vgpu_guest_names_the_options_that_exist(tmp_path):
    """v0.30.11 discover/cuda_compat.go:14,60-68 drops the device below 550; a vGPU guest's branch is the
    host's (R535 guests; ollama#17290, #16415): no "upgrade the driver", but a release before the gate."""
    root = _seed(tmp_path)
    os.makedirs(os.path.join(root, "etc/nvidia"))
    Path(root, "etc/nvidia/gridd.conf").write_text("FeatureType=1\n")
    gate = next(f for f in diagnose(root, GATE_LOG).findings if f.id == "nvidia-driver-gate")
    assert "Upgrade the NVIDIA driver" not in gate.fix.text
    assert "v0.30.10" in gate.fix.text and "No fix inside this guest" in gate.fix.text
    assert "/etc/nvidia/gridd.conf" in gate.explanation


def test_the_550_gate_on_bare_metal_also_names_the_release_before_it(tmp_path):
    gate = next(f for f in diagnose(_seed(tmp_path), GATE_LOG).findings if f.id == "nvidia-driver-gate")
    assert gate.fix.text.startswith("Upgrade the NVIDIA driver to 550 or newer") and "v0.30.10" in gate.fix.text


@pytest.mark.parametrize("folder,judged", [("cuda_v12", True), ("cuda_v13", False)])
def test_a_hand_made_file_counts_only_in_a_folder_ollama_scans(tmp_path, folder, judged):
    """Pinned to cuda_v12 (runner.go:100), a shim dropped into cuda_v13 never reaches a runner."""
    root = _seed(tmp_path)
    Path(root, f"usr/local/lib/ollama/{folder}/libvgpu-cuda.so").write_bytes(b"")
    found = diagnose(root, None)
    modified = [f for f in found.findings if f.id == "lib-ollama-modified"]
    assert any(folder in e for f in modified for e in f.evidence) == judged
