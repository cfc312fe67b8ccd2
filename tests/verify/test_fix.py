"""`vgpu-fix fix --dry-run --json` chooses the profile and every variable from the host's own evidence,
naming the evidence line of each choice, or says why no shipped profile can fix the host and changes
nothing. One fake host per kind, laid out as a v0.32.15 install.sh leaves it (tests/native/layout.py)
with gcc-built shims whose exported symbols, SONAMEs and reported versions are real."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fixer.demo import SEED_UNIT, snapshot_tree
from tests.native import layout

VENDOR_DIR = "/opt/acme/lib64"  # neither /opt/vgpu nor vgpu in any name: shims are found by their symbols
PCI = "/sys/bus/pci/devices"


def _pci(root: Path, address: str, vendor: str, device: str, cls: str = "0x030200", driver: str | None = None) -> None:
    base = root / PCI.lstrip("/") / address
    base.mkdir(parents=True, exist_ok=True)
    for name, value in (("vendor", vendor), ("device", device), ("class", cls)):
        (base / name).write_text(value + "\n")
    if driver:
        folder = root / "sys/bus/pci/drivers" / driver
        folder.mkdir(parents=True, exist_ok=True)
        (base / "driver").symlink_to(f"../../../bus/pci/drivers/{driver}")


def _vendor_shims(root: Path, native: dict, shim: str, nvml: str, cudart: str) -> None:
    """The vendor's shims under names of its own, in a directory of its own (the v0.30 layout's go away)."""
    for name in ("libvgpu-cuda.so", "libvgpu-cudart.so", "libvgpu-nvml.so"):
        (root / layout.SHIM_DIR.lstrip("/") / name).unlink()
    layout.place(root, f"{VENDOR_DIR}/libacme-drv.so", native[shim])
    layout.place(root, f"{VENDOR_DIR}/libacme-rt.so", native[cudart])
    layout.place(root, f"{VENDOR_DIR}/libacme-mgmt.so", native[nvml])


def host(root: Path, native: dict, kind: str) -> Path:
    """A host of `kind` before any fix: v0.32.15 layout, the stock unit, the device on the PCI bus."""
    options = {"below-gate": {"nvml": "nvml-shim-12.9"}}.get(kind, {})
    layout.lay_out_v030(root, native, **options)
    (root / "etc/systemd/system").mkdir(parents=True, exist_ok=True)
    (root / "etc/systemd/system/ollama.service").write_text(SEED_UNIT)
    shim = {"preload": "cuda-shim-open", "cuda13-only": "cuda-shim-13000"}.get(kind, "cuda-shim")
    cudart = "cudart-shim-13" if kind == "cuda13-only" else "cudart-shim"
    _vendor_shims(root, native, shim, options.get("nvml", "nvml-shim"), cudart)
    if kind == "passthrough":
        _pci(root, "0000:00:05.0", "0x10de", "0x2330", driver="nvidia")
        (root / "sys/module/nvidia").mkdir(parents=True)
        (root / "sys/module/nvidia/version").write_text("580.65.06\n")
    elif kind == "nothing":
        _pci(root, "0000:00:02.0", "0x1af4", "0x1050", cls="0x030000")  # virtio-gpu only: no para-virtual H100
    else:
        _pci(root, "0000:00:05.0", "0x10de", "0x2331")
    return root


SHIM_VARS = {"shim_dir": VENDOR_DIR, "cuda_shim": "libacme-drv.so", "cudart_shim": "libacme-rt.so",
             "nvml_shim": "libacme-mgmt.so", "pci_vendor": "0x10de", "pci_device": "0x2331", "ollama_group": "ollama",
             "ollama_bin": layout.OLLAMA_BIN, "ollama_lib": layout.OLLAMA_LIB}
# kind -> (profile, variables, the evidence id each named choice must cite)
CASES = {
    "library-path": ("h100-vgpu", {**SHIM_VARS, "nvml_link": "present", "cuda_major": "12", "cuda_library": "cuda_v12"},
                     {"profile": "shim:driver", "shim_dir": "shim:driver", "nvml_shim": "shim:nvml",
                      "pci_device": "pci", "cuda_library": "folders"}),
    "preload": ("h100-vgpu-preload", {**SHIM_VARS, "nvml_link": "present", "cuda_major": "12"},
                {"profile": "interposes"}),
    "cuda13-only": ("h100-vgpu-cuda13", {**SHIM_VARS, "cuda_major": "13", "cuda_library": "cuda_v13"},
                    {"profile": "shim:runtime", "cuda_major": "shim:runtime"}),
    "below-gate": ("h100-vgpu", {**SHIM_VARS, "nvml_link": "absent", "cuda_major": "12"},
                   {"nvml_link": "versions"}),
    "passthrough": ("passthrough-gpu", {"cuda_library": "cuda_v13", "ollama_lib": layout.OLLAMA_LIB},
                    {"profile": "nvidia", "cuda_library": "choice"}),
}
# kind -> what an evidence line must say
EVIDENCE = {
    "library-path": {"shim:driver": f"{VENDOR_DIR}/libacme-drv.so exports cuInit, cuDriverGetVersion (SONAME libcuda.so.1)",
                     "versions": "cuDriverGetVersion = 12040", "pci": "0x10de:0x2331"},
    "preload": {"interposes": "defines libc's open"},
    "cuda13-only": {"versions": "cuDriverGetVersion = 13000", "shim:runtime": "SONAME libcudart.so.13"},
    "below-gate": {"versions": "nvmlSystemGetDriverVersion = '12.9.00'"},
    "passthrough": {"nvidia": "580.65.06", "choice": "cuda_v13"},
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
    assert doc["choices"]["variables"]["nvml_link"] == "present"  # the gate cannot be judged unread


def test_text_output_shows_each_choice_with_its_evidence_then_the_plan(tmp_path, native, cli):
    root = host(tmp_path, native, "library-path")
    out = cli("fix", "--root", str(root), "--probe", "--dry-run").stdout
    assert out.index("Evidence:") < out.index("Chosen (system unit):") < out.index("Plan for profile h100-vgpu")
    assert f"  shim_dir = {VENDOR_DIR}\n      from [shim:driver]" in out
