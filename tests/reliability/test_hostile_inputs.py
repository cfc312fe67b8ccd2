"""Hostile and broken input, one case per file in cases/: each gives its exit code and a one-line
error naming the location, and writes nothing (the tree, a directory outside the root, the journal);
values systemd can carry round-trip through the drop-in, fixer's probe and systemd-analyze."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil

import pytest

from tests.reliability.cases_runner import load_case, observe, observe_in_namespace

CASES = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "cases", "*.yaml")))


def can_mount() -> bool:
    return os.geteuid() == 0 and shutil.which("unshare") is not None


@pytest.mark.parametrize("path", CASES, ids=[os.path.basename(p)[:-5] for p in CASES])
def test_hostile_input(path, tmp_path):
    case = load_case(path)
    expect = case["expect"]
    if case.get("needs_root") and os.geteuid() != 0:
        pytest.skip("needs root (chown, mknod)")
    if case.get("mount"):
        if os.geteuid() != 0:
            pytest.skip("needs root for a private mount namespace")
        assert can_mount(), "running as root, but unshare is missing: the mount cases must run"
        seen = observe_in_namespace(path, str(tmp_path))
    else:
        seen = observe(case, str(tmp_path))
    output = seen["stdout"] + seen["stderr"]
    assert seen["rc"] == expect["exit"], output
    assert "Traceback" not in output
    assert seen["outside_unchanged"], "something outside the root changed"
    assert seen["temp_files"] == []
    if "error" in expect:
        lines = seen["stderr"].splitlines()
        assert any(re.search(expect["error"], line) for line in lines), seen["stderr"]
    if "output" in expect:
        assert any(re.search(expect["output"], line) for line in output.splitlines()), output
    if "not_output" in expect:
        assert not [line for line in output.splitlines() if re.search(expect["not_output"], line)], output
    for key, value in (expect.get("json") or {}).items():
        assert json.loads(seen["stdout"])[key] == value, (key, seen["stdout"])
    assert seen["devices"] == (expect.get("devices") or {}), "a device node of the (private) /dev changed"
    if expect["exit"] != 0:
        assert seen["tree_unchanged"], f"changed: {seen['tree_diff']}"
        expected_generations = seen["generations_before"]
        if expect.get("generation"):
            expected_generations = expected_generations + [expect["generation"]]
        assert seen["generations_after"] == expected_generations
        if expect["exit"] == 3 and not seen["state_dir_before"]:
            assert not seen["state_dir_after"], "an invalid-input run created the state directory"
        return
    for name, value in (expect.get("env") or {}).items():
        assert seen["env"].get(name) == value.replace("@LONG:30000@", "x" * 30000), name
    for name, data in (expect.get("files") or {}).items():
        assert seen["files"][name] == data, name
    for name, owner in (expect.get("owner") or {}).items():
        assert seen["owner"][name] == owner, name
    if expect.get("analyze"):
        assert seen["analyze"]["our_warnings"] == [], seen["analyze"]["output"]
    for name, line in (expect.get("file_lines") or {}).items():
        assert line in (seen["file_lines"][name] or "").splitlines(), seen["file_lines"][name]
    if expect.get("analyze_unit"):
        assert not re.search(expect["analyze_unit"]["not"], seen["analyze_unit"]["output"]), seen["analyze_unit"]
    if case.get("command", "apply") == "apply":
        assert seen["rollback_rc"] == 0 and seen["rollback_restored"]
    elif case["command"] == "rollback" and "--dry-run" not in case.get("args", []):  # it undid the apply, all of it
        assert seen["seed_restored"] and seen["generations_after"][-1] == "rolled_back", seen["tree_diff"]
    else:  # a read-only command that succeeded changed nothing either
        assert seen["tree_unchanged"], f"changed: {seen['tree_diff']}"


def test_there_are_at_least_forty_cases():
    assert len(CASES) >= 40
