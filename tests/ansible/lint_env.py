"""A separate virtualenv with ansible-lint and ansible-core from PyPI (pinned), built once under
.cache/collection-lint/ and reused: the linters are not the project's runtime or test dependencies.

ansible-test bootstraps the virtualenv of each sanity test with a `get-pip` script it downloads from
Ansible's CI file host; here it finds, in its cache (under the HOME it is given), a script that installs
pip from the pinned pip wheel fetched from PyPI instead. The requirements of the sanity test itself
(pinned by ansible-test) come from PyPI through pip as usual."""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PINS = ("ansible-lint==26.10.1", "ansible-core==2.19.14")
BOOTSTRAP_PIP = "24.2"  # the pip ansible-core 2.19's ansible-test puts in its sanity virtualenvs
CACHE = REPO / ".cache" / "collection-lint"

GET_PIP = '''"""Stands in for get-pip.py {version}: pip from its wheel, fetched from PyPI by tests/ansible/lint_env.py."""
import sys

sys.path.insert(0, {wheel!r})
from pip._internal.cli.main import main

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(main(["install", "--no-index", "--find-links", {wheels!r}, *args]))
'''


class Unavailable(Exception):
    """The linters could not be installed (no package index reachable): the reason, for pytest.skip."""


def environment() -> tuple[Path, Path]:
    """(the virtualenv's bin dir, the HOME ansible-test runs with), building them on first use."""
    key = hashlib.sha256(repr((PINS, BOOTSTRAP_PIP, sys.version_info[:2])).encode()).hexdigest()[:12]
    base = CACHE / key
    venv, home, wheels = base / "venv", base / "home", base / "wheels"
    marker = base / "complete"
    base.mkdir(parents=True, exist_ok=True)
    with open(base / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test workers build it once
        if not marker.exists():
            _build(venv, home, wheels)
            marker.write_text(" ".join(PINS) + "\n")
    return venv / "bin", home


def _build(venv: Path, home: Path, wheels: Path) -> None:
    _run([sys.executable, "-m", "venv", "--clear", str(venv)])
    _run([str(venv / "bin" / "pip"), "install", "-q", *PINS])
    _run([str(venv / "bin" / "pip"), "download", "-q", "--no-deps", f"pip=={BOOTSTRAP_PIP}", "-d", str(wheels)])
    wheel = next(wheels.glob(f"pip-{BOOTSTRAP_PIP}-*.whl"))
    cache = home / ".ansible" / "test" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    script = GET_PIP.format(version=BOOTSTRAP_PIP, wheel=str(wheel), wheels=str(wheels))
    (cache / f"get_pip_{BOOTSTRAP_PIP.replace('.', '_')}.py").write_text(script)


def _run(args: list[str]) -> None:
    done = subprocess.run(args, capture_output=True, text=True, timeout=900, env={**os.environ, "PIP_NO_INPUT": "1"})
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
        raise Unavailable(f"cannot install {' '.join(PINS)} from the package index ({' '.join(args[1:3])}): "
                          + " | ".join(tail))
