"""A real service manager: in a private mount+pid namespace with throw-away overlays over /etc,
/usr/local, /opt and /var, a real `systemd --user` loads ollama.service (a stand-in), a hand-made
override.conf and a later drop-in that shadows one of our settings. `vgpu-fix apply --root /` runs
through that manager (ldconfig, daemon-reload, restart), then `rollback`. What the manager reports
(Environment, UnsetEnvironment, DropInPaths, NeedDaemonReload) and the restarted process's real
environment must match fixer's probe at every step; nothing may stay behind on the machine."""

from __future__ import annotations

import json
import os

import pytest

from fixer.facts import systemd as unitfile
from tests.reliability import namespace
from tests.reliability.harness import REPO

pytestmark = [pytest.mark.root, pytest.mark.slow]
PROFILE = """name: user-scope
extends: h100-vgpu
service:
  scope: user
"""
WATCHED = ("/etc/systemd/user/ollama.service", "/etc/systemd/user/ollama.service.d", "/var/lib/vgpu-fix",
           "/usr/local/bin/ollama-standin", "/opt/vgpu", "/etc/ld.so.conf.d/vgpu-fix.conf", "/etc/udev/rules.d/70-vgpu-fix.rules")


def _show(text: str) -> dict:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _phase(out: str, name: str) -> dict:
    show = _show(open(os.path.join(out, f"{name}.show")).read())
    environ = dict(line.split("=", 1) for line in open(os.path.join(out, f"{name}.environ")).read().splitlines()
                   if "=" in line)
    probe = json.load(open(os.path.join(out, f"{name}.probe.json")))
    return {"show": show, "environ": environ, "probe": probe}


def _assert_manager_matches_probe(phase: dict) -> None:
    show, environ, probe = phase["show"], phase["environ"], phase["probe"]
    manager_env = dict(w.split("=", 1) for w in unitfile.split_words(show["Environment"]))
    assert manager_env == probe["values"]
    assert sorted(unitfile.split_words(show["UnsetEnvironment"])) == probe["unset"]
    assert show["DropInPaths"].split() == probe["dropins"]
    assert show["NeedDaemonReload"] == "no"
    assert show["ActiveState"] == "active"
    for name, value in probe["effective"].items():  # what the running process really got
        assert environ.get(name) == value, name
    for name in probe["unset"]:
        assert name not in environ, name


@pytest.fixture
def namespace_run(tmp_path):
    namespace.require()
    out = tmp_path / "out"
    out.mkdir()
    profile = tmp_path / "user-scope.yaml"
    profile.write_text(PROFILE)
    work = tmp_path / "ns"
    work.mkdir()
    mounts_before = namespace.mounts()
    watched = {p: os.path.lexists(p) for p in WATCHED}
    proc, name = namespace.run("ns_systemd.sh", REPO, str(profile), str(out), str(work))
    if proc.returncode != 0 and not (out / "before.show").exists():
        namespace.early_failure("ns_systemd.sh", proc, str(out / "manager.log"))
    assert proc.returncode == 0, proc.stderr
    yield str(out), name, mounts_before, watched, str(work)


def test_the_real_manager_sees_what_the_probe_computed_through_apply_and_rollback(namespace_run):
    out = namespace_run[0]
    assert open(os.path.join(out, "apply.rc")).read().strip() == "0", open(os.path.join(out, "apply.out")).read()
    assert open(os.path.join(out, "rollback.rc")).read().strip() == "0", open(os.path.join(out, "rollback.out")).read()
    applied_log = open(os.path.join(out, "apply.out")).read()
    assert "daemon-reload: done" in applied_log and "restart: ollama.service restarted" in applied_log
    assert "OLLAMA_LOAD_TIMEOUT is shadowed by /etc/systemd/user/ollama.service.d/zzz-local.conf" in applied_log
    assert "supersedes OLLAMA_LOAD_TIMEOUT=1m" not in applied_log  # the later file wins, as the manager shows
    assert "supersedes OLLAMA_LLM_LIBRARY=cpu from /etc/systemd/user/ollama.service.d/override.conf" in applied_log

    before, applied, rolled_back = (_phase(out, p) for p in ("before", "applied", "rolled_back"))
    for phase in (before, applied, rolled_back):
        _assert_manager_matches_probe(phase)

    # Applied: our drop-in sits between override.conf and the later hand-made file, and wins over
    # override.conf (cuda_v12, no LD_PRELOAD) while zzz-local.conf still wins OLLAMA_LOAD_TIMEOUT.
    assert applied["show"]["DropInPaths"].split() == [
        "/etc/systemd/user/ollama.service.d/override.conf",
        "/etc/systemd/user/ollama.service.d/zz-vgpu-fix.conf",
        "/etc/systemd/user/ollama.service.d/zzz-local.conf"]
    assert applied["environ"]["OLLAMA_LLM_LIBRARY"] == "cuda_v12"
    assert "LD_PRELOAD" not in applied["environ"] and "OLLAMA_NUM_GPU" not in applied["environ"]
    assert applied["environ"]["OLLAMA_LOAD_TIMEOUT"] == "1m"
    assert applied["show"]["MainPID"] != before["show"]["MainPID"]  # restarted

    # Rolled back: the manager is exactly where it started, and the service was restarted again.
    for key in ("Environment", "UnsetEnvironment", "DropInPaths", "NeedDaemonReload"):
        assert rolled_back["show"][key] == before["show"][key], key
    assert rolled_back["environ"]["OLLAMA_LLM_LIBRARY"] == "cpu"
    assert rolled_back["show"]["MainPID"] != applied["show"]["MainPID"]


def test_nothing_stays_behind_on_the_machine(namespace_run):
    out, name, mounts_before, watched, work = namespace_run
    assert namespace.processes_in(name) == []
    assert namespace.cgroups(name) == []
    assert namespace.mounts() == mounts_before
    assert os.listdir(work) == []  # the namespace's tmpfs went with it
    assert {p: os.path.lexists(p) for p in WATCHED} == watched  # the real /etc, /usr/local, /opt, /var
