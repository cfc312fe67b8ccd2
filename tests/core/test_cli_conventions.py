"""The conventions operators expect of a CLI: --version/-V, -h everywhere, shell completion, help that
shows flags as flags, and `make demo` that installs only what the demo needs."""

from __future__ import annotations

import re
import subprocess

import pytest
import typer.main

from fixer import __version__
from fixer.cli import app
from tests.conftest import REPO


def _commands(group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        found.append(prefix + (name,))
        if hasattr(command, "commands"):
            found += _commands(command, prefix + (name,))
    return found


COMMANDS = _commands(typer.main.get_command(app))


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_flag_prints_the_version(cli, flag):
    result = cli(flag)
    assert result.returncode == 0 and result.stdout.strip() == f"vgpu-fix {__version__}"


@pytest.mark.parametrize("command", [" ".join(c) for c in COMMANDS] + [""])
def test_every_command_takes_h_as_well_as_help(cli, command):
    short, long = cli(*command.split(), "-h"), cli(*command.split(), "--help")
    assert short.returncode == 0 and short.stdout == long.stdout and "Usage:" in short.stdout


def test_shell_completion_is_offered(cli):
    top = cli("--help").stdout
    assert "--install-completion" in top and "--show-completion" in top


@pytest.mark.parametrize("command", [" ".join(c) for c in COMMANDS])
def test_help_shows_flags_without_a_value_and_values_by_their_metavar(cli, command):
    text = cli(*command.split(), "--help").stdout
    options = [line.strip().split("  ")[0] for line in text.split("Options:", 1)[1].splitlines()
               if line.startswith("  -")]
    assert not [o for o in options if re.search(r"<\w", o)], options  # no `--json <bool>`, `--set <list[str]>`
    for flag in ("--json", "--force", "--dry-run", "-y, --yes", "--service"):
        assert not [o for o in options if o.startswith(flag + " ")], options
    if "--set" in text:
        assert "--set NAME=VALUE" in options


def test_plan_force_help_is_about_planning_replacements_not_rollback(cli):
    help_text = " ".join(cli("plan", "--help").stdout.split())
    assert "--force Replace paths of the wrong type" in help_text and "roll back" not in help_text


def test_make_demo_installs_only_the_runtime_dependencies_and_make_test_the_test_extra():
    demo = subprocess.run(["make", "-n", "-B", "demo"], cwd=REPO, capture_output=True, text=True).stdout
    test = subprocess.run(["make", "-n", "-B", "test"], cwd=REPO, capture_output=True, text=True).stdout
    assert "pip install" in demo and "[test]" not in demo and "vgpu-fix demo" in demo
    assert "'.[test]'" in test and "pytest" in test
