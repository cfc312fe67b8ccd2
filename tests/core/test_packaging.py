"""The wheel carries the shipped profiles, so a non-editable install finds them by name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]


@pytest.mark.slow
def test_non_editable_install_finds_shipped_profiles(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "-w", str(tmp_path / "wheel"), str(REPO)], check=True, capture_output=True)
    wheel = next((tmp_path / "wheel").glob("vgpu_fix-*.whl"))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    code = "from fixer import profile; p = profile.load('h100-vgpu-preload', '/nonexistent'); print(profile.SHIPPED_DIR, p.name)"
    out = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(target)}, check=True).stdout
    assert out.startswith(str(target / "fixer" / "profiles")) and out.strip().endswith("h100-vgpu-preload")
