"""Native fakes built once per session, fake host roots laid out from them, and the real llama.cpp build."""

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


def llama_cpp_build() -> Path:
    """The folder of the real llama.cpp build `make test` makes (VGPU_FIX_LLAMA_SERVER names the folder or
    its llama-server): llama-server and real ggml, libggml-base and one CPU backend (dynamic backends).
    Without it the tier skips, except under CI, which must run it."""
    path = os.environ.get("VGPU_FIX_LLAMA_SERVER")
    if not path:
        reason = "VGPU_FIX_LLAMA_SERVER is not set: no real llama.cpp build (make llama-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + "; CI must run this tier")
        pytest.skip(reason)
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    if not os.access(folder / "llama-server", os.X_OK):
        pytest.fail(f"VGPU_FIX_LLAMA_SERVER={path}: no executable llama-server there")
    return folder
