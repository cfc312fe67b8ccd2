"""Fixtures shared by every test tier."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fixer.demo import build_seed_host, snapshot_tree

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def seed_root(tmp_path):
    """A fresh copy of the seed's broken host under a temporary root."""
    root = tmp_path / "root"
    root.mkdir()
    build_seed_host(str(root))
    return str(root)


@pytest.fixture
def snapshot():
    return snapshot_tree


@pytest.fixture
def cli():
    """Run `python -m fixer ARGS` in a subprocess; returns the CompletedProcess."""

    def run(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "fixer", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "NO_COLOR": "1", **(env or {})},
        )

    return run


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """A wheel of this checkout, built offline from a copy so the build leaves nothing in the work tree."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "setup.py", "README.md", "fixer", "profiles"):
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(path, source / name)
    out = tmp_path_factory.mktemp("dist")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(out), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, f"pip wheel failed (setuptools and wheel come with the test extra):\n{build.stderr}"
    return next(out.glob("vgpu_fix-*.whl"))
