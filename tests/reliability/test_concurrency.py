"""Concurrency: one run changes a root at a time; the others are refused quickly with the holder
named (exit 8) or wait (--lock-timeout) and then find the host converged; a lock left by a killed
run is taken over safely."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import threading
import time

import pytest

from fixer.apply.journal import Journal
from tests.reliability.harness import (
    APPLY,
    REPO,
    copy_root,
    generation_statuses,
    run_subprocess,
    seed,
    temp_files,
    tree,
)

RUNS = 10
GATE_RUN = os.path.join(os.path.dirname(__file__), "gate_run.py")


def simultaneous(root: str, tmp, extra: tuple[str, ...] = (), runs: int = RUNS) -> list[dict]:
    """Start `runs` real `vgpu-fix apply` processes, release them at one instant, collect results."""
    gate = str(tmp / "gate")
    procs = []
    for i in range(runs):
        ready = str(tmp / f"ready{i}")
        cmd = [sys.executable, GATE_RUN, ready, gate, "apply", "--root", root, *APPLY, "--json", *extra]
        procs.append((ready, subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                              text=True, env={**os.environ, "NO_COLOR": "1", "PYTHONPATH": REPO})))
    deadline = time.monotonic() + 60
    while not all(os.path.exists(r) for r, _ in procs):
        assert time.monotonic() < deadline, "runs did not start"
        assert all(p.poll() is None for _, p in procs), [p.communicate() for _, p in procs if p.poll() is not None]
        time.sleep(0.01)
    released = time.monotonic()
    open(gate, "w").close()
    results = []
    for _, proc in procs:
        out, err = proc.communicate(timeout=120)
        results.append({"pid": proc.pid, "rc": proc.returncode, "doc": json.loads(out) if out.strip() else None,
                        "stderr": err, "seconds": time.monotonic() - released})
    return results


@pytest.fixture
def reference(tmp_path):
    """The seed host, and the tree a single uncontended apply leaves."""
    root = seed(str(tmp_path / "seed"))
    applied = copy_root(root, str(tmp_path / "ref"))
    assert run_subprocess("apply", "--root", applied, *APPLY).returncode == 0
    return root, tree(applied)


def assert_consistent(root: str, applied_tree: dict) -> None:
    assert tree(root) == applied_tree
    assert generation_statuses(root) == ["applied"]
    assert [line["event"] for line in Journal(root).audit_lines()] == ["apply"]
    assert temp_files(root) == []
    assert run_subprocess("plan", "--root", root).returncode == 0  # converged


def test_ten_simultaneous_applies_one_changes_the_host_the_others_are_refused_naming_it(reference, tmp_path):
    root, applied = reference
    results = simultaneous(root, tmp_path)
    winners = [r for r in results if r["rc"] == 0 and r["doc"]["changed"]]
    assert len(winners) == 1, results
    refused = [r for r in results if r["rc"] == 8]
    late = [r for r in results if r["rc"] == 0 and not r["doc"]["changed"]]  # came after the winner finished
    assert len(refused) + len(late) == RUNS - 1, results
    assert refused, "no run met the held lock"
    # The holder named is a run that really held the lock then: the winner, or (when the refused run
    # came after the winner finished) a late run that took the lock to find the host converged.
    holders = {winners[0]["pid"]} | {r["pid"] for r in late}
    for run in refused:
        assert run["doc"]["holder"]["pid"] in holders, run["doc"]["msg"]
        assert f"pid {run['doc']['holder']['pid']}" in run["doc"]["msg"], run["doc"]["msg"]
        assert run["seconds"] < 10
    assert_consistent(root, applied)


def test_ten_simultaneous_applies_with_lock_timeout_wait_and_find_the_host_converged(reference, tmp_path):
    root, applied = reference
    results = simultaneous(root, tmp_path, ("--lock-timeout", "60"))
    assert sorted(r["rc"] for r in results) == [0] * RUNS, results
    assert sum(r["doc"]["changed"] for r in results) == 1
    for run in results:
        if not run["doc"]["changed"]:
            assert run["doc"]["msg"] == "no changes: host already converged"
    assert_consistent(root, applied)


def test_a_lock_left_by_a_killed_run_is_detected_and_taken_over(reference):
    root, applied = reference
    killed = run_subprocess("apply", "--root", root, *APPLY, env={"VGPU_FIX_CRASH_AT": "apply:change#3"})
    assert killed.returncode == -9
    record = json.loads(open(Journal(root).lock_path).read())
    assert record["pid"] > 0  # the dead holder's record stays behind
    again = run_subprocess("apply", "--root", root, *APPLY)
    assert again.returncode == 0, again.output
    assert f"took over a stale lock left by pid {record['pid']}" in again.output
    assert "recovered interrupted generation 1" in again.output
    assert tree(root) == applied
    assert generation_statuses(root) == ["recovered", "applied"]
    assert temp_files(root) == []


def test_a_recycled_pid_in_the_lock_record_counts_as_stale(reference):
    root, _ = reference
    Journal(root).ensure()
    with open(Journal(root).lock_path, "w") as fh:  # our own live pid, but another start time
        json.dump({"pid": os.getpid(), "started": "2000-01-01T00:00:00+0000", "ticks": 1}, fh)
    result = run_subprocess("apply", "--root", root, *APPLY)
    assert result.returncode == 0, result.output
    assert f"took over a stale lock left by pid {os.getpid()}" in result.output


def test_a_held_lock_refuses_at_once_and_a_lock_timeout_waits_for_its_release(reference):
    root, applied = reference
    Journal(root).ensure()
    fd = os.open(Journal(root).lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, json.dumps({"pid": os.getpid(), "started": "now"}).encode())
    try:
        start = time.monotonic()
        refused = run_subprocess("apply", "--root", root, *APPLY)
        assert refused.returncode == 8
        assert f"another vgpu-fix run holds the lock: pid {os.getpid()}, started now" in refused.stderr
        assert tree(root) != applied and generation_statuses(root) == []
        timer = threading.Timer(1.0, lambda: (os.ftruncate(fd, 0), fcntl.flock(fd, fcntl.LOCK_UN)))
        timer.start()
        waited = run_subprocess("apply", "--root", root, *APPLY, "--lock-timeout", "30")
        timer.join()
        assert waited.returncode == 0, waited.output
        assert time.monotonic() - start < 30
    finally:
        os.close(fd)
    assert_consistent(root, applied)
