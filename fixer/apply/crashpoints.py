"""Named steps where the crash-safety harness can kill the process (VGPU_FIX_CRASH_AT=step[#n])."""

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
    wanted = os.environ.get("VGPU_FIX_CRASH_AT")
    if wanted and wanted in (step, f"{step}#{_counts[step]}"):
        os.kill(os.getpid(), signal.SIGKILL)


def reset() -> None:
    """Start counting afresh (a harness that forks runs from one interpreter calls it per run)."""
    _counts.clear()
