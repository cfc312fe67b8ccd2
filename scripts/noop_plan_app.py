"""The start-up floor for `make bench`: a typer app with `plan`'s options that does nothing."""

from __future__ import annotations

from typing import List, Optional

import typer

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None)


@app.callback()
def _main(version: bool = typer.Option(False, "--version", "-V", is_eager=True)) -> None:
    """A no-op app."""


@app.command()
def plan(
    profile: str = typer.Option("h100-vgpu", "--profile", "-p"),
    root: str = typer.Option("/", "--root"),
    sets: Optional[List[str]] = typer.Option(None, "--set"),
    as_json: bool = typer.Option(False, "--json"),
    out: Optional[str] = typer.Option(None, "--out"),
    force: bool = typer.Option(False, "--force"),
) -> None:
    """Parse plan's options and return."""


@app.command()
def other() -> None:
    """A second command, so `plan` is dispatched as a subcommand the way vgpu-fix's is."""


if __name__ == "__main__":
    app()
