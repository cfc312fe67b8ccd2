"""Unit files and EnvironmentFile= read as systemd reads them (tests/data/unit_parsing.yaml; the same
cases run through a real `systemd --user` in tests/reliability/test_unit_parsing.py)."""

from __future__ import annotations

import pytest

from fixer.facts import systemd as unitfile
from fixer.facts.host import probe_unit
from tests import unit_cases

CASES = unit_cases.load()


@pytest.mark.parametrize("index", range(len(CASES)), ids=[c["id"] for c in CASES])
def test_the_probe_reads_units_like_systemd(index, tmp_path):
    case = CASES[index]
    unit = unit_cases.write(str(tmp_path), index, case)
    state = probe_unit(str(tmp_path), unit, "user")
    assert unit_cases.mismatches(case, state.environment.effective()) == []
    assert state.problems == []


@pytest.mark.parametrize("text", ["A\u2028B", "A\u0085B", "A\x0bB", "A\x0cB", "A\x1cB", "A\u2029B"])
def test_only_newline_carriage_return_and_nul_end_a_line(text):
    assert unitfile.lines(text) == [text]


@pytest.mark.parametrize("text, lines", [
    ("a\nb", ["a", "b"]), ("a\r\nb", ["a", "b"]), ("a\n\rb", ["a", "b"]), ("a\n\nb", ["a", "", "b"]),
    ("a\0\nb", ["a", "", "b"]), ("a\rb\n", ["a", "b"]),
])
def test_line_ends_combine_as_in_read_line(text, lines):
    assert unitfile.lines(text) == lines


def test_a_missing_required_environment_file_stops_the_service(tmp_path):
    case = {"service": "EnvironmentFile=/etc/nowhere.env\n"}
    unit = unit_cases.write(str(tmp_path), 0, case)
    assert probe_unit(str(tmp_path), unit, "user").problems == [
        "EnvironmentFile=/etc/nowhere.env: no such file; the service would fail to start"]


def test_an_environment_file_outside_the_root_is_not_read(tmp_path):
    outside = tmp_path / "outside.env"
    outside.write_text("SECRET=1\n")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/link.env").symlink_to(outside)
    unit = unit_cases.write(str(root), 0, {"service": "EnvironmentFile=-/etc/link.env\n"})
    assert "SECRET" not in probe_unit(str(root), unit, "user").environment.effective()
