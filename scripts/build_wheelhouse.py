"""The deploy role's offline install: vgpu-fix's wheel and wheels of its runtime dependencies in one directory.

`make wheelhouse` runs it; the role copies the directory (deploy_wheelhouse) and pip installs with
--no-index from it. Pass pip's target options (`--python-version 3.11 --platform manylinux2014_x86_64
--only-binary=:all:`) after `--` when the hosts run another Python or architecture than this machine.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "setup.py", "README.md", "LICENSE", "fixer", "profiles")


def build_wheel(out: Path, offline: bool = False) -> Path:
    """vgpu-fix's wheel, built from a copy of the sources (no build residue in the work tree); `offline`:
    with the setuptools already installed here instead of a build environment from the index."""
    with tempfile.TemporaryDirectory(prefix="vgpu-fix-src-") as tmp:
        source = Path(tmp)
        for name in SOURCES:
            path = REPO / name
            if path.is_dir():
                shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy(path, source / name)
        args = ["--no-build-isolation", "--no-index"] if offline else []
        _pip("wheel", "--no-deps", "-q", *args, "-w", str(out), str(source))
    return max(out.glob("vgpu_fix-*.whl"), key=lambda p: p.stat().st_mtime)


def add_dependencies(wheel: Path, out: Path, pip_args: list[str] = ()) -> list[str]:
    """Download (from the index pip is set up for) wheels of everything `wheel` requires into `out`;
    returns their file names."""
    _pip("download", "-q", "--only-binary=:all:", *pip_args, "-d", str(out), str(wheel))
    return sorted(p.name for p in out.glob("*.whl") if p.name != wheel.name)


def _pip(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"pip {args[0]} failed: " + " | ".join((done.stdout + done.stderr).strip().splitlines()[-3:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the wheelhouse directory (emptied first)")
    parser.add_argument("pip_args", nargs="*", help="pip download options for the targets (after --)")
    options = parser.parse_args()
    shutil.rmtree(options.out, ignore_errors=True)
    options.out.mkdir(parents=True)
    try:
        wheel = build_wheel(options.out)
        names = add_dependencies(wheel, options.out, options.pip_args)
    except RuntimeError as exc:
        sys.exit(f"build_wheelhouse: {exc}")
    print(f"{options.out}: {wheel.name} and {len(names)} dependencies: {', '.join(names)}")
    print(f"deploy role: deploy_wheel: {options.out / wheel.name}, deploy_wheelhouse: {options.out}")


if __name__ == "__main__":
    main()
