"""The collection as ansible-core reads it: `ansible-doc` parses the modules and the role's argument
specs, and `ansible-test sanity` passes the tests that run offline.

Which sanity tests run here with the project's own ansible-core: those that need nothing from a
package index — compile, empty-init, line-endings, no-assert, no-get-exception, no-illegal-filenames,
no-smart-quotes, replace-urlopen, shebang, symlinks, use-argspec-type-path, use-compat-six,
action-plugin-docs. validate-modules and ansible-lint run from PyPI in their own cached virtualenv:
tests/ansible/test_collection_lint.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ansible.conftest import COLLECTIONS

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
OFFLINE_SANITY = ("compile", "empty-init", "line-endings", "no-assert", "no-get-exception", "no-illegal-filenames",
                  "no-smart-quotes", "replace-urlopen", "shebang", "symlinks", "use-argspec-type-path",
                  "use-compat-six", "action-plugin-docs")


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.skip(f"{name} comes with ansible-core (pip install -e '.[test]')")
    return str(path)


@pytest.fixture
def env(tmp_path):
    return {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(tmp_path), "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
            "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false", "ANSIBLE_NOCOLOR": "1", "LC_ALL": "C.UTF-8"}


def _doc(env, *args) -> dict:
    result = subprocess.run([_tool("ansible-doc"), "--json", *args], capture_output=True, text=True, env=env)
    assert result.returncode == 0 and "ERROR" not in result.stderr, result.stderr
    return json.loads(result.stdout)


def test_ansible_doc_reads_the_role_argument_specs_as_block_mappings(env):
    options = _doc(env, "-t", "role", "vgpufix.vgpu.deploy")["vgpufix.vgpu.deploy"]["entry_points"]["main"]["options"]
    assert options["deploy_pip_extra_args"]["default"] == "" and "--no-index" in options["deploy_pip_extra_args"][
        "description"]
    assert options["deploy_vars"] == {"type": "dict", "default": {}, "description": "Profile variables."}
    assert not [name for name in options if not name.startswith("deploy_")]  # no key parsed out of a value
    defaults = (COLLECTIONS / "ansible_collections/vgpufix/vgpu/roles/deploy/defaults/main.yml").read_text()
    assert set(options) == {line.split(":")[0] for line in defaults.splitlines() if line.startswith("deploy_")}


def test_the_module_and_the_role_no_longer_share_a_name(env):
    modules = _doc(env, "-t", "module", "--list", "vgpufix.vgpu")
    roles = subprocess.run([_tool("ansible-doc"), "-t", "role", "--list", "vgpufix.vgpu", "--json"],
                           capture_output=True, text=True, env=env)
    assert set(modules) == {"vgpufix.vgpu.vgpu_fix", "vgpufix.vgpu.vgpu_fix_facts"}
    assert set(json.loads(roles.stdout)) == {"vgpufix.vgpu.deploy"}


def test_ansible_doc_documents_generation_as_possibly_null_and_profile_content(env):
    doc = _doc(env, "vgpufix.vgpu.vgpu_fix")["vgpufix.vgpu.vgpu_fix"]
    assert "Null" in " ".join(doc["return"]["generation"]["description"])
    assert doc["doc"]["options"]["profile_content"]["type"] == "str"
    facts = _doc(env, "vgpufix.vgpu.vgpu_fix_facts")["vgpufix.vgpu.vgpu_fix_facts"]
    assert facts["doc"]["attributes"]["facts"]["support"] == "full"


@pytest.fixture
def collection_copy(tmp_path):
    """The collection outside any git checkout, so ansible-test reads the files as they are."""
    copy = tmp_path / "src/ansible_collections"
    shutil.copytree(COLLECTIONS / "ansible_collections", copy,
                    ignore=shutil.ignore_patterns("__pycache__", "tests", "*.pyc"))
    return copy / "vgpufix/vgpu"


def _sanity(env, collection: Path) -> subprocess.CompletedProcess:
    args = [_tool("ansible-test"), "sanity", "--python", f"{sys.version_info[0]}.{sys.version_info[1]}"]
    args += [f"--test={name}" for name in OFFLINE_SANITY]
    return subprocess.run(args, cwd=collection, capture_output=True, text=True, env=env, timeout=600)


def test_ansible_test_sanity_passes_the_offline_tests(env, collection_copy):
    result = _sanity(env, collection_copy)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for name in OFFLINE_SANITY:
        assert f'Running sanity test "{name}"' in result.stdout


def test_ansible_test_sanity_does_catch_a_defect(env, collection_copy):
    module = collection_copy / "plugins/modules/vgpu_fix.py"
    module.write_text(module.read_text() + "\n# \u201csmart\u201d quotes\n")
    result = _sanity(env, collection_copy)
    assert result.returncode != 0 and "no-smart-quotes" in result.stdout + result.stderr


def test_the_built_collection_carries_its_license_and_changelog(env, tmp_path):
    import tarfile

    build = subprocess.run([_tool("ansible-galaxy"), "collection", "build", "--output-path", str(tmp_path),
                            str(COLLECTIONS / "ansible_collections/vgpufix/vgpu")], capture_output=True, text=True,
                           env=env, timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr
    [artifact] = tmp_path.glob("vgpufix-vgpu-*.tar.gz")
    with tarfile.open(artifact) as tar:
        names = set(tar.getnames())
        license_text = tar.extractfile("LICENSE").read()
    assert {"LICENSE", "CHANGELOG.md", "tests/sanity/ignore-2.19.txt"} <= names
    assert license_text == (COLLECTIONS.parent / "LICENSE").read_bytes()
