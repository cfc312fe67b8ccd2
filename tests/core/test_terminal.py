"""What an operator at a terminal sees, through a real pseudo-terminal: progress on stderr for long
applies, rollbacks and verifies — and nothing of it in a pipe or under --json; a copy of a host whose
backend cannot be proven to load fails in one line that says what to do."""

from __future__ import annotations

import os
import re

import pytest

from tests import terminal

MANY = 300


@pytest.fixture
def many_links(tmp_path, seed_root):
    """A profile whose apply touches several hundred paths."""
    path = tmp_path / "many.yaml"
    links = "".join(f"  - {{path: /opt/many/link{n:03d}, target: /opt/vgpu/lib/libvgpu-cuda.so}}\n" for n in range(MANY))
    path.write_text("name: many\nextends: h100-vgpu\nsymlinks:\n" + links)
    return str(path)


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def test_apply_and_rollback_of_many_paths_show_progress_on_a_terminal(seed_root, many_links):
    applied = terminal.run(["apply", "--root", seed_root, "-p", many_links, "--no-verify"], stdout_tty=False)
    assert applied.returncode == 0, applied.terminal
    shown = _plain(applied.terminal)
    count = int(re.search(r"applying (\d+) change\(s\)", shown).group(1))
    assert count > MANY and f"{count}/{count}" in shown  # the bar counts every path to the end
    assert "applying" not in applied.piped and "applied generation 1" in applied.piped  # stdout stays clean
    rolled = terminal.run(["rollback", "--root", seed_root], stdout_tty=False)
    assert rolled.returncode == 0 and "restoring generation 1" in _plain(rolled.terminal)


def test_verify_shows_its_probes_on_a_terminal(seed_root):
    session = terminal.run(["verify", "--root", seed_root], stdout_tty=False)
    assert session.returncode == 9
    shown = _plain(session.terminal)
    assert "verify cuda_v12/libggml-cuda.so" in shown and "4/4" in shown  # every layer counted


@pytest.mark.parametrize("how", ["stderr is a pipe", "--json"])
def test_no_progress_in_a_pipe_or_under_json(seed_root, many_links, how):
    args = ["apply", "--root", seed_root, "-p", many_links, "--no-verify"] + (["--json"] if how == "--json" else [])
    session = terminal.run(args, stdout_tty=False, stderr_tty=how == "--json")
    assert session.returncode == 0
    assert "applying" not in _plain(session.terminal) + session.piped
    assert "\x1b[" not in session.piped


def test_a_copy_that_cannot_be_proven_is_refused_in_one_line_before_any_change(seed_root):
    session = terminal.run(["apply", "--root", seed_root], stdout_tty=False, stderr_tty=False)
    assert session.returncode == 12
    lines = session.piped.strip().splitlines()
    assert len(lines) == 1, session.piped
    assert lines[0].startswith(f"vgpu-fix apply: error: refusing to apply to {seed_root}: verify could reach only "
                               "the files level there, and modeled was asked")
    assert "nothing was changed" in lines[0]
    assert all(flag in lines[0] for flag in ("--probe", "--level files", "--no-verify"))
    assert not os.path.exists(os.path.join(seed_root, "var/lib/vgpu-fix"))


def test_a_copy_whose_static_level_fails_is_rolled_back_in_one_line(seed_root):
    session = terminal.run(["apply", "--root", seed_root, "--level", "files"], stdout_tty=False, stderr_tty=False)
    assert session.returncode == 6
    lines = session.piped.strip().splitlines()
    assert len(lines) == 1, session.piped
    assert lines[0].startswith(f"vgpu-fix apply: error: verify failed: cuda_v12/libggml-cuda.so does not load under {seed_root} (")
    assert "generation 1 was rolled back" in lines[0] and "--no-verify" in lines[0]
    assert "`vgpu-fix verify --help`" in lines[0] and f"`vgpu-fix verify --root {seed_root}`" in lines[0]
