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
SEED = REPO.parent / "shared" / "seed"  # the user's investigation, beside the checkout


def seed_file(name: str) -> str:
    """A file of the seed investigation (../shared/seed/ from the checkout); skip only when it is absent."""
    path = SEED / name
    if not path.is_file():
        pytest.skip(f"the seed is not beside this checkout ({path} is absent)")
    return str(path)


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
    from scripts.build_wheelhouse import build_wheel

    try:
        return build_wheel(tmp_path_factory.mktemp("dist"), offline=True)
    except RuntimeError as exc:
        pytest.fail(f"{exc} (setuptools and wheel come with the test extra)")


# ---------------------------------------------------------------- how many tests of each tier ran

TIERS = ("core", "verify", "doctor", "ansible", "reliability")  # test folders
MARKED = ("slow", "root", "real_ggml")  # markers
_tiers: dict[str, list[str]] = {}
_outcomes: dict[str, str] = {}


def pytest_collection_modifyitems(items):
    for item in items:
        parts = Path(str(item.path)).relative_to(REPO).parts
        folder = [parts[1]] if len(parts) > 2 and parts[0] == "tests" and parts[1] in TIERS else []
        _tiers[item.nodeid] = folder + [m for m in MARKED if item.get_closest_marker(m)]


def pytest_runtest_logreport(report):
    """One outcome per test: failed if any phase failed, else skipped or passed."""
    if report.failed:
        _outcomes[report.nodeid] = "failed"
    elif report.skipped:
        _outcomes.setdefault(report.nodeid, "skipped")
    elif report.when == "call":
        _outcomes.setdefault(report.nodeid, "passed")


def tier_counts() -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for nodeid, outcome in _outcomes.items():
        for tier in _tiers.get(nodeid) or ["other"]:
            counts.setdefault(tier, {"ran": 0, "passed": 0, "failed": 0, "skipped": 0})[outcome] += 1
    for c in counts.values():
        c["ran"] = c["passed"] + c["failed"]
    return {t: counts[t] for t in (*TIERS, *MARKED, "other") if t in counts}


def pytest_terminal_summary(terminalreporter):
    """Print how many tests of each tier ran (with VGPU_FIX_TIER_SUMMARY=FILE also as JSON, for .ci/run)."""
    import json

    counts = tier_counts()
    terminalreporter.write_sep("-", "tests per tier")
    for tier, c in counts.items():
        terminalreporter.write_line(f"{tier:<12} ran {c['ran']:>4}  (passed {c['passed']}, failed {c['failed']}, "
                                    f"skipped {c['skipped']})")
    target = os.environ.get("VGPU_FIX_TIER_SUMMARY")
    if target:
        with open(target, "w", encoding="utf-8") as fh:
            json.dump(counts, fh, indent=1)


# ---------------------------------------------------------------- the machine's own / is never changed

# The namespace tiers run as root with only /etc, /usr/local, /opt, /var and /run made throw-away; the
# machine's "/" itself is shared. A test that changed its mode (a `cp -a TREE/. /` once made it 0700, and
# every probe running as another user then failed far from the cause) fails the whole run here.
_ROOT_BEFORE = os.stat("/")


def pytest_sessionfinish(session, exitstatus):
    now = os.stat("/")
    before = (_ROOT_BEFORE.st_mode, _ROOT_BEFORE.st_uid, _ROOT_BEFORE.st_gid)
    if (now.st_mode, now.st_uid, now.st_gid) != before:
        os.chmod("/", _ROOT_BEFORE.st_mode & 0o7777)
        sys.stderr.write(f"\nERROR: a test changed the mode or owner of the machine's / "
                         f"({oct(before[0])} -> {oct(now.st_mode)}); restored\n")
        session.exitstatus = 1
