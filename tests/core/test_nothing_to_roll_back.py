"""A rollback that finds nothing to undo is a success that changes nothing (exit 0, one clear line),
in the CLI and the Ansible module alike (tests/ansible/test_module.py); a generation that does not
exist stays invalid input (exit 3)."""

from __future__ import annotations

import json

import pytest

NEVER = "nothing to roll back: vgpu-fix has not changed this root"
NONE_APPLIED = "nothing to roll back: no applied generation"
TO_1_DONE = "nothing to roll back: generation 1 and every later one are already rolled back"


@pytest.mark.parametrize("applies, rollbacks, args, msg", [
    (0, 0, (), NEVER),
    (0, 0, ("--to", "1"), NEVER),
    (1, 1, (), NONE_APPLIED),
    (1, 1, ("--to", "1"), TO_1_DONE),
    (1, 1, ("--dry-run",), NONE_APPLIED),
], ids=["never-applied", "never-applied-to", "second-rollback", "second-rollback-to", "dry-run"])
def test_nothing_to_roll_back_is_success(cli, seed_root, snapshot, applies, rollbacks, args, msg):
    for _ in range(applies):
        assert cli("apply", "--root", seed_root, "--no-verify").returncode == 0
    for _ in range(rollbacks):
        assert cli("rollback", "--root", seed_root).returncode == 0
    before = snapshot(seed_root, exclude=())
    text = cli("rollback", "--root", seed_root, *args)
    assert (text.returncode, text.stdout.strip(), text.stderr) == (0, msg, "")
    doc = json.loads(cli("rollback", "--root", seed_root, *args, "--json").stdout)
    assert (doc["changed"], doc["failed"], doc["msg"], doc["restored"]) == (False, False, msg, [])
    assert snapshot(seed_root, exclude=()) == before


def test_rollback_to_a_generation_that_does_not_exist_is_invalid_input(cli, seed_root):
    assert cli("apply", "--root", seed_root, "--no-verify").returncode == 0
    result = cli("rollback", "--root", seed_root, "--to", "7")
    assert result.returncode == 3 and "generation 7 does not exist" in result.stderr
