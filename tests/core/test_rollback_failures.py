"""A rollback that fails part-way is exit 7 (RollbackFailed) naming the generation and what was and
was not restored, whatever failed: a refused write or a failed ldconfig. Special files are never
touched; hard links are recorded and rollback says the link is not restored; a manifest that could
not be read back is refused before the first change; a damaged generation never blocks the others."""

from __future__ import annotations

import json
import os
import shutil
import stat

import pytest

from fixer import core, profiles
from fixer.apply import transaction as applier
from fixer.apply.journal import Journal
from fixer.errors import InvalidInput
from fixer.model.profile import ManagedFile

LINK = "usr/local/lib/ollama/libggml-cuda.so"


def load(root: str, name: str = "h100-vgpu"):
    return profiles.load(name, root)


def _refuse_writes_under_ollama_lib(root: str) -> None:
    """Make /usr/local/lib/ollama a symlink: every write through it is refused (never followed)."""
    real = os.path.join(root, "usr/local/lib/ollama")
    shutil.move(real, real + ".moved")
    os.symlink("ollama.moved", real)


def test_a_refused_write_during_rollback_is_exit_7_naming_what_was_and_was_not_restored(seed_root, cli):
    assert cli("apply", "--root", seed_root, "--no-verify").returncode == 0
    _refuse_writes_under_ollama_lib(seed_root)
    back = cli("rollback", "--root", seed_root, "--force", "--json")
    doc = json.loads(back.stdout)
    assert back.returncode == 7, back.stdout + back.stderr
    assert doc["failed"] is True and doc["changed"] is True and doc["generation"] == 1
    assert doc["msg"].startswith("rollback of generation 1 failed: ")
    assert "/" + LINK in doc["not_restored"]
    assert "/etc/ld.so.preload" in doc["restored"]  # restored before the refused one (innermost first)
    assert f"not restored: /{LINK}" in doc["errors"]


def test_a_failed_ldconfig_during_rollback_is_exit_7_after_every_file_is_back(seed_root, cli, tmp_path):
    assert cli("apply", "--root", seed_root, "--no-verify").returncode == 0
    with open(os.path.join(seed_root, "etc/ld.so.cache"), "ab") as fh:
        fh.write(b"rebuilt by someone else")  # so rollback reruns ldconfig instead of restoring stale bytes
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "ldconfig").write_text("#!/bin/sh\necho 'ldconfig: broken' >&2\nexit 1\n")
    (fake / "ldconfig").chmod(0o755)
    back = cli("rollback", "--root", seed_root, "--force", env={"PATH": f"{fake}:{os.environ['PATH']}"})
    assert back.returncode == 7, back.stdout + back.stderr
    assert "rollback of generation 1 failed: ldconfig -X -r" in back.stderr
    assert "every recorded path is back to its before-state; the step after it failed" in back.stderr
    assert Journal(seed_root).generations()[0].status == "rolling_back"  # the next run finishes it
    assert cli("rollback", "--root", seed_root).returncode == 0


def test_an_external_command_failing_during_apply_is_the_apply_paths_code(seed_root, cli, tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "ldconfig").write_text("#!/bin/sh\nexit 1\n")
    (fake / "ldconfig").chmod(0o755)
    applied = cli("apply", "--root", seed_root, "--no-verify", env={"PATH": f"{fake}:{os.environ['PATH']}"})
    assert applied.returncode == 5, applied.stderr  # ApplyFailed: undone; not 1 ("a bug")
    assert "apply failed and was undone: ldconfig" in applied.stderr


def test_special_files_are_never_journaled_or_claimed_restored(seed_root):
    os.mkfifo(os.path.join(seed_root, "etc/vgpu-fifo"))
    prof = load(seed_root).model_copy(update={"files": [ManagedFile(path="/etc/vgpu-fifo", state="absent")]})
    plan = core.make_plan(prof, seed_root, force=True)
    assert any("/etc/vgpu-fifo: is a FIFO, socket or device node" in c for c in plan.conflicts)
    assert stat.S_ISFIFO(os.lstat(os.path.join(seed_root, "etc/vgpu-fifo")).st_mode)


