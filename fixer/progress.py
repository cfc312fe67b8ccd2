"""Progress on stderr for steps that take more than a second; silent unless stderr is a terminal."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Callable, Iterator

Step = Callable[[str], None]  # called once per finished unit of work, with what is being done now


class Progress:
    """Does nothing: what the core gets under --json, in a pipe, or from the Ansible module."""

    @contextmanager
    def task(self, label: str, total: int | None = None) -> Iterator[Step]:
        yield lambda text="": None


class TerminalProgress(Progress):
    """A transient rich progress bar (a spinner when the total is unknown) on stderr."""

    @contextmanager
    def task(self, label: str, total: int | None = None) -> Iterator[Step]:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bar

        columns = [SpinnerColumn(), TextColumn("{task.description}")]
        if total is not None:
            columns += [BarColumn(), MofNCompleteColumn()]
        columns += [TimeElapsedColumn(), TextColumn("[dim]{task.fields[now]}")]
        with Bar(*columns, console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task(label, total=total, now="")

            def step(text: str = "") -> None:
                bar.update(task, advance=1 if total is not None else 0, now=text)

            yield step


def for_terminal(quiet: bool) -> Progress:
    """TerminalProgress when stderr is a terminal and the caller is not producing --json."""
    if quiet or not sys.stderr.isatty() or os.environ.get("TERM") == "dumb":
        return Progress()
    return TerminalProgress()
