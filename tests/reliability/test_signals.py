"""SIGINT and SIGTERM during apply and rollback (a real subprocess, signalled while paused at a named
step): the step in flight finishes, the run undoes or stops cleanly, says what it did, exits 128+N,
and no generation stays open. And a plan during a running apply names the lock holder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from fixer.demo import snapshot_tree
from tests.reliability.harness import REPO, generation_statuses

pytestmark = pytest.mark.slow


def _start(tmp_path, *args: str, pause_at: str) -> tuple[subprocess.Popen, str]:
    marker = str(tmp_path / "paused")
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": REPO, "VGPU_FIX_PAUSE_AT": pause_at,
           "VGPU_FIX_PAUSE_FILE": marker, "VGPU_FIX_PAUSE_SECONDS": "3"}
    proc = subprocess.Popen([sys.executable, "-m", "fixer", *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not os.path.exists(marker):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run never reached the pause"
        time.sleep(0.02)
    return proc, marker


def _apply(root: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fixer", "apply", "--root", root, "--no-verify", *extra],
                          capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": REPO})


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_apply_undoes_it_and_says_so(seed_root, tmp_path, signum, code):
    before = snapshot_tree(seed_root)
    proc, _ = _start(tmp_path, "apply", "--root", seed_root, "--no-verify", pause_at="apply:changed#2")
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, out + err
    name = signal.Signals(signum).name
    assert f"interrupted by {name}: generation 1 was undone" in err, err
    assert "Traceback" not in out + err
    assert snapshot_tree(seed_root) == before
    assert generation_statuses(seed_root) == ["interrupted"]  # closed, never left pending
    assert _apply(seed_root).returncode == 0  # nothing to recover, nothing wedged


def test_a_signal_during_apply_speaks_json_under_json(seed_root, tmp_path):
    proc, _ = _start(tmp_path, "apply", "--root", seed_root, "--no-verify", "--json", pause_at="apply:change#1")
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    doc = json.loads(out)
    assert proc.returncode == 130 and doc["failed"] is True and doc["exit_code"] == 130
    assert doc["generation"] == 1 and "interrupted by SIGINT" in doc["msg"]


def test_a_signal_during_rollback_finishes_the_generation_in_flight(seed_root, tmp_path):
    assert _apply(seed_root).returncode == 0
    before = snapshot_tree(seed_root)
    assert _apply(seed_root, "--profile", "h100-vgpu-preload").returncode == 0
    proc, _ = _start(tmp_path, "rollback", "--root", seed_root, "--to", "1", pause_at="restore:entry-done#1")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, out + err
    assert "interrupted by SIGTERM: rolled back 1 generation(s); generation(s) 1 are still applied; " \
           "run `vgpu-fix rollback` to continue" in err
    assert generation_statuses(seed_root) == ["applied", "rolled_back"]
    assert snapshot_tree(seed_root) == before  # generation 2 was restored whole


def test_plan_during_a_running_apply_names_the_lock_holder(seed_root, tmp_path):
    proc, _ = _start(tmp_path, "apply", "--root", seed_root, "--no-verify", pause_at="apply:changed#1")
    try:
        plan = subprocess.run([sys.executable, "-m", "fixer", "plan", "--root", seed_root], capture_output=True,
                              text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": REPO})
    finally:
        out, err = proc.communicate(timeout=60)
    assert plan.returncode == 8, plan.stdout + plan.stderr
    assert f"another vgpu-fix run holds the lock: pid {proc.pid}" in plan.stderr
    assert "was interrupted" not in plan.stdout + plan.stderr
    assert proc.returncode == 0, out + err
