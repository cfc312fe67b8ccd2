"""Under --json every exit prints exactly one JSON document with the standard fields: success,
a documented error, a usage error, a bug (an unexpected exception) and an interrupt."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

STANDARD = {"format_version", "command", "root", "changed", "failed", "msg"}


@pytest.mark.parametrize("args, code", [
    (["history", "--root", "{root}", "--json"], 0),
    (["profiles", "list", "--json"], 0),
    (["profiles", "show", "h100-vgpu", "--json"], 0),
    (["plan", "--root", "{root}", "--json"], 4),
    (["rollback", "--root", "{root}", "--json"], 0),  # nothing to roll back: a success
    (["plan", "--root", "{root}", "--json", "--no-such-option"], 2),
    (["plan", "--root", "{root}", "--json", "--profile", "/nonexistent.yaml"], 3),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_every_exit_prints_one_document_with_the_standard_fields(seed_root, cli, args, code):
    done = cli(*[a.replace("{root}", seed_root) for a in args])
    assert done.returncode == code, done.stdout + done.stderr
    doc = json.loads(done.stdout)
    assert STANDARD <= set(doc), sorted(STANDARD - set(doc))
    assert doc["failed"] is (code not in (0, 4))
    if code not in (0, 4):
        assert doc["exit_code"] == code and doc["msg"]


def test_a_bug_still_prints_one_json_document_and_exits_1(seed_root):
    script = ("import sys, fixer.core as core\n"
              "def broken(*a, **k): raise RuntimeError('boom')\n"
              "core.make_plan = broken\n"
              "from fixer.cli import main\n"
              f"sys.argv = ['vgpu-fix', 'plan', '--root', {seed_root!r}, '--json']\n"
              "main()\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 1
    doc = json.loads(done.stdout)
    assert doc["failed"] is True and doc["msg"] == "internal error (a bug): RuntimeError: boom"
    assert doc["exit_code"] == 1 and doc["command"] == "plan"


def test_history_lists_generations_with_the_standard_fields(seed_root, cli):
    assert cli("apply", "--root", seed_root, "--no-verify").returncode == 0
    doc = json.loads(cli("history", "--root", seed_root, "--json").stdout)
    assert doc["command"] == "history" and doc["msg"] == "1 generation(s)"
    assert [g["status"] for g in doc["generations"]] == ["applied"]
