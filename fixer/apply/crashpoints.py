"""Named steps where the crash-safety harness can kill the process (VGPU_FIX_CRASH_AT=step[#n]) or,
for the signal specs, pause it (VGPU_FIX_PAUSE_AT=step[#n])."""

from __future__ import annotations

import os
import signal

_counts: dict[str, int] = {}


def hit(step: str) -> None:
    """SIGKILL ourselves at the n-th time `step` is reached when VGPU_FIX_CRASH_AT names it.

    VGPU_FIX_CRASH_LOG, when set, receives one line per step reached, so a harness can list them.
    """
    _counts[step] = _counts.get(step, 0) + 1
    log = os.environ.get("VGPU_FIX_CRASH_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"{step}#{_counts[step]}\n")
    names = (step, f"{step}#{_counts[step]}")
    wanted = os.environ.get("VGPU_FIX_CRASH_AT")
    if wanted and wanted in names:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get("VGPU_FIX_PAUSE_AT") in names:
        _pause()


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
    """Start counting afresh (a harness that forks runs from one interpreter calls it per run)."""
    _counts.clear()
