"""Saved plans: `plan --out` writes them privately and atomically; `apply --plan` applies exactly what
was reviewed or nothing; `apply --dry-run --plan` previews that plan, not a default profile."""

from __future__ import annotations

import json
import os
import stat

import pytest

from fixer.core import plan_digest
from fixer.facts.paths import PathState

RULE = "/etc/udev/rules.d/70-vgpu-fix.rules"


def save(cli, root: str, path: str, *args: str):
    result = cli("plan", "--root", root, "--out", path, *args)
    assert result.returncode == 4, result.stderr
    return result


def test_plan_out_writes_mode_0600_and_names_the_digest(seed_root, cli, tmp_path):
    (tmp_path / "plans").mkdir()
    path = tmp_path / "plans" / "plan.json"
    result = save(cli, seed_root, str(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    document = json.loads(path.read_text())
    assert document["digest"] == plan_digest(document["profile_data"], document["plan"])
    assert f"plan saved to {path} ({document['digest']})" in result.stdout
    assert [p.name for p in path.parent.iterdir()] == ["plan.json"]  # no temp file left beside it


def test_plan_out_refuses_a_symlink_at_the_target_and_neither_follows_nor_replaces_it(seed_root, cli, tmp_path):
    victim = tmp_path / "victim.conf"
    victim.write_text("precious\n")
    link = tmp_path / "plan.json"
    link.symlink_to(victim)
    result = cli("plan", "--root", seed_root, "--out", str(link))
    assert result.returncode == 3
    assert result.stderr.splitlines() == [f"vgpu-fix plan: error: --out {link}: is a symlink; vgpu-fix writes only a "
                                          "new file or replaces a regular one"]
    assert victim.read_text() == "precious\n" and link.is_symlink()


def test_plan_out_onto_a_directory_is_one_error_line_naming_it(seed_root, cli, tmp_path):
    (tmp_path / "plan.json").mkdir()
    result = cli("plan", "--root", seed_root, "--out", str(tmp_path / "plan.json"))
    assert result.returncode == 3
    assert result.stderr.splitlines()[0].endswith(f"--out {tmp_path}/plan.json: is a directory; vgpu-fix writes "
                                                  "only a new file or replaces a regular one")


def test_dry_run_with_a_plan_previews_that_plan_not_the_default_profile(seed_root, cli, tmp_path):
    path = str(tmp_path / "plan.json")
    save(cli, seed_root, path, "--set", "pci_vendor=0x1234", "--json")
    saved = json.loads(open(path).read())["plan"]
    preview = cli("apply", "--root", seed_root, "--dry-run", "--plan", path, "--json")
    assert preview.returncode == 4, preview.stderr
    shown = json.loads(preview.stdout)
    assert shown["changes"] == saved["changes"]
    default = cli("apply", "--root", seed_root, "--dry-run", "--json")
    assert json.loads(default.stdout)["changes"] != saved["changes"]  # the pci_vendor differs


@pytest.mark.parametrize("extra", [("--profile", "h100-vgpu"), ("--set", "pci_vendor=0x10de")])
def test_plan_with_profile_or_set_is_a_usage_error(seed_root, cli, tmp_path, snapshot, extra):
    path = str(tmp_path / "plan.json")
    save(cli, seed_root, path)
    before = snapshot(seed_root)
    result = cli("apply", "--root", seed_root, "--plan", path, "--no-verify", *extra)
    assert result.returncode == 2
    assert "--plan applies the profile recorded in the plan: drop --profile/--set" in result.stderr
    assert snapshot(seed_root) == before


def test_an_unedited_saved_plan_applies_and_says_so(seed_root, cli, tmp_path):
    path = str(tmp_path / "plan.json")
    save(cli, seed_root, path)
    result = cli("apply", "--root", seed_root, "--plan", path, "--no-verify")
    assert result.returncode == 0, result.stderr
    assert "applied generation 1" in result.stdout


def test_a_changed_owner_makes_a_saved_plan_stale(seed_root, cli, tmp_path):
    """Fingerprints include uid and gid: a chown alone is a changed host (exit 5)."""
    if os.geteuid() != 0:
        pytest.skip("chown to another user needs root")
    path = str(tmp_path / "plan.json")
    save(cli, seed_root, path)
    os.chown(os.path.join(seed_root, "etc/ld.so.preload"), 4242, 4242)
    result = cli("apply", "--root", seed_root, "--plan", path, "--no-verify")
    assert result.returncode == 5, result.stderr
    assert "changed: /etc/ld.so.preload" in result.stderr


def test_fingerprints_tell_owners_apart():
    mine = PathState("file", data=b"x", mode=0o644, uid=0, gid=0)
    assert mine.fingerprint() != PathState("file", data=b"x", mode=0o644, uid=1000, gid=0).fingerprint()
    assert mine.fingerprint() != PathState("file", data=b"x", mode=0o644, uid=0, gid=1000).fingerprint()
