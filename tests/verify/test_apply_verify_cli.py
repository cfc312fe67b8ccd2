"""End to end through the CLI: apply fixes a real-loading host and verifies it; a fix that cannot work is undone."""

from __future__ import annotations

import json
from pathlib import Path

from fixer.demo import SEED_OVERRIDE, SEED_UNIT, snapshot_tree


def with_seed_unit(root):
    unit_dir = root / "etc/systemd/system"
    (unit_dir / "ollama.service.d").mkdir(parents=True)
    (unit_dir / "ollama.service").write_text(SEED_UNIT.replace("User=ollama\n", "").replace("Group=ollama\n", ""))
    (unit_dir / "ollama.service.d/override.conf").write_text(SEED_OVERRIDE)
    (root / "var/lib").mkdir(parents=True, exist_ok=True)
    return str(root)


def test_apply_fixes_the_seed_situation_and_verify_proves_it(make_host, cli):
    # The seed's driver shim interposes dlopen: preloaded it swallows ggml's load of the backend.
    root = with_seed_unit(make_host(shim="cuda-shim-dlopen"))
    assert cli("verify", "--root", root, "--probe").returncode == 9
    applied = cli("apply", "--root", root, "--probe", "--json")
    doc = json.loads(applied.stdout)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert doc["changed"] and doc["verify"]["ok"]
    assert {c["name"]: c["status"] for c in doc["verify"]["checks"]}["load"] == "pass"
    verified = cli("verify", "--root", root, "--probe")
    assert verified.returncode == 0 and "verdict: passed at modeled: cuda_v12/libggml-cuda.so loads" in verified.stdout


def test_apply_rolls_back_when_the_backend_still_does_not_load(make_host, cli):
    root = with_seed_unit(make_host(shim="cuda-shim-no-memcreate"))
    before = snapshot_tree(root)
    applied = cli("apply", "--root", root, "--probe", "--json")
    doc = json.loads(applied.stdout)
    assert applied.returncode == 6, applied.stdout + applied.stderr
    assert doc["failed"] and not doc["verify"]["ok"] and "verify_after_rollback" in doc
    assert "rolled back" in doc["msg"]
    assert snapshot_tree(root) == before


def test_verify_json_names_the_cause(make_host, cli):
    root = with_seed_unit(make_host(shim="cuda-shim-dlopen"))
    result = cli("verify", "--root", root, "--probe", "--json")
    doc = json.loads(result.stdout)
    assert result.returncode == 9 and doc["failed"]
    assert "dlopen" in json.dumps(doc["verify"]["checks"])


def test_the_cache_apply_builds_is_what_the_probe_loads_through(namespaces, make_host, cli, tmp_path):
    """No library path at all: libcuda.so.1 is found only through the root's ld.so.cache, which
    apply's ldconfig built; the probe reads that cache inside a private mount namespace."""
    root = with_seed_unit(make_host())
    profile = tmp_path / "cache-only.yaml"
    profile.write_text("extends: h100-vgpu\nname: cache-only\nlibrary_path: []\n")
    applied = cli("apply", "--root", root, "--probe", "--profile", str(profile), "--json")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    load = {c["name"]: c for c in json.loads(applied.stdout)["verify"]["checks"]}["load"]
    assert load["status"] == "pass" and load["details"]["mode"] == "isolated"
    (Path(root) / "etc/ld.so.cache").unlink()
    broken = cli("verify", "--root", root, "--probe", "--profile", str(profile), "--json")
    assert broken.returncode == 9
    assert "libcuda.so.1" in json.dumps(json.loads(broken.stdout)["verify"]["checks"])
