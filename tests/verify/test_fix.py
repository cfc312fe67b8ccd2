"""`vgpu-fix fix --dry-run --json` chooses the profile and every variable from the host's own evidence,
naming the evidence line of each choice, or says why no shipped profile can fix the host and changes
nothing. One fake host per kind, laid out as a v0.32.15 install.sh leaves it (tests/native/layout.py)
with gcc-built shims whose exported symbols, SONAMEs and reported versions are real."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fixer.demo import snapshot_tree
from tests import hosts
from tests.native import layout
from tests.native.host_kinds import GUEST_DEVICE, VENDOR_DIR, host
from tests.verify.test_llama_server_real import llama_server  # noqa: F401  (the real llama-server fixture)

SHIM_VARS = {"shim_dir": VENDOR_DIR, "cuda_shim": "libacme-drv.so", "cudart_shim": "libacme-rt.so",
             "nvml_shim": "libacme-mgmt.so", "pci_vendor": GUEST_DEVICE[1], "pci_device": GUEST_DEVICE[2], "ollama_group": "ollama",
             "ollama_bin": layout.OLLAMA_BIN, "ollama_lib": layout.OLLAMA_LIB}
# kind -> (profile, variables, the evidence id each named choice must cite)
CASES = {
    "library-path": ("h100-vgpu", {**SHIM_VARS, "nvml_link": "absent", "cuda_major": "12", "cuda_library": "cuda_v12"},
                     {"profile": "shim:driver", "shim_dir": "shim:driver", "nvml_shim": "shim:nvml",
                      "pci_device": "pci", "cuda_library": "versions"}),
    "preload": ("h100-vgpu-preload", {**SHIM_VARS, "nvml_link": "absent", "cuda_major": "12"},
                {"profile": "interposes"}),
    "cuda13-only": ("h100-vgpu-cuda13", {**SHIM_VARS, "cuda_major": "13", "cuda_library": "cuda_v13"},
                    {"profile": "shim:runtime", "cuda_major": "shim:runtime"}),
    "below-gate": ("h100-vgpu", {**SHIM_VARS, "nvml_link": "absent", "cuda_major": "12"},
                   {"nvml_link": "installation"}),
    "passthrough": ("passthrough-gpu", {"cuda_library": "cuda_v12", "ollama_lib": layout.OLLAMA_LIB},
                    {"profile": "nvidia", "cuda_library": "choice"}),
}
# kind -> what an evidence line must say
EVIDENCE = {
    "library-path": {"shim:driver": f"{VENDOR_DIR}/libacme-drv.so exports cuInit, cuDriverGetVersion (SONAME libcuda.so.1)",
                     "versions": "cuDriverGetVersion = 12040", "pci": "0x10de:0x2331"},
    "preload": {"interposes": "defines libc's open"},
    "cuda13-only": {"versions": "cuDriverGetVersion = 13000", "shim:runtime": "SONAME libcudart.so.13"},
    "below-gate": {"versions": "nvmlSystemGetDriverVersion = '12.9.00'"},
    "passthrough": {"nvidia": "550.90.07", "choice": "Ollama would use cuda_v12 (NVIDIA driver 550.90.07"},
}


def _fix(cli, root: Path, *extra: str) -> tuple[int, dict]:
    proc = cli("fix", "--root", str(root), "--probe", "--dry-run", "--json", *extra)
    return proc.returncode, json.loads(proc.stdout)


@pytest.mark.parametrize("kind", CASES)
def test_fix_chooses_the_profile_and_variables_from_the_evidence(tmp_path, native, cli, kind):
    root = host(tmp_path, native, kind)
    code, doc = _fix(cli, root)
    profile, variables, cited = CASES[kind]
    assert code == 4, doc["msg"]  # a plan with changes pending, nothing applied
    assert (doc["command"], doc["profile"], doc["choices"]["profile"]) == ("fix", profile, profile)
    chosen = doc["choices"]["variables"]
    assert {k: chosen.get(k) for k in variables} == variables
    by_name = {c["name"]: c for c in doc["choices"]["choices"]}
    lines = {e["id"]: e["line"] for e in doc["evidence"]["lines"]}
    for name, evidence_id in cited.items():
        assert by_name[name]["evidence"] == evidence_id and by_name[name]["line"] == lines[evidence_id], by_name[name]
    for evidence_id, phrase in EVIDENCE[kind].items():
        assert phrase in lines[evidence_id], (evidence_id, lines[evidence_id])
    assert doc["changes"] and doc["generation"] is None


def test_the_plan_is_the_chosen_profile_with_the_chosen_variables(tmp_path, native, cli):
    """The plan fix shows is the one `plan --profile P --set ...` shows for its choices."""
    root = host(tmp_path, native, "below-gate")
    _, doc = _fix(cli, root)
    sets = [a for k, v in doc["choices"]["variables"].items() for a in ("--set", f"{k}={v}")]
    planned = json.loads(cli("plan", "--root", str(root), "--profile", doc["profile"], *sets, "--json").stdout)
    assert planned["changes"] == doc["changes"]
    assert any(c["path"] == f"{VENDOR_DIR}/libcuda.so.1" and c["after"]["target"] == "libacme-drv.so"
               for c in doc["changes"] if c["after"])


def test_a_host_nothing_can_fix_is_named_and_left_alone(tmp_path, native, cli):
    root = host(tmp_path, native, "nothing")
    before = snapshot_tree(str(root))
    proc = cli("fix", "--root", str(root), "--probe", "--yes", "--json")
    doc = json.loads(proc.stdout)
    assert proc.returncode == 13 and doc["exit_code"] == 13 and doc["failed"] is True
    assert doc["choices"]["profile"] is None and doc["changes"] == []
    assert any("outside the guest" in why and "no-gpu-visible" in why for why in doc["choices"]["cannot_fix"])
    assert "no shipped profile can fix this host" in doc["msg"]
    assert snapshot_tree(str(root)) == before


def test_a_guest_without_any_driver_api_cannot_be_fixed(tmp_path, native, cli):
    root = host(tmp_path, native, "library-path")
    (root / VENDOR_DIR.lstrip("/") / "libacme-drv.so").unlink()
    (root / VENDOR_DIR.lstrip("/") / "libacme-rt.so").unlink()
    code, doc = _fix(cli, root)
    assert code == 13
    assert any("exports the CUDA driver API" in why for why in doc["choices"]["cannot_fix"])
    assert any("passthrough-gpu cannot fix: a missing or broken NVIDIA driver" in why
               for why in doc["choices"]["cannot_fix"])


def test_the_operators_set_wins_and_says_so(tmp_path, native, cli):
    root = host(tmp_path, native, "library-path")
    code, doc = _fix(cli, root, "--set", "pci_device=0x2330")
    choice = next(c for c in doc["choices"]["choices"] if c["name"] == "pci_device")
    assert (choice["value"], choice["evidence"], choice["line"]) == ("0x2330", "operator", "--set pci_device=0x2330")


def test_without_probe_a_copy_runs_nothing_and_says_the_versions_were_not_read(tmp_path, native, cli):
    root = host(tmp_path, native, "below-gate")
    proc = cli("fix", "--root", str(root), "--dry-run", "--json")
    doc = json.loads(proc.stdout)
    lines = {e["id"]: e["line"] for e in doc["evidence"]["lines"]}
    assert "not read" in lines["versions"] and doc["evidence"]["nvml_version"] is None
    # v0.32.15: the link only feeds the driver gate, which keeps the GPU without it (host_defaults.nvml_link)
    assert doc["choices"]["variables"]["nvml_link"] == "absent"


def test_text_output_shows_each_choice_with_its_evidence_then_the_plan(tmp_path, native, cli):
    root = host(tmp_path, native, "library-path")
    out = cli("fix", "--root", str(root), "--probe", "--dry-run").stdout
    assert out.index("Evidence:") < out.index("Chosen (system unit):") < out.index("Plan for profile h100-vgpu")
    assert f"  shim_dir = {VENDOR_DIR}\n      from [shim:driver]" in out


def test_on_a_copy_fix_applies_and_proves_at_the_modeled_level(tmp_path, native, cli, llama_server):
    """Where the default profile rolls back on Ollama's driver gate, fix's nvml_link=absent passes: the copy's
    real llama-server lists the device (its files run sandboxed, --probe); the level reached is stated."""
    root = host(tmp_path, native, "below-gate", llama_server)
    proc = cli("fix", "--root", str(root), "--probe", "--json", timeout=300)
    doc = json.loads(proc.stdout)
    assert proc.returncode == 0, doc["msg"]
    assert doc["generation"] == 1 and doc["choices"]["variables"]["nvml_link"] == "absent"
    assert doc["proof"]["asked"] == "modeled" and doc["proof"]["reached"] == "modeled" and "modeled" in doc["msg"]
    assert not (root / VENDOR_DIR.lstrip("/") / "libnvidia-ml.so.1").exists()


def test_on_a_copy_without_probe_fix_is_refused_up_front_like_apply(tmp_path, native, cli):
    root = host(tmp_path, native, "library-path")
    before = snapshot_tree(str(root))
    proc = cli("fix", "--root", str(root), "--json")
    doc = json.loads(proc.stdout)
    assert proc.returncode == 12 and "Add --probe" in doc["msg"]
    assert doc["choices"]["profile"] == "h100-vgpu"  # what it would have applied, and why
    assert snapshot_tree(str(root)) == before


@pytest.mark.parametrize("kind", ["library-path", "preload", "cuda13-only", "below-gate", "passthrough"])
def test_fix_is_idempotent_its_own_changes_do_not_change_the_choice(tmp_path, native, cli, kind):
    """The generation records what was chosen; a second run reads the host fix changed and chooses the same."""
    root = host(tmp_path, native, kind)
    first = json.loads(cli("fix", "--root", str(root), "--probe", "--no-verify", "--json").stdout)
    assert first["generation"] == 1, first["msg"]
    detail = json.loads(cli("history", "show", "1", "--root", str(root), "--json").stdout)
    assert detail["fix"] == {"profile": first["profile"], "variables": first["choices"]["variables"], "scope": "system"}
    code, again = _fix(cli, root)
    assert code == 0 and again["msg"] == "converged"
    assert again["choices"]["variables"] == first["choices"]["variables"]


def test_a_cuda_13_runtime_shim_whose_driver_reports_12_runs_cuda_v12(tmp_path, native, cli):
    """Ollama's own cudart 12 talks to the driver shim; the vendor's runtime shim is not what loads."""
    root = host(tmp_path, native, "cuda13-only")
    layout.place(root, f"{VENDOR_DIR}/libacme-drv.so", native["cuda-shim"])  # cuDriverGetVersion: 12040
    code, doc = _fix(cli, root)
    chosen = {c["name"]: c for c in doc["choices"]["choices"]}
    assert (doc["profile"], chosen["cuda_major"]["value"], chosen["cuda_major"]["evidence"]) == ("h100-vgpu", "12", "versions")


def test_only_cuda_v13_shipped_and_a_12_x_driver_cannot_be_fixed(tmp_path, native, cli):
    root = host(tmp_path, native, "cuda13-only")
    layout.place(root, f"{VENDOR_DIR}/libacme-drv.so", native["cuda-shim"])
    shutil.rmtree(root / layout.OLLAMA_LIB.lstrip("/") / "cuda_v12")
    code, doc = _fix(cli, root)
    assert code == 13 and doc["choices"]["profile"] is None
    why = doc["choices"]["cannot_fix"]
    assert "only cuda_v13 is shipped and the shim's driver reports 12040" in why[0] and "[versions: native probe" in why[0]
    assert why[1] == ("h100-vgpu-cuda13 cannot fix: a shim that reports a 12.x driver: the real cudart 13 refuses it "
                      "(error 35); use h100-vgpu")


def test_a_guest_whose_para_virtual_device_is_not_nvidias_cannot_be_fixed(tmp_path, native, cli):
    """A GPU-class device of another vendor is on the bus (doctor sees a GPU), but no NVIDIA device."""
    root = host(tmp_path, native, "nothing")
    hosts.pci_device(str(root), "0000:00:06.0", "0x1002", "0x74a1", "0x030200")  # an AMD device
    code, doc = _fix(cli, root)
    assert code == 13 and doc["choices"]["cannot_fix"] == [
        "no para-virtual NVIDIA device on this guest's PCI bus [pci: no NVIDIA-vendor display device without a "
        "kernel driver on the PCI bus]",
        "h100-vgpu cannot fix: a missing para-virtual PCI device or a stopped host-side mediator (outside the guest)"]