def test_rollback_says_a_hard_link_is_not_restored(seed_root, tmp_path, cli):
    preload = os.path.join(seed_root, "etc/ld.so.preload")
    other = tmp_path / "other-name"
    os.link(preload, other)
    planned = cli("plan", "--root", seed_root)
    assert "/etc/ld.so.preload has 2 hard links: apply writes a new file" in planned.stdout
    assert cli("apply", "--root", seed_root, "--no-verify").returncode == 0
    entry = next(e for e in Journal(seed_root).generations()[0].entries if e.path == "/etc/ld.so.preload")
    assert entry.links == 2
    back = cli("rollback", "--root", seed_root)
    assert back.returncode == 0
    assert ("/etc/ld.so.preload: content, mode and owner restored as a new file; it was one of 2 hard links "
            "before the apply, and that link is not restored") in back.stdout
    assert open(preload, "rb").read() == other.read_bytes()  # same content, two files now
    assert os.stat(preload).st_nlink == 1


def test_a_manifest_that_could_not_be_read_back_is_refused_before_the_first_change(seed_root, snapshot):
    before = snapshot(seed_root, exclude=())
    journal = Journal(seed_root)
    with pytest.raises(InvalidInput, match="refusing to record an unusable manifest .*must not end in '/'"):
        journal.begin("t", ["/opt/vgpu/lib/libcuda.so.1/"], [], {})
    assert journal.scan() == ([], [])
    after = {k: v for k, v in snapshot(seed_root, exclude=()).items() if not k.startswith("var")}
    assert after == {k: v for k, v in before.items() if not k.startswith("var")}


def test_a_damaged_newer_generation_never_blocks_rolling_back_an_intact_older_one(seed_root, cli):
    assert cli("apply", "--root", seed_root, "--no-verify").returncode == 0
    assert cli("apply", "--root", seed_root, "--no-verify", "--profile", "h100-vgpu-preload").returncode == 0
    manifest = os.path.join(seed_root, "var/lib/vgpu-fix/generations/0002/manifest.json")
    with open(manifest, "a") as fh:
        fh.write(" ")
    history = json.loads(cli("history", "--root", seed_root, "--json").stdout)
    assert [(r["generation"], r["status"]) for r in history["generations"]] == [(1, "applied"), (2, "damaged")]
    plan = cli("plan", "--root", seed_root)
    assert "warning: generation 2 is damaged and cannot be used" in plan.stdout
    back = cli("rollback", "--root", seed_root, "--force")
    assert back.returncode == 0, back.stderr
    assert "skipped: generation 2 is damaged and cannot be used: " in back.stdout
    assert "rolled back to before generation 1" in back.stdout
    with pytest.raises(InvalidInput, match="journal generation 2 was modified"):  # never used itself
        applier.rollback(seed_root, to=2)


def test_a_damaged_generation_tells_one_story_in_history_show_and_rollback(seed_root, cli):
    """history lists it as damaged; `history show`, `rollback --dry-run` and `rollback` say the same
    sentence instead of "no generation 1" or "no applied generation"."""
    assert cli("apply", "--root", seed_root, "--no-verify").returncode == 0
    with open(os.path.join(seed_root, "var/lib/vgpu-fix/generations/0001/manifest.json"), "a") as fh:
        fh.write(" ")
    story = "generation 1 is damaged and cannot be used: "
    listed = json.loads(cli("history", "--root", seed_root, "--json").stdout)["generations"]
    assert [(r["generation"], r["status"]) for r in listed] == [(1, "damaged")]
    for args in (["history", "show", "1"], ["rollback", "--dry-run"], ["rollback"], ["rollback", "--to", "1"]):
        said = cli(*args, "--root", seed_root)
        assert said.returncode == 3, (args, said.stdout, said.stderr)
        assert f"error: {story}" in said.stderr and "was modified" in said.stderr, (args, said.stderr)
        assert "no applied generation" not in said.stderr and "no generation 1" not in said.stderr
