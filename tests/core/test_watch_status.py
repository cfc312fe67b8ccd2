"""Upgrade survival and the fleet view, off the live root: the `watch` section's units are planned,
journaled and rolled back like every managed path and pass systemd-analyze; `watch check` settles,
verifies and reports drift; `status` summarises a host (JSON, text, Prometheus textfile)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time

import pytest

from fixer import profiles, watch, watch_check
from tests.conftest import have
from tests.core.test_apply_rollback import SYSTEMD_STUBS

UNIT_DIR = "etc/systemd/system"
WATCH = """name: watched
extends: h100-vgpu
watch:
  enabled: true
  settle: 0.2
  command: [/usr/local/bin/vgpu-fix]
  textfile: /var/lib/node-exporter/vgpu_fix.prom
"""
TEXTFILE = "/var/lib/node-exporter/vgpu_fix.prom"
TIMER = f"/{UNIT_DIR}/vgpu-fix-watch-textfile.timer"


@pytest.fixture
def profile_file(tmp_path):
    path = tmp_path / "watched.yaml"
    path.write_text(WATCH)
    return str(path)


def _exists(root: str, path: str) -> bool:
    return os.path.lexists(os.path.join(root, path.lstrip("/")))


def test_the_watch_section_plans_two_units_their_enablement_and_the_profile_copy(seed_root, profile_file):
    from fixer import core

    plan = core.make_plan(profiles.load(profile_file, seed_root), seed_root)
    planned = {c.path: c for c in plan.pending}
    path_unit = planned[f"/{UNIT_DIR}/vgpu-fix-watch.path"].after.text()
    assert [line for line in path_unit.splitlines() if line.startswith("PathChanged=")] == [
        "PathChanged=/usr/local/bin/ollama", "PathChanged=/usr/local/lib/ollama",
        "PathChanged=/usr/local/lib/ollama/cuda_v12", "PathChanged=/opt/vgpu/lib",
        "PathChanged=/usr/local/lib/vgpu-fix"]  # the dirs the profile links shims into
    service = planned[f"/{UNIT_DIR}/vgpu-fix-watch.service"].after.text()
    assert ('ExecStart="/usr/local/bin/vgpu-fix" "watch" "check" "--root" "/" "--profile" '
            '"/etc/vgpu-fix/vgpu-fix-watch.profile.json"') in service and "Type=oneshot" in service
    assert planned[f"/{UNIT_DIR}/paths.target.wants/vgpu-fix-watch.path"].after.target == f"/{UNIT_DIR}/vgpu-fix-watch.path"
    assert "/etc/vgpu-fix/vgpu-fix-watch.profile.json" in planned
    assert plan.post_actions == ["ldconfig", "udev-reload", "daemon-reload", "start-watch", "restart"]


def test_the_profile_copy_loads_back_to_the_same_profile(seed_root, profile_file, tmp_path):
    profile = profiles.load(profile_file, seed_root)
    copy = tmp_path / "copy.json"
    copy.write_text(watch.render_profile(profile))
    again = profiles.load(str(copy), seed_root)
    assert watch.render_profile(again) == copy.read_text()
    assert again.model_dump(exclude={"vars"}) == profile.model_copy(
        update={"watch": profile.watch.model_copy(update={"command": watch.command(profile)})}).model_dump(exclude={"vars"})


def test_the_watch_files_do_not_depend_on_the_interpreter_that_plans_them(seed_root, tmp_path, monkeypatch):
    """The CLI and the Ansible module run under different Pythons: without `watch.command` both must want
    the same unit and profile copy (the console script by name), or each sees drift after the other."""
    path = tmp_path / "p.yaml"
    path.write_text(WATCH.replace("  command: [/usr/local/bin/vgpu-fix]\n", ""))
    profile = profiles.load(str(path), seed_root)
    seen = []
    for interpreter in ("/usr/bin/python3", "/opt/ansible/venv/bin/python"):
        monkeypatch.setattr("sys.executable", interpreter)
        seen.append(watch.planned(profile))
    assert seen[0] == seen[1]
    assert 'ExecStart="vgpu-fix" "watch" "check"' in watch.render_service_unit(profile)
    assert json.loads(watch.render_profile(profile))["watch"]["command"] == ["vgpu-fix"]


def test_a_dollar_brace_value_survives_the_profile_copy(seed_root, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(WATCH + "service:\n  environment:\n    LITERAL: 'costs $${PRICE}'\n")
    profile = profiles.load(str(path), seed_root)
    assert profile.service.environment["LITERAL"] == "costs ${PRICE}"
    copy = tmp_path / "copy.json"
    copy.write_text(watch.render_profile(profile))
    assert profiles.load(str(copy), seed_root).service.environment["LITERAL"] == "costs ${PRICE}"


@pytest.mark.skipif(not have("systemd-analyze"), reason="needs systemd-analyze")
def test_the_watch_units_pass_systemd_analyze(cli, seed_root, profile_file):
    assert cli("watch", "enable", "--root", seed_root, "-p", profile_file, "--no-verify").returncode == 0
    binary = os.path.join(seed_root, "usr/local/bin/vgpu-fix")
    with open(binary, "w") as fh:
        fh.write("#!/bin/sh\n")
    os.chmod(binary, 0o755)
    stubs = os.path.join(seed_root, "usr/lib/systemd/system")
    os.makedirs(stubs, exist_ok=True)
    for target in SYSTEMD_STUBS:
        with open(os.path.join(stubs, target), "w") as fh:
            fh.write(f"[Unit]\nDescription={target}\n")
    result = subprocess.run(["systemd-analyze", "verify", f"--root={seed_root}", "vgpu-fix-watch.path",
                             "vgpu-fix-watch.service", "vgpu-fix-watch-textfile.timer",
                             "vgpu-fix-watch-textfile.service"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


def test_enable_then_disable_then_rollback_is_journaled_like_every_change(cli, seed_root, profile_file):
    files = profiles.load(profile_file, seed_root).watch_files
    enabled = json.loads(cli("watch", "enable", "--root", seed_root, "-p", profile_file, "--no-verify",
                             "--json").stdout)
    assert enabled["command"] == "watch enable" and enabled["generation"] == 1
    assert all(_exists(seed_root, p) for p in files.values())
    disabled = json.loads(cli("watch", "disable", "--root", seed_root, "-p", profile_file, "--no-verify",
                              "--json").stdout)
    assert disabled["generation"] == 2 and not any(_exists(seed_root, p) for p in files.values())
    assert disabled["post_actions"] == ["daemon-reload", "stop-watch"]  # Ollama is not restarted for the watch
    assert cli("rollback", "--root", seed_root, "--json").returncode == 0  # undo the disable
    assert all(_exists(seed_root, p) for p in files.values())
    assert cli("rollback", "--root", seed_root, "--to", "1").returncode == 0
    assert not any(_exists(seed_root, p) for p in files.values())


def test_the_textfile_timer_runs_status_into_the_textfile_every_period(seed_root, profile_file):
    from fixer import core

    plan = core.make_plan(profiles.load(profile_file, seed_root), seed_root)
    planned = {c.path: c for c in plan.pending}
    timer = planned[TIMER].after.text()
    assert "OnUnitActiveSec=5min" in timer and "Unit=vgpu-fix-watch-textfile.service" in timer
    service = planned[f"/{UNIT_DIR}/vgpu-fix-watch-textfile.service"].after.text()
    assert ('ExecStart="/usr/local/bin/vgpu-fix" "status" "--root" "/" "--profile" '
            f'"/etc/vgpu-fix/vgpu-fix-watch.profile.json" "--prometheus" "{TEXTFILE}"') in service
    assert planned[f"/{UNIT_DIR}/timers.target.wants/vgpu-fix-watch-textfile.timer"].after.target == TIMER


def test_without_textfile_the_timer_is_removed_journaled(cli, seed_root, profile_file, tmp_path):
    assert cli("watch", "enable", "--root", seed_root, "-p", profile_file, "--no-verify").returncode == 0
    assert _exists(seed_root, TIMER)
    plain = tmp_path / "plain.yaml"
    plain.write_text(WATCH.replace(f"  textfile: {TEXTFILE}\n", ""))
    doc = json.loads(cli("watch", "enable", "--root", seed_root, "-p", str(plain), "--no-verify", "--json").stdout)
    assert {c["path"] for c in doc["changes"] if c["action"] == "delete"} == {
        TIMER, f"/{UNIT_DIR}/vgpu-fix-watch-textfile.service", f"/{UNIT_DIR}/timers.target.wants/vgpu-fix-watch-textfile.timer"}
    assert not _exists(seed_root, TIMER) and _exists(seed_root, f"/{UNIT_DIR}/vgpu-fix-watch.path")
    assert cli("rollback", "--root", seed_root).returncode == 0 and _exists(seed_root, TIMER)


def test_watch_check_refreshes_the_textfile(cli, seed_root, profile_file):
    os.makedirs(os.path.join(seed_root, os.path.dirname(TEXTFILE).lstrip("/")))
    cli("watch", "enable", "--root", seed_root, "-p", profile_file, "--no-verify")
    result = cli("watch", "check", "--root", seed_root, "-p", profile_file)
    assert f"vgpu-fix watch: textfile {TEXTFILE}: refreshed" in result.stdout.splitlines()
    text = open(os.path.join(seed_root, TEXTFILE.lstrip("/"))).read()
    labels = f'profile="watched",root="{seed_root}"'
    assert f"vgpu_fix_drift{{{labels}}} 0" in text and f"vgpu_fix_watch_enabled{{{labels}}} 1" in text
    [verify_ok] = [line for line in text.splitlines() if line.startswith("vgpu_fix_verify_ok{")]
    assert verify_ok.startswith(f'vgpu_fix_verify_ok{{{labels},backend="cuda_v12/libggml-cuda.so",')
    assert verify_ok.endswith("} 0")  # this check's verdict: the placeholders do not load


def test_watch_check_says_when_the_textfile_cannot_be_written(cli, seed_root, profile_file):
    cli("watch", "enable", "--root", seed_root, "-p", profile_file, "--no-verify")
    result = cli("watch", "check", "--root", seed_root, "-p", profile_file)
    assert f"vgpu-fix watch: textfile {TEXTFILE}: cannot write: No such file or directory" in result.stdout


def test_watch_check_never_writes_the_textfile_through_a_symlink_out_of_the_root(cli, seed_root, profile_file,
                                                                                  tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    os.makedirs(os.path.join(seed_root, "var/lib"), exist_ok=True)
    os.symlink(str(outside), os.path.join(seed_root, os.path.dirname(TEXTFILE).lstrip("/")))
    cli("watch", "enable", "--root", seed_root, "-p", profile_file, "--no-verify")
    result = cli("watch", "check", "--root", seed_root, "-p", profile_file)
    assert f"vgpu-fix watch: textfile {TEXTFILE}: cannot write: " in result.stdout
    assert list(outside.iterdir()) == []


def test_a_profile_without_watch_leaves_watch_units_alone(cli, seed_root, profile_file):
    cli("watch", "enable", "--root", seed_root, "-p", profile_file, "--no-verify")
    doc = json.loads(cli("plan", "--root", seed_root, "-p", "h100-vgpu", "--json").stdout)  # watch.enabled is null
    assert not [c for c in doc["changes"] if "watch" in c["path"]]


def test_watch_status_reports_units_and_what_they_watch(cli, seed_root, profile_file):
    before = json.loads(cli("watch", "status", "--root", seed_root, "-p", profile_file, "--json").stdout)
    assert before["installed"] is False and before["enabled"] is False and before["active"] is None
    cli("watch", "enable", "--root", seed_root, "-p", profile_file, "--no-verify")
    after = json.loads(cli("watch", "status", "--root", seed_root, "-p", profile_file, "--json").stdout)
    assert after["installed"] and after["enabled"] and after["watched"][0] == "/usr/local/bin/ollama"


def test_watch_check_verifies_records_and_reports_drift_in_one_line(cli, seed_root, profile_file):
    cli("watch", "enable", "--root", seed_root, "-p", profile_file, "--no-verify")
    result = cli("watch", "check", "--root", seed_root, "-p", profile_file)
    assert result.returncode == 9  # the placeholders do not load
    first = result.stdout.splitlines()[0]
    assert first.startswith("vgpu-fix watch: FAILED: cuda_v12/libggml-cuda.so does not load: ")
    assert first.endswith("drift: none")
    os.unlink(os.path.join(seed_root, "opt/vgpu/lib/libcuda.so.1"))  # an upgrade removed a link
    doc = json.loads(cli("watch", "check", "--root", seed_root, "-p", profile_file, "--json").stdout)
    assert doc["check"]["drift"] == 1 and doc["failed"]


def test_watch_check_reapplies_when_the_profile_says_so(cli, seed_root, tmp_path):
    path = tmp_path / "reapply.yaml"
    path.write_text(WATCH + "  reapply: true\n")
    cli("watch", "enable", "--root", seed_root, "-p", str(path), "--no-verify")
    os.unlink(os.path.join(seed_root, "opt/vgpu/lib/libcuda.so.1"))
    result = cli("watch", "check", "--root", seed_root, "-p", str(path))
    # The re-apply runs through apply's verify, which cannot run a copy's files: refused before any change.
    assert result.stdout.splitlines()[1].startswith(f"vgpu-fix watch: re-apply: failed: refusing to apply to {seed_root}")
    assert [g["status"] for g in json.loads(cli("history", "--root", seed_root, "--json").stdout)["generations"]] == [
        "applied"]


def test_settle_waits_until_the_watched_paths_stop_changing(tmp_path):
    import threading
    import time

    target = tmp_path / "usr/local/bin/ollama"
    target.parent.mkdir(parents=True)
    target.write_text("v1")

    def upgrade():
        for n in range(4):
            time.sleep(0.2)
            target.write_text(f"v{n}")

    worker = threading.Thread(target=upgrade)
    worker.start()
    waited = watch_check.settle(str(tmp_path), ["/usr/local/bin/ollama"], quiet_for=0.5)
    worker.join()
    assert waited >= 0.8 + 0.5 - 0.1


# ---------------------------------------------------------------- status


def test_status_json_summarises_the_host(cli, seed_root):
    cli("apply", "--root", seed_root, "--no-verify")
    cli("verify", "--root", seed_root)
    result = cli("status", "--root", seed_root, "--json")
    doc = json.loads(result.stdout)
    assert result.returncode == 0 and doc["command"] == "status" and not doc["changed"]
    from fixer import core

    assert doc["ollama"] == core.installation(seed_root, profiles.load("h100-vgpu", seed_root)).to_dict()
    assert doc["ollama"]["generation"] == "runner-engine" and doc["ollama"]["how"] == "layout"
    assert doc["applied"]["generation"] == 1 and doc["applied"]["profile"] == "h100-vgpu"
    assert doc["drift"] == {"pending": 0, "conflicts": 0, "paths": []}
    assert doc["last_verify"]["ok"] is False and doc["last_verify"]["source"] == "verify"
    assert doc["watch"]["installed"] is False


def test_status_is_read_only(cli, seed_root, snapshot):
    before = snapshot(seed_root, exclude=())
    cli("status", "--root", seed_root, "--json")
    assert snapshot(seed_root, exclude=()) == before


def test_status_reports_drift_after_an_upgrade_like_change(cli, seed_root):
    cli("apply", "--root", seed_root, "--no-verify")
    os.unlink(os.path.join(seed_root, "opt/vgpu/lib/libnvidia-ml.so.1"))
    doc = json.loads(cli("status", "--root", seed_root, "--json").stdout)
    assert doc["drift"]["paths"] == ["/opt/vgpu/lib/libnvidia-ml.so.1"]
    assert "drift: 1 change(s) pending: /opt/vgpu/lib/libnvidia-ml.so.1" in cli("status", "--root", seed_root).stdout


def _samples(text: str) -> dict[str, tuple[dict, float]]:
    from prometheus_client.parser import text_string_to_metric_families

    return {s.name: (s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples}


def test_prometheus_textfile_is_written_atomically_and_says_the_level_reached(cli, seed_root, tmp_path):
    cli("apply", "--root", seed_root, "--no-verify")
    assert cli("verify", "--root", seed_root).returncode == 9  # the placeholder libraries fail the files level
    (tmp_path / "textfiles").mkdir()
    out = tmp_path / "textfiles/vgpu_fix.prom"
    out.write_text("old\n")
    inode = out.stat().st_ino
    assert cli("status", "--root", seed_root, "--prometheus", str(out)).returncode == 0
    samples = _samples(out.read_text())
    labels, value = samples["vgpu_fix_verify_ok"]
    assert value == 0 and labels["backend"] == "cuda_v12/libggml-cuda.so" and labels["asked"] == "modeled"
    assert samples["vgpu_fix_verify_level"][1] == 0 and labels["reached"] == ""
    assert samples["vgpu_fix_verify_asked_level"][1] == 2
    assert abs(samples["vgpu_fix_last_verify_timestamp_seconds"][1] - time.time()) < 600
    assert samples["vgpu_fix_ollama_info"][1] == 1 and samples["vgpu_fix_ollama_info"][0]["generation"]
    assert samples["vgpu_fix_drift"] == ({"profile": "h100-vgpu", "root": seed_root}, 0)
    assert samples["vgpu_fix_generation"][1] == 1
    assert out.stat().st_ino != inode and stat.S_IMODE(out.stat().st_mode) == 0o644  # replaced by rename
    assert [p.name for p in out.parent.iterdir()] == ["vgpu_fix.prom"]  # no temp file left


def test_a_never_verified_host_has_verify_series_of_zero(cli, seed_root, tmp_path):
    out = tmp_path / "m.prom"
    cli("status", "--root", seed_root, "--prometheus", str(out))
    samples = _samples(out.read_text())
    for name in ("vgpu_fix_verify_ok", "vgpu_fix_verify_level", "vgpu_fix_verify_asked_level",
                 "vgpu_fix_last_verify_timestamp_seconds"):
        assert samples[name][1] == 0, name
    assert "vgpu_fix_drift" in samples


def test_prometheus_into_a_missing_directory_is_invalid_input(cli, seed_root, tmp_path):
    result = cli("status", "--root", seed_root, "--prometheus", str(tmp_path / "no/such/dir/m.prom"))
    assert result.returncode == 3 and "--prometheus" in result.stderr
