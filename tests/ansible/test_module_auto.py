"""`profile: auto`: the vgpu_fix module chooses the profile and its variables as `vgpu-fix fix` does, in
real ansible-playbook runs on host kinds of tests/native/host_kinds.py under temporary roots."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixer import core
from fixer.demo import snapshot_tree
from tests.native.build import build_native
from tests.native.host_kinds import VENDOR_DIR, host

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def native(tmp_path_factory) -> dict[str, Path]:
    return build_native(tmp_path_factory.mktemp("native"))


def auto_task(**args) -> dict:
    return {"name": "vgpu_fix", "vgpufix.vgpu.vgpu_fix": {"root": "{{ vgpu_root }}", "profile": "auto", "probe": True,
                                                           "verify": False, **args},
            "register": "vgpu", "ignore_errors": True}


def test_check_mode_chooses_from_the_evidence_and_writes_nothing(ansible, native):
    root = ansible.host("alpha", build=lambda r: host(Path(r), native, "below-gate"))
    before = snapshot_tree(root, exclude=())
    run = ansible.play([auto_task()], "--check")
    result = run.result()
    assert run.rc == 0 and result["changed"] is True, run.output[-3000:]
    assert result["profile"] == "h100-vgpu" and result["choices"]["profile"] == "h100-vgpu"
    assert result["choices"]["variables"]["shim_dir"] == VENDOR_DIR
    assert result["choices"]["variables"]["nvml_link"] == "absent"
    lines = {e["id"]: e["line"] for e in result["evidence"]["lines"]}
    assert "nvmlSystemGetDriverVersion = '12.9.00'" in lines["versions"]
    assert any(c["path"] == f"{VENDOR_DIR}/libcuda.so.1" for c in result["changes"] if c["action"] == "create")
    assert snapshot_tree(root, exclude=()) == before


def test_vars_override_the_chosen_values(ansible, native):
    ansible.host("alpha", build=lambda r: host(Path(r), native, "library-path"))
    result = ansible.play([auto_task(vars={"pci_device": "0x2330"})], "--check").result()
    chosen = next(c for c in result["choices"]["choices"] if c["name"] == "pci_device")
    assert (chosen["value"], chosen["evidence"]) == ("0x2330", "operator")


def test_apply_records_the_generation_of_the_chosen_profile(ansible, native):
    root = ansible.host("alpha", build=lambda r: host(Path(r), native, "cuda13-only"))
    result = ansible.play([auto_task()]).result()
    assert result["changed"] is True and result["generation"] == 1, result["msg"]
    assert result["profile"] == "h100-vgpu-cuda13" and result["choices"]["variables"]["cuda_major"] == "13"
    assert core.generation_detail(root, 1)["fix"] == {"profile": "h100-vgpu-cuda13", "scope": "system",
                                                       "variables": result["choices"]["variables"]}


def test_a_host_nothing_can_fix_fails_the_task_naming_why_and_changes_nothing(ansible, native):
    root = ansible.host("alpha", build=lambda r: host(Path(r), native, "nothing"))
    before = snapshot_tree(root, exclude=())
    run = ansible.play([auto_task()])
    result = run.result()
    assert result["failed"] is True and result["exit_code"] == 13 and result["error"] == "CannotFix"
    assert "no shipped profile can fix this host" in result["msg"] and "no-gpu-visible" in result["msg"]
    assert result["choices"]["profile"] is None and result["choices"]["cannot_fix"]
    assert snapshot_tree(root, exclude=()) == before
