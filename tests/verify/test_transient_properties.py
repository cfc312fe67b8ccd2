"""Which of a unit's settings a probe run through systemd-run carries, and when it runs that way at all."""

from __future__ import annotations

import pytest

from fixer import system
from fixer.facts.host import probe_unit
from fixer.model.profile import Verify
from fixer.probe import placement as sandbox


def test_sandbox_and_resource_settings_are_replayed_in_merge_order():
    directives = {"User": ("/u", ["ollama"]), "LimitMEMLOCK": ("/u", ["64K", "infinity"]),
                  "InaccessiblePaths": ("/d", ["/opt/vgpu/lib"]), "PrivateDevices": ("/d", ["yes"])}
    properties, notes = sandbox.transient_properties(directives)
    assert properties == ["User=ollama", "LimitMEMLOCK=64K", "LimitMEMLOCK=infinity",
                          "InaccessiblePaths=/opt/vgpu/lib", "PrivateDevices=yes"]
    assert notes == []


def test_start_stop_and_logging_settings_are_not_for_the_probe():
    directives = {"Restart": ("/u", ["always"]), "TimeoutStartSec": ("/u", ["600"]),
                  "ExecStart": ("/u", ["/usr/bin/ollama serve"]), "StandardOutput": ("/u", ["journal"])}
    assert sandbox.transient_properties(directives) == ([], [])


def test_what_cannot_be_carried_is_said():
    directives = {"EnvironmentFile": ("/u", ["/etc/default/ollama"]), "ReadWritePaths": ("/d", ["/run/%u", "/a%%b"])}
    properties, notes = sandbox.transient_properties(directives)
    assert properties == ["ReadWritePaths=/a%b"]  # %% is a literal % in a unit file
    assert notes == ["not carried: EnvironmentFile= (from /u): vgpu-fix does not pass it to systemd-run",
                     "not carried: ReadWritePaths=/run/%u (from /d): a %-specifier only a unit file expands"]


def test_systemd_run_keeps_the_command_line_literal_and_pipes_stdio():
    argv = system.transient_argv("user", "vgpu-fix-probe-x.service", ["LimitMEMLOCK=64K"],
                                 ["/run/p/ollama-vgpu-probe", '{"x": "$HOME"}'], cwd="/usr/local/bin")
    assert argv[1:] == ["--user", "--wait", "--pipe", "--collect", "--unit=vgpu-fix-probe-x.service",
                        "--working-directory=/usr/local/bin", "--property=LimitMEMLOCK=64K",
                        "--", "/run/p/ollama-vgpu-probe", '{"x": "$$HOME"}']


def test_without_a_running_manager_the_probe_placement_is_unchanged(tmp_path):
    if system.systemd_live("/", "system"):
        pytest.skip("this machine runs systemd: the live root would use it")
    unit = probe_unit(str(tmp_path), "ollama.service", "system")
    placement = sandbox.place("/", {}, Verify(), unit=unit)
    assert placement.mode == "live" and placement.transient is None
    assert sandbox.place(str(tmp_path), {}, Verify(), unit=unit).mode == "isolated"
