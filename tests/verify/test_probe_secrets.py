"""The service's environment reaches a probe only through private files: never on a command line
(/proc/PID/cmdline is world-readable), never in a file another user can read."""

from __future__ import annotations

import os
import stat
import subprocess

from fixer.probe import placement as sandbox

SECRET = "s3cret-token-value"
ENV = {"API_TOKEN": SECRET, "LD_LIBRARY_PATH": "/opt/vgpu/lib", "QUOTED": "it's \"x\" $HOME `id` \\n"}


def modes(path: str) -> tuple[int, int]:
    return stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode), stat.S_IMODE(os.stat(path).st_mode)


def test_the_launcher_reads_the_environment_from_a_0600_file_in_a_0700_dir_not_its_argv(tmp_path):
    placement = sandbox.Placement("/", "live")
    launched = sandbox.start(placement, ["/bin/sleep", "5"], ENV)
    try:
        spec = launched.process.args[-1]
        assert modes(spec) == (0o700, 0o600)
        assert not any(SECRET in arg for arg in launched.process.args)
        assert SECRET in open(spec).read()
    finally:
        sandbox.stop(launched)
        sandbox.cleanup(launched)
    assert not os.path.exists(launched.scratch)


def test_systemd_run_gets_the_environment_as_a_private_environment_file(monkeypatch):
    seen = {}

    def start_transient(scope, unit, properties, argv, cwd="/", stdout=None, stderr=None):
        from fixer import system

        seen["argv"] = system.transient_argv(scope, unit, properties, argv, cwd)
        env_file = next(p.split("=", 1)[1] for p in properties if p.startswith("EnvironmentFile="))
        seen["modes"] = modes(env_file)
        seen["text"] = open(env_file).read()
        return subprocess.Popen(["true"], start_new_session=True, text=True)

    monkeypatch.setattr("fixer.system.start_transient", start_transient)
    placement = sandbox.Placement("/", "systemd", scope="system", properties=["User=ollama"])
    launched = sandbox.start(placement, ["ollama", "{}"], ENV, python_child=True, limit=5)
    sandbox.finish(launched, 5)
    assert not any(value in arg for arg in seen["argv"] for value in (SECRET, "/opt/vgpu/lib"))
    assert not any(arg.startswith("--setenv") for arg in seen["argv"])
    assert seen["modes"] == (0o700, 0o600)
    assert f"API_TOKEN='{SECRET}'" in seen["text"]


def test_environment_file_quoting_keeps_values_literal():
    text = sandbox.environment_file({"A": "a b $X", "B": "it's \"q\" `c` $Y \\z", "C": ""})
    assert text.splitlines() == ["A='a b $X'", 'B="it\'s \\"q\\" \\`c\\` \\$Y \\\\z"', "C=''"]

