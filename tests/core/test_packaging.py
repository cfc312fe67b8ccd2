"""Installed as users install it (a wheel, non-editable), every command runs from outside the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from fixer.demo import build_seed_host

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
COLLECTION = REPO / "ansible/ansible_collections/vgpufix/vgpu"
HIDDEN = ("fixer", "vgpu_fix", "__editable__", "__editable___vgpu_fix")


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh venv holding the wheel alone; its dependencies are seen through a view without vgpu-fix."""
    base = tmp_path_factory.mktemp("installed")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    view = base / "deps"
    view.mkdir()
    for lib in dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]):
        for entry in Path(lib).iterdir():
            if not entry.name.startswith(HIDDEN) and not (view / entry.name).exists():
                (view / entry.name).symlink_to(entry)
    site = next((venv / "lib").glob("python*/site-packages"))
    (site / "deps-view.pth").write_text(f"{view}\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                    "--no-deps", "--no-index", str(wheel)], check=True, capture_output=True)
    return venv / "bin" / "vgpu-fix"


def _run(tool: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([str(tool), *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**env, "NO_COLOR": "1"})


@pytest.mark.parametrize("args, codes", [
    (["--help"], {0}),
    (["profiles", "list"], {0}),
    (["profiles", "show", "h100-vgpu"], {0}),
    (["schema"], {0}),
    (["plan", "--profile", "h100-vgpu", "--root", "{root}"], {4}),
    (["doctor", "--root", "{root}"], {10}),  # the seed host has error-severity problems
    (["doctor", "--root", "{root}", "--log", "{log}", "--json"], {10}),
    (["history", "--root", "{root}"], {0}),
    (["apply", "--profile", "h100-vgpu", "--root", "{root}", "--no-verify"], {0}),
    (["verify", "--profile", "h100-vgpu", "--root", "{root}", "--json"], {0, 9}),
    (["rollback", "--root", "{root}"], {0, 3}),
    (["demo"], {0}),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_every_command_runs_from_the_installed_wheel(installed, tmp_path, args, codes):
    root = tmp_path / "root"
    root.mkdir()
    build_seed_host(str(root))
    log = tmp_path / "ollama.log"  # a v0.32.15 line: reading it needs the packaged version table
    log.write_text('time=2026-08-20T09:00:00.105+02:00 level=INFO source=routes.go:2008 '
                   'msg="Listening on 127.0.0.1:11434 (version 0.32.15)"\n'
                   'time=2026-08-20T09:00:00.106+02:00 level=INFO source=runner.go:60 msg="discovering available GPUs..."\n')
    proc = _run(installed, tmp_path, *[a.replace("{root}", str(root)).replace("{log}", str(log)) for a in args])
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "ModuleNotFoundError" not in proc.stderr
    assert proc.returncode in codes, proc.stdout + proc.stderr


def test_the_installed_package_is_not_the_checkout(installed, tmp_path):
    code = "import fixer, fixer.profiles as p; print(fixer.__file__); print(p.SHIPPED_DIR)"
    python = installed.parent / "python"
    out = subprocess.run([str(python), "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True,
                         env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}).stdout.split()
    assert "site-packages" in out[0] and out[1].endswith("fixer/shipped_profiles")
    assert (Path(out[1]) / "h100-vgpu.yaml").is_file()


def test_the_installed_tool_ignores_the_crash_harness_variables(installed, tmp_path):
    """The crash-safety hooks are armed only in a checkout with its test harness: in an installed tool,
    VGPU_FIX_CRASH_AT neither kills the run nor does VGPU_FIX_CRASH_LOG write anywhere."""
    root = tmp_path / "root"
    root.mkdir()
    build_seed_host(str(root))
    log = tmp_path / "steps.log"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([str(installed), "apply", "--root", str(root), "--no-verify"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300,
                          env={**env, "NO_COLOR": "1", "VGPU_FIX_CRASH_AT": "apply:change",
                               "VGPU_FIX_CRASH_LOG": str(log), "VGPU_FIX_PAUSE_AT": "apply:change"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "applied generation 1" in proc.stdout
    assert not log.exists()

def _metadata(wheel: Path) -> list[tuple[str, str]]:
    import zipfile
    from email.parser import Parser

    with zipfile.ZipFile(wheel) as whl:
        name = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
        return Parser().parsestr(whl.read(name).decode()).items()


def test_the_wheel_carries_the_license_text_and_its_spdx_expression(wheel):
    import zipfile

    metadata = _metadata(wheel)
    assert ("License-Expression", "Apache-2.0") in metadata and ("License-File", "LICENSE") in metadata
    with zipfile.ZipFile(wheel) as whl:
        license_text = next(whl.read(n) for n in whl.namelist() if n.endswith(".dist-info/licenses/LICENSE"))
    assert license_text == (REPO / "LICENSE").read_bytes()


def test_the_wheel_has_classifiers_and_the_project_addresses_galaxy_names_too(wheel):
    import yaml

    metadata = _metadata(wheel)
    classifiers = [v for k, v in metadata if k == "Classifier"]
    assert "Operating System :: POSIX :: Linux" in classifiers and "Programming Language :: Python :: 3.11" in classifiers
    assert not [c for c in classifiers if c.startswith("License ::")]  # PEP 639: the expression says it
    urls = dict(v.split(", ", 1) for k, v in metadata if k == "Project-URL")
    galaxy = yaml.safe_load((COLLECTION / "galaxy.yml").read_text())
    assert (urls["Repository"], urls["Issues"], urls["Homepage"]) == (
        galaxy["repository"], galaxy["issues"], galaxy["homepage"])


def test_the_build_backend_is_a_setuptools_that_reads_the_spdx_license_string():
    import tomllib

    from packaging.requirements import Requirement
    from packaging.version import Version

    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert isinstance(project["project"]["license"], str)  # an SPDX expression, not a table
    [setuptools] = [Requirement(r) for r in project["build-system"]["requires"] if r.startswith("setuptools")]
    assert not setuptools.specifier.contains(Version("76.1")) and setuptools.specifier.contains(Version("77.0"))


def test_the_collection_and_the_repository_carry_the_same_license_and_a_changelog_pairs_their_versions():
    import yaml

    assert (COLLECTION / "LICENSE").read_bytes() == (REPO / "LICENSE").read_bytes()
    galaxy = yaml.safe_load((COLLECTION / "galaxy.yml").read_text())
    from fixer import __version__

    rows = [line.split("|")[1:3] for line in (COLLECTION / "CHANGELOG.md").read_text().splitlines()
            if line.startswith("| ") and line[2].isdigit()]
    assert [c.strip() for c in rows[0]] == [galaxy["version"], __version__]  # the newest pair comes first
    assert f"## {galaxy['version']}" in (COLLECTION / "CHANGELOG.md").read_text()
