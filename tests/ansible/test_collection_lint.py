"""The collection passes `ansible-test sanity --test validate-modules` and `ansible-lint --profile
production`, both from PyPI in their own virtualenv (tests/ansible/lint_env.py, built once and cached);
each linter is also shown to fail on the defect it exists to catch."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ansible import lint_env
from tests.ansible.conftest import COLLECTIONS

pytestmark = pytest.mark.slow
COLLECTION = "ansible_collections/vgpufix/vgpu"


@pytest.fixture(scope="session")
def linters() -> tuple[Path, Path]:
    try:
        return lint_env.environment()
    except lint_env.Unavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture
def collection(tmp_path) -> Path:
    """The collection as Galaxy would build it, outside any git checkout (ansible-test reads the files as they are)."""
    shutil.copytree(COLLECTIONS / COLLECTION, tmp_path / COLLECTION, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return tmp_path / COLLECTION


def _env(bin_dir: Path, home: Path, collection: Path) -> dict:
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(home), "LC_ALL": "C.UTF-8", "ANSIBLE_NOCOLOR": "1",
            "NO_COLOR": "1", "ANSIBLE_COLLECTIONS_PATH": str(collection.parents[2]),
            "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false",
            **{k: v for k, v in os.environ.items() if k.startswith("PIP_")}}  # the index pip is set up to use


def validate_modules(linters, collection: Path) -> subprocess.CompletedProcess:
    bin_dir, home = linters
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    return subprocess.run([str(bin_dir / "ansible-test"), "sanity", "--test", "validate-modules", "--python", python],
                          cwd=collection, env=_env(bin_dir, home, collection), capture_output=True, text=True,
                          timeout=900)


def ansible_lint(linters, collection: Path) -> subprocess.CompletedProcess:
    bin_dir, home = linters
    return subprocess.run([str(bin_dir / "ansible-lint"), "--profile", "production", "--offline", "--nocolor",
                           "--format", "pep8"], cwd=collection, env=_env(bin_dir, home, collection),
                          capture_output=True, text=True, timeout=900)


def test_validate_modules_passes(linters, collection):
    result = validate_modules(linters, collection)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert 'Running sanity test "validate-modules"' in result.stdout + result.stderr


def test_ansible_lint_production_profile_passes(linters, collection):
    result = ansible_lint(linters, collection)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "Profile 'production' was required, and it passed" in result.stdout + result.stderr


@pytest.mark.parametrize("linter, path, edit, reported", [
    (validate_modules, "plugins/modules/vgpu_fix.py",
     lambda text: text.replace("  rollback_to:\n    description:", "  rollback_two:\n    description:"), "rollback_to"),
    (ansible_lint, "roles/deploy/defaults/main.yml",
     lambda text: text + "vgpu_fix_shim_dir: /opt/vgpu/lib\n", "var-naming[no-role-prefix]"),
], ids=["validate-modules: an undocumented option", "ansible-lint: a role variable without the role prefix"])
def test_each_linter_fails_on_the_defect_it_exists_for(linters, collection, linter, path, edit, reported):
    target = collection / path
    target.write_text(edit(target.read_text()))
    result = linter(linters, collection)
    assert result.returncode != 0 and reported in result.stdout + result.stderr
