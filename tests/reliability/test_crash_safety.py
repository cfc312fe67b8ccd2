"""Crash safety: `apply` and `rollback` are SIGKILLed at every crash point they reach; afterwards
`plan` reports the interruption, and both `rollback` and a recovering `apply` (followed by a
rollback) give back the exact before-state: tree, modes, owners, link targets, the drop-in,
ld.so.conf and ld.so.preload bytes, no temp file, no open generation, the audit log intact."""

from __future__ import annotations

import pytest

from tests.reliability.harness import run_matrix

pytestmark = pytest.mark.slow

# Every kind of step the journal and the writers expose; a step kind that disappears from the
# list (a refactor that drops a crash point) fails the coverage test below.
APPLY_STEP_KINDS = {"mkdir:done", "journal:blob", "journal:before-manifest", "journal:save-between-renames",
                    "journal:written", "apply:change", "write:tempfile", "write:renamed", "apply:changed",
                    "remove:done", "post:ldconfig", "post:udev-reload", "post:daemon-reload", "post:restart",
                    "apply:done"}
ROLLBACK_STEP_KINDS = {"journal:save-between-renames", "rollback:marked", "restore:entry", "remove:done",
                       "restore:entry-done", "write:tempfile", "write:renamed", "rollback:restored",
                       "post:udev-reload", "post:daemon-reload", "post:restart", "rollback:done"}


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    return run_matrix(str(tmp_path_factory.mktemp("crash")), runner="fork", processes=2)


def _failures(cases) -> list[str]:
    return [f"{c.command} killed at {c.step}: {problem}" for c in cases for problem in c.problems()]


def test_every_crash_point_of_apply_is_recoverable(matrix):
    assert _failures(matrix["apply"]) == []


def test_every_crash_point_of_rollback_is_recoverable(matrix):
    assert _failures(matrix["rollback"]) == []


def test_the_matrix_covers_every_journal_and_write_step(matrix):
    apply_kinds = {c.step.split("#")[0] for c in matrix["apply"]}
    rollback_kinds = {c.step.split("#")[0] for c in matrix["rollback"]}
    assert APPLY_STEP_KINDS <= apply_kinds
    assert ROLLBACK_STEP_KINDS <= rollback_kinds
    # One kill per change and per restored entry at least: the seed host needs 9 changes, 17 entries.
    assert sum(c.step.startswith("apply:change#") for c in matrix["apply"]) == 9
    assert sum(c.step.startswith("restore:entry#") for c in matrix["rollback"]) >= 15


def test_crashes_before_the_manifest_leave_nothing_to_undo_and_later_ones_an_open_generation(matrix):
    steps = [c.step for c in matrix["apply"]]
    manifest, committed = steps.index("journal:save-between-renames#1"), steps.index("journal:save-between-renames#2")
    for index, case in enumerate(matrix["apply"]):
        # Before the checksum of the first manifest lands nothing was changed and no generation
        # exists; from then on the generation is open until the final save commits it.
        expected = [] if index < manifest else ["pending"] if index < committed else ["applied"]
        assert case.status_after_crash == expected, case.step
    steps = [c.step for c in matrix["rollback"]]
    marked, committed = steps.index("journal:save-between-renames#1"), steps.index("journal:save-between-renames#2")
    for index, case in enumerate(matrix["rollback"]):
        expected = ["applied"] if index < marked else ["rolling_back"] if index < committed else ["rolled_back"]
        assert case.status_after_crash == expected, case.step


def test_a_fresh_interpreter_behaves_like_the_forked_runner(tmp_path):
    """`python -m fixer` killed at one step of each kind: same outcome as the forked runs."""
    sample = run_matrix(str(tmp_path), runner="subprocess", processes=2, sample=True)
    assert len(sample["apply"]) == len(APPLY_STEP_KINDS) and len(sample["rollback"]) == len(ROLLBACK_STEP_KINDS)
    assert _failures(sample["apply"] + sample["rollback"]) == []
