"""vgpu-fix on a live root, as an operator drives it: in a private mount+pid namespace whose / carries
the seed's broken host (overlays over /etc, /usr/local, /opt, /var), with journald and a real
`systemd --user` running a stand-in ollama.service. Through a real pseudo-terminal `apply` shows the
plan and asks; without a terminal it refuses unless --yes; `rollback` previews and asks likewise;
`doctor` reads the journal by default; the upgrade watch's .path unit starts its check when the Ollama
binary is touched, the check's failure lands in the journal and in `systemctl --failed`; the textfile
timer writes the node-exporter textfile at once, the check writes it again, `watch disable` stops the timer."""

from __future__ import annotations

import json
import sys

import pytest

from tests.reliability import namespace
from tests.reliability.harness import REPO

pytestmark = [pytest.mark.root, pytest.mark.slow]
PROFILE = """name: operator
extends: h100-vgpu
service:
  scope: user
watch:
  settle: 1
  textfile: /var/lib/node-exporter/vgpu_fix.prom
"""
DROPIN = "/etc/systemd/user/ollama.service.d/zz-vgpu-fix.conf"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    why = namespace.usable()
    if why:
        pytest.skip(why)
    tmp = tmp_path_factory.mktemp("operator")
    out, work = tmp / "out", tmp / "ns"
    out.mkdir()
    work.mkdir()
    # The checkout's tool is not on systemd's search path: name its interpreter, as a virtualenv install would.
    (tmp / "operator.yaml").write_text(PROFILE + f"  command: [{sys.executable}, -m, fixer]\n")
    proc, _ = namespace.run("ns_operator.sh", REPO, str(tmp / "operator.yaml"), str(out), str(work), timeout=400)
    if proc.returncode != 0 and not (out / "driver.rc").exists():
        pytest.skip(f"systemd --user cannot run here: {proc.stderr[-800:]}")
    assert (out / "finished").exists() and (out / "driver.rc").read_text().strip() == "0", \
        (out / "driver.log").read_text()[-3000:]
    return json.loads((out / "results.json").read_text())


def test_without_a_terminal_apply_refuses_in_one_line_and_changes_nothing(live):
    step = live["no_terminal"]
    assert step["rc"] == 11 and not step["dropin"]
    assert step["piped"].strip() == ("vgpu-fix apply: error: refusing to apply to the live root / without "
                                     "confirmation: stdin is not a terminal; pass --yes (-y) to apply to non-interactively")


def test_at_a_terminal_apply_shows_the_plan_and_a_no_changes_nothing(live):
    step = live["declined"]
    assert step["rc"] == 11 and not step["dropin"]
    shown = step["terminal"]
    assert f"+ dropin        {DROPIN}" in shown and "Apply " in shown and "change(s) to the live host? [y/N]:" in shown
    assert "not confirmed; nothing was changed" in shown
    assert step["ollama_pid"] == live["start_pid"]  # not restarted


def test_at_a_terminal_a_yes_applies_what_was_shown(live):
    step = live["confirmed"]
    assert step["rc"] == 0 and step["dropin"], step["terminal"]
    assert "applied generation 1" in step["terminal"] and "restart: ollama.service restarted" in step["terminal"]
    assert step["terminal"].count(f"+ dropin        {DROPIN}") == 1  # the plan once, not again after the question
    assert step["ollama_pid"] != live["start_pid"]


def test_a_converged_live_root_needs_no_confirmation(live):
    assert live["converged"]["rc"] == 0 and "host already converged" in live["converged"]["piped"]


def test_rollback_on_the_live_root_previews_asks_and_names_what_it_removes(live):
    assert live["rollback_no_terminal"]["rc"] == 11 and live["rollback_no_terminal"]["dropin"]
    step = live["rollback_confirmed"]
    assert step["rc"] == 0 and not step["dropin"]
    shown = step["terminal"]
    assert "Rollback of profile operator on root /" in shown
    assert f"- rollback      {DROPIN}  (created by generation 1: rollback removes it)" in shown
    assert "path(s) on the live host? [y/N]:" in shown and f"removed {DROPIN}" in shown


def test_yes_applies_without_a_terminal(live):
    assert live["yes"]["rc"] == 0 and live["yes"]["dropin"] and "applied generation 2" in live["yes"]["piped"]


def test_doctor_reads_the_journal_on_the_live_root_by_default(live):
    doc = json.loads(live["doctor"]["piped"])
    assert doc["events"] is not None and doc["events"]["cpu_fallback"] is True


def test_the_watch_path_unit_runs_the_check_when_the_ollama_binary_is_touched(live):
    assert live["watch_enable"]["rc"] == 0, live["watch_enable"]["piped"]
    assert "start-watch: vgpu-fix-watch.path started" in live["watch_enable"]["piped"]
    assert "restart: " not in live["watch_enable"]["piped"]  # the watch alone does not restart Ollama
    assert live["watch_path_active"] == "active"
    assert "ExecMainStatus=0" in live["watch_before_touch"] and "Result=success" in live["watch_before_touch"]
    after = dict(line.split("=", 1) for line in live["watch_after_touch"].splitlines())
    assert after["ActiveState"] == "failed" and after["ExecMainStatus"] == "9"  # the placeholders do not load
    assert live["watch_is_failed"] == "failed" and "vgpu-fix-watch.service" in live["failed_units"]
    line = next(line for line in live["watch_journal"].splitlines() if line.startswith("vgpu-fix watch: "))
    assert line.startswith("vgpu-fix watch: FAILED: cuda_v12/libggml-cuda.so does not load: ")


def test_status_sees_the_watch_and_the_check_it_ran(live):
    doc = json.loads(live["status"]["piped"])
    assert doc["watch"]["installed"] and doc["watch"]["enabled"] and doc["watch"]["active"] == "active"
    assert doc["last_verify"]["source"] == "verify" and doc["last_verify"]["ok"] is False
    assert doc["applied"]["generation"] == 3
    assert json.loads(live["watch_status"]["piped"])["last_verify"] == doc["last_verify"]


def test_watch_disable_stops_the_unit_and_removes_the_files(live):
    assert live["watch_disable"]["rc"] == 0
    assert "stop-watch: vgpu-fix-watch.path stopped" in live["watch_disable"]["piped"]
    assert live["watch_path_after_disable"] != "active" and live["watch_files_after_disable"] == []


def test_the_textfile_timer_and_the_check_write_the_node_exporter_textfile(live):
    assert live["textfile_timer_active"] == "active", live["watch_enable"]["piped"]
    assert "start-watch: vgpu-fix-watch-textfile.timer started" in live["watch_enable"]["piped"]
    by_timer = live["textfile_by_timer"]
    assert by_timer is not None, live["textfile_journal"]
    assert 'vgpu_fix_watch_enabled{profile="operator",root="/"} 1' in by_timer.splitlines()
    assert 'vgpu_fix_drift{profile="operator",root="/"} 0' in by_timer.splitlines()
    assert live["textfile_by_check"] is not None and "vgpu_fix_verify_ok{" in live["textfile_by_check"]
    assert live["textfile_timer_after_disable"] == "inactive", live["watch_disable"]["piped"][-1500:]
