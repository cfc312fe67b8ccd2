"""Native fakes built once per session, and fake host roots laid out from them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.native import layout
from tests.native.build import build_native


@pytest.fixture(scope="session")
def native(tmp_path_factory) -> dict[str, Path]:
    return build_native(tmp_path_factory.mktemp("native"))


@pytest.fixture
def make_host(native, tmp_path):
    """make_host(**lay_out_host options) -> a fresh fake host root (no strategy applied)."""
    count = [0]

    def make(**options) -> Path:
        count[0] += 1
        root = tmp_path / f"root{count[0]}"
        root.mkdir()
        return layout.lay_out_host(root, native, **options)

    return make


def _namespaces_work() -> bool:
    if os.geteuid() != 0:
        return False
    try:
        return subprocess.run(["unshare", "--mount", "--propagation", "private", "true"],
                              capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.fixture(scope="session")
def namespaces() -> None:
    """Skip where not root; as root, private mount namespaces must work (a failure, not a skip)."""
    if os.geteuid() != 0:
        pytest.skip("needs root for private mount namespaces")
    if not _namespaces_work():
        pytest.fail("running as root, but `unshare --mount` does not work here")
