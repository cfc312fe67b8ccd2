"""Fixtures shared by every test tier."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from fixer.demo import build_seed_host, snapshot_tree


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
