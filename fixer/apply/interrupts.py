"""SIGINT and SIGTERM during a transaction: recorded, then acted on at the next safe point."""

from __future__ import annotations

import signal

from fixer.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupts:
    """While entered, SIGINT/SIGTERM never cut a step in half: with `deferring` (the default) the first
    signal is only recorded and `check()` raises Interrupted at the next safe point; with `deferring`
    off (long read-only work such as verify) the handler raises at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.deferring = True
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "Interrupts":
        import threading

        if threading.current_thread() is not threading.main_thread():
            return self  # only the main thread may handle signals (a caller's worker thread keeps its own)
        for signum in SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame) -> None:
        if self.signum is None:
            self.signum = signum
        if not self.deferring:
            raise Interrupted(f"interrupted by {self.name}", signum)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    def check(self) -> None:
        """Raise at a safe point; callers past their first change catch it and say what they did."""
        if self.signum is not None:
            raise Interrupted(f"interrupted by {self.name} before this run changed anything", self.signum)
