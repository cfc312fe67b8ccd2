"""Previews: `rollback --dry-run` shows what a rollback would restore and remove, as diffs, changing
nothing; `history show N` tells what generation N changed, its profile and its verify result."""

from __future__ import annotations

import json
import os

from fixer import profiles
from fixer.apply import transaction as applier

DROPIN = "/etc/systemd/system/ollama.service.d/zz-vgpu-fix.conf"


def _apply(root: str) -> None:
    applier.apply(profiles.load("h100-vgpu", root), root)


def test_rollback_dry_run_shows_diffs_and_changes_nothing(cli, seed_root, snapshot):
    _apply(seed_root)
    before = snapshot(seed_root, exclude=())
    result = cli("rollback", "--root", seed_root, "--dry-run", "--json")
    doc = json.loads(result.stdout)
    assert result.returncode == 0 and doc["changed"] and not doc["failed"]
    assert snapshot(seed_root, exclude=()) == before
    actions = {c["path"]: c["action"] for c in doc["changes"]}
    assert actions[DROPIN] == "delete"  # apply created it: rollback removes it
    assert actions["/etc/ld.so.preload"] == "update"  # brought back with the shim preload
    assert actions["/usr/local/lib/ollama/libggml-cuda.so"] == "create"  # the deleted symlink comes back
    preload = next(d for d in doc["diff"] if d["before_header"].startswith("/etc/ld.so.preload"))
    assert "libvgpu" in preload["after"] and "libvgpu" not in preload["before"]
    assert doc["notes"] == [n for n in doc["notes"] if n.startswith("would roll back generation 1")]


def test_rollback_dry_run_text_names_what_it_removes(cli, seed_root):
    _apply(seed_root)
    text = cli("rollback", "--root", seed_root, "--dry-run").stdout
    assert text.splitlines()[0] == f"Rollback of profile h100-vgpu on root {seed_root}"
    assert f"- rollback      {DROPIN}  (created by generation 1: rollback removes it)" in text


def test_rollback_names_removed_and_restored_paths(cli, seed_root):
    _apply(seed_root)
    doc = json.loads(cli("rollback", "--root", seed_root, "--json").stdout)
    assert DROPIN in doc["removed"] and "/etc/ld.so.preload" not in doc["removed"]
    text_root = seed_root
    _apply(text_root)
    lines = cli("rollback", "--root", text_root).stdout.splitlines()
    assert f"removed {DROPIN}" in lines and "restored /etc/ld.so.preload" in lines


def test_rollback_dry_run_reports_edits_since_the_apply_as_conflicts(cli, seed_root):
    _apply(seed_root)
    with open(os.path.join(seed_root, DROPIN.lstrip("/")), "a") as fh:
        fh.write("# local edit\n")
    doc = json.loads(cli("rollback", "--root", seed_root, "--dry-run", "--json").stdout)
    assert doc["conflicts"] == [f"{DROPIN} (generation 1): changed since that apply (--force discards the edit)"]


def test_rollback_dry_run_with_nothing_applied_says_so_and_succeeds(cli, seed_root):
    result = cli("rollback", "--root", seed_root, "--dry-run")
    assert result.returncode == 0 and result.stdout.startswith("nothing to roll back")


def test_history_show_tells_changes_profile_and_verify_result(cli, seed_root):
    # the static level alone, which fails on the placeholder libraries
    result = cli("apply", "--root", seed_root, "--json", "--level", "files")
    assert result.returncode == 6
    doc = json.loads(cli("history", "show", "1", "--root", seed_root, "--json").stdout)
    assert doc["generation"] == 1 and doc["status"] == "rolled_back" and doc["profile"] == "h100-vgpu"
    assert {c["path"] for c in doc["changes"]} >= {DROPIN, "/etc/ld.so.preload"}
    verify = doc["verify"]
    assert verify["ok"] is False and verify["outcome"] == "failed" and "not an ELF file" in verify["cause"]
    assert verify["asked"] == "files" and verify["reached"] is None
    text = cli("history", "show", "1", "--root", seed_root).stdout
    assert text.splitlines()[0].startswith("generation 1: rolled_back, profile h100-vgpu")
    assert f"+ dropin        {DROPIN}" in text and "verify at " in text
    assert "FAILED: cuda_v12/libggml-cuda.so does not load" in text and "level reached: none (asked: files)" in text


def test_history_show_of_a_generation_applied_without_verify(cli, seed_root):
    cli("apply", "--root", seed_root, "--no-verify")
    assert json.loads(cli("history", "show", "1", "--root", seed_root, "--json").stdout)["verify"] is None
    assert "verify: not run" in cli("history", "show", "1", "--root", seed_root).stdout


def test_history_show_of_an_unknown_generation(cli, seed_root):
    cli("apply", "--root", seed_root, "--no-verify")
    result = cli("history", "show", "7", "--root", seed_root)
    assert result.returncode == 3 and "no generation 7" in result.stderr


def test_history_without_a_subcommand_still_lists(cli, seed_root):
    cli("apply", "--root", seed_root, "--no-verify")
    rows = json.loads(cli("history", "--root", seed_root, "--json").stdout)["generations"]
    assert [r["generation"] for r in rows] == [1]
