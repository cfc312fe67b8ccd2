"""Run real `ansible-playbook` against localhost (connection: local) on throw-away roots.

A test-only callback (callback_plugins/record_results.py) writes each host's task results, keyed
by register name, to RESULTS/<host>.json (under --check and after failures too), so tests read the
module's real return values instead of scraping the console.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from fixer.demo import build_seed_host

REPO = Path(__file__).resolve().parents[2]
COLLECTIONS = REPO / "ansible"
RECAP = re.compile(r"^(\S+)\s+:\s+(.*)$")


def ansible_playbook() -> str | None:
    """The ansible-playbook of the environment running the tests, else the one on PATH."""
    beside = Path(sys.executable).parent / "ansible-playbook"
    return str(beside) if beside.exists() else shutil.which("ansible-playbook")


@dataclass
class PlayRun:
    rc: int
    output: str
    results: dict[str, dict]  # host -> {register name -> module result}
    recap: dict[str, dict[str, int]]  # host -> {ok, changed, failed, ...}

    def result(self, host: str = "alpha", name: str = "vgpu") -> dict:
        return self.results[host][name]


class Ansible:
    """Writes an inventory and a playbook under tmp_path and runs ansible-playbook on them."""

    def __init__(self, tmp_path: Path):
        self.tmp = tmp_path
        self.results_dir = tmp_path / "results"
        self.hosts: dict[str, dict] = {}
        home = tmp_path / "ansible-home"
        self.env = {
            **os.environ,
            "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
            "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false",
            "ANSIBLE_HOME": str(home),
            "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
            "ANSIBLE_REMOTE_TEMP": str(home / "remote-tmp"),
            "ANSIBLE_RETRY_FILES_ENABLED": "false",
            "ANSIBLE_NOCOLOR": "true",
            "ANSIBLE_LOCALHOST_WARNING": "false",
            "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
            "ANSIBLE_STDOUT_CALLBACK": "default",
            "ANSIBLE_CALLBACK_PLUGINS": str(Path(__file__).parent / "callback_plugins"),
            "ANSIBLE_CALLBACKS_ENABLED": "record_results",
            "VGPU_TEST_RESULTS": str(self.results_dir),
            "ANSIBLE_PIPELINING": "true",
            "ANSIBLE_GALAXY_SERVER": "http://127.0.0.1:9",  # never the network
            # The target's Python imports this checkout's fixer unless a test installs vgpu-fix itself.
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        }
        self.env.pop("ANSIBLE_CONFIG", None)

    def host(self, name: str, build=None, **hostvars) -> str:
        """A host alias on the local connection whose vgpu-fix root is a fresh seed host (or what
        `build(root)` lays out)."""
        root = self.tmp / f"root-{name}"
        root.mkdir()
        (build or build_seed_host)(str(root))
        self.hosts[name] = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                            "vgpu_root": str(root), **hostvars}
        return str(root)

    def play(self, tasks: list[dict], *args: str, play_vars: dict | None = None,
             roles: list | None = None) -> PlayRun:
        play = {"name": "vgpu-fix", "hosts": "fleet", "gather_facts": False, "vars": play_vars or {},
                "roles": roles or [], "tasks": tasks}
        shutil.rmtree(self.results_dir, ignore_errors=True)
        self.results_dir.mkdir()
        (self.tmp / "inventory.json").write_text(json.dumps({"fleet": {"hosts": self.hosts}}))
        (self.tmp / "play.yml").write_text(json.dumps([play], indent=1))
        proc = subprocess.run([ansible_playbook(), "-i", "inventory.json", "play.yml", *args], cwd=self.tmp,
                              env=self.env, capture_output=True, text=True, timeout=300)
        output = proc.stdout + proc.stderr
        results = {p.stem: json.loads(p.read_text()) for p in self.results_dir.glob("*.json")}
        return PlayRun(proc.returncode, output, results, _recap(output))


def _recap(output: str) -> dict[str, dict[str, int]]:
    recap, seen = {}, False
    for line in output.splitlines():
        if line.startswith("PLAY RECAP"):
            seen = True
        elif seen and (match := RECAP.match(line)):
            recap[match.group(1)] = {k: int(v) for k, v in (kv.split("=") for kv in match.group(2).split())}
    return recap


@pytest.fixture
def ansible(tmp_path) -> Ansible:
    if ansible_playbook() is None:
        pytest.skip("ansible-core is not installed (pip install -e '.[test]')")
    return Ansible(tmp_path)
