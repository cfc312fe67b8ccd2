"""Named steps where the crash-safety harness can kill the process (VGPU_FIX_CRASH_AT=step[#n]) or,
for the signal specs, pause it (VGPU_FIX_PAUSE_AT=step[#n]); armed only in a source checkout."""

from __future__ import annotations

import os
import signal
from pathlib import Path

HOOKS = ("VGPU_FIX_CRASH_AT", "VGPU_FIX_CRASH_LOG", "VGPU_FIX_PAUSE_AT")
_counts: dict[str, int] = {}
_armed: dict[str, str] = {}  # the hooks' values, read once per run (empty in an installed tool)
_read: list[bool] = []


def armed() -> dict[str, str]:
    """The hook variables that are set, when this package runs from a checkout that carries the test
    harness (tests/reliability/harness.py beside fixer/); an installed tool has no harness beside it,
    so setting an environment variable alone never makes it kill itself or write a log."""
    if not _read:
        checkout = Path(__file__).resolve().parents[2]
        if (checkout / "tests" / "reliability" / "harness.py").is_file():
            _armed.update({name: os.environ[name] for name in HOOKS if os.environ.get(name)})
        _read.append(True)
    return _armed


def hit(step: str) -> None:
    """SIGKILL ourselves at the n-th time `step` is reached when VGPU_FIX_CRASH_AT names it.

    VGPU_FIX_CRASH_LOG, when set, receives one line per step reached, so a harness can list them.
    """
    hooks = armed()
    if not hooks:
        return
    _counts[step] = _counts.get(step, 0) + 1
    names = (step, f"{step}#{_counts[step]}")
    if "VGPU_FIX_CRASH_LOG" in hooks:
        _append(hooks["VGPU_FIX_CRASH_LOG"], f"{step}#{_counts[step]}\n")
    if hooks.get("VGPU_FIX_CRASH_AT") in names:
        os.kill(os.getpid(), signal.SIGKILL)
    if hooks.get("VGPU_FIX_PAUSE_AT") in names:
        _pause()


def _append(path: str, line: str) -> None:
    """Append to the harness's log: a private file, never through a symlink."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _pause() -> None:
    """Create VGPU_FIX_PAUSE_FILE (the harness waits for it), then sleep VGPU_FIX_PAUSE_SECONDS (default 5):
    a signal sent meanwhile is handled as it would be at this step."""
    import time

    marker = os.environ.get("VGPU_FIX_PAUSE_FILE")
    if marker:
        with open(marker, "w", encoding="utf-8") as fh:
            fh.write(str(os.getpid()))
    time.sleep(float(os.environ.get("VGPU_FIX_PAUSE_SECONDS", "5")))


def reset() -> None:
    """Start counting afresh and read the hook variables again (a harness that forks runs from one
    interpreter calls it per run)."""
    _counts.clear()
    _armed.clear()
    _read.clear()
