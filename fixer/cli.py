"""The typer app: parse options, call the core, render; the one place that maps errors to exit codes."""

from __future__ import annotations

import os
import sys
from typing import Callable, List, Optional

import typer

# Pydantic's plugin discovery scans every installed distribution's metadata (~20-40 ms at start-up);
# vgpu-fix uses no pydantic plugins.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

from fixer.errors import (
    STEP_CODES,
    Conflict,
    ExitCode,
    ExternalCommandFailed,
    FixerError,
    Interrupted,
    InvalidInput,
    RollbackFailed,
    UsageError,
)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Make Ollama load its CUDA backend on virtual-GPU hosts: plan, apply, verify, roll back.",
)
profiles_app = typer.Typer(help="List and show profiles (resolved: extends merged, variables substituted).")
app.add_typer(profiles_app, name="profiles")

DEFAULT_PROFILE = "h100-vgpu"
ProfileOpt = typer.Option(DEFAULT_PROFILE, "--profile", "-p", help="Profile name or path to a YAML file.")
RootOpt = typer.Option("/", "--root", help="Directory that stands for / (default: the live host).")
SetOpt = typer.Option(None, "--set", help="Profile variable override NAME=VALUE (repeatable).")
JsonOpt = typer.Option(False, "--json", help="Print the stable JSON document instead of text.")
ForceOpt = typer.Option(False, "--force", help="Replace paths of the wrong type / roll back despite drift (journaled).")
RestartOpt = typer.Option(True, "--restart/--no-restart", help="Restart the unit after changes on a live root.")
ProbeOpt = typer.Option(
    None, "--probe/--no-probe",
    help="Execute the root's files (ollama, libggml-*.so, preloads) to prove the backend loads. Default: on for "
         "the live root /, off for any other root (untrusted: then only as an unprivileged user in namespaces).")
LockTimeoutOpt = typer.Option(0.0, "--lock-timeout", help="Seconds to wait for another run's lock (default: fail at once).")


def _root(root: str) -> str:
    from fixer.core import resolve_root

    return resolve_root(root)


def _seconds(name: str, value: Optional[float]) -> Optional[float]:
    from fixer.core import seconds

    return seconds(name, value)


def _load(profile: str, root: str, sets: Optional[List[str]]):
    from fixer import profiles

    return profiles.load(profile, root, profiles.parse_overrides(sets or []))


def _emit(as_json: bool, doc: dict, text: str) -> None:
    if as_json:
        from fixer.render import dumps

        typer.echo(dumps(doc))
    elif text:
        typer.echo(text)


def _run(command: str, as_json: bool, root: str, profile: str | None, body: Callable[[], int]) -> None:
    """Run a command body; turn every error into its message (or one JSON document) and its exit code."""
    try:
        code = body()
    except typer.Exit:
        raise
    except FixerError as exc:
        _fail(command, as_json, root, profile, exc)
    except OSError as exc:  # a host path the readers did not expect to fail: a conflict naming it
        _fail(command, as_json, root, profile, Conflict(f"{exc.filename or root}: {exc.strerror or exc}"))
    except Exception as exc:  # a bug: still one JSON document under --json
        if not as_json:
            raise
        import traceback

        traceback.print_exc()
        _fail(command, as_json, root, profile, FixerError(f"internal error (a bug): {type(exc).__name__}: {exc}"))
    raise typer.Exit(code)


def _fail(command: str, as_json: bool, root: str, profile: str | None, exc: FixerError) -> None:
    code = exc.exit_code
    if isinstance(exc, ExternalCommandFailed):
        code = STEP_CODES.get(command, code)
    if as_json:
        from fixer.render import dumps, failure

        typer.echo(dumps(failure(command, exc, profile=profile, root=root, exit_code=code,
                                 changed=isinstance(exc, (RollbackFailed, Interrupted)))))
    else:
        if exc.verify is not None:
            typer.echo(_verify_text(exc.verify))
        if exc.verify_after_rollback is not None:
            typer.echo("after rollback: " + _verify_text(exc.verify_after_rollback))
        typer.echo(f"vgpu-fix {command}: error: {exc.message}", err=True)
        for line in exc.details:
            typer.echo(f"  {line}", err=True)
    raise typer.Exit(int(code)) from None


def _show_plan(prof, real: str, as_json: bool, force: bool, out: Optional[str] = None,
               saved: Optional[dict] = None, plan_file: Optional[str] = None) -> int:
    """Plan `prof` on `real` and print it (exit 0/4/5); with `saved`, preview that saved plan as
    `apply --plan` would check it; with `out`, save it."""
    from fixer import core
    from fixer.render import Painter, plan_text, result

    the_plan = core.make_plan(prof, real, force=force)
    if saved is not None:
        core.check_saved(the_plan, saved, plan_file or "the saved plan")
    said = ""
    if out:
        said = f"\nplan saved to {out} ({core.save_plan(the_plan, prof, out)})"
    elif plan_file:
        said = f"\nthis is the saved plan {plan_file}, unchanged: `apply --plan` would apply it"
    code = ExitCode.CONFLICT if the_plan.conflicts else ExitCode.DRIFT if the_plan.pending else ExitCode.OK
    msg = {ExitCode.OK: "converged", ExitCode.DRIFT: f"{len(the_plan.pending)} change(s) pending",
           ExitCode.CONFLICT: f"{len(the_plan.conflicts)} conflict(s)"}[code]
    doc = result("plan", profile=prof.name, root=real, changed=bool(the_plan.pending),
                 failed=code == ExitCode.CONFLICT, msg=msg, plan=the_plan)
    _emit(as_json, doc, plan_text(the_plan, Painter()) + said)
    return int(code)


@app.command()
def plan(
    profile: str = ProfileOpt,
    root: str = RootOpt,
    sets: Optional[List[str]] = SetOpt,
    as_json: bool = JsonOpt,
    out: Optional[str] = typer.Option(None, "--out", help="Save the plan for `apply --plan FILE`."),
    force: bool = ForceOpt,
) -> None:
    """Show what apply would change. Exit 0: converged; 4: changes pending; 5: conflicts."""

    def body() -> int:
        real = _root(root)
        return _show_plan(_load(profile, real, sets), real, as_json, force, out)

    _run("plan", as_json, root, profile, body)


@app.command()
def apply(
    profile: Optional[str] = typer.Option(
        None, "--profile", "-p", help="Profile name or path to a YAML file (default h100-vgpu; not with --plan)."),
    root: str = RootOpt,
    sets: Optional[List[str]] = SetOpt,
    as_json: bool = JsonOpt,
    force: bool = ForceOpt,
    dry_run: bool = typer.Option(False, "--dry-run", help="Only plan (same output and exit codes as `plan`)."),
    plan_file: Optional[str] = typer.Option(None, "--plan", help="Apply exactly this saved plan; refused if stale."),
    restart: bool = RestartOpt,
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Verify the backend loads; roll back if not."),
    probe: Optional[bool] = ProbeOpt,
    lock_timeout: float = LockTimeoutOpt,
) -> None:
    """Change the host to match the profile, journaled and atomic; verify; roll back on failure."""

    def body() -> int:
        from fixer import core

        if plan_file and (profile is not None or sets):
            raise UsageError("--plan applies the profile recorded in the plan: drop --profile/--set")
        real = _root(root)
        wait = _seconds("--lock-timeout", lock_timeout)
        saved = None
        if plan_file:
            prof, saved = core.load_plan(plan_file)
        else:
            prof = _load(profile or DEFAULT_PROFILE, real, sets)
        if dry_run:
            return _show_plan(prof, real, as_json, force, saved=saved, plan_file=plan_file)
        from fixer.render import Painter, plan_text, result

        outcome = core.apply(prof, real, force=force, restart=restart, lock_timeout=wait,
                             saved_plan=saved, saved_from=plan_file or "", verify=verify, probe=probe)
        msg = (f"applied generation {outcome.generation}" if outcome.changed else "no changes: host already converged")
        if outcome.verify is not None and not outcome.verify.proven:
            msg += "; not verified: " + "; ".join(outcome.verify.not_run or ["see the verify report"])
        doc = result("apply", profile=prof.name, root=real, changed=outcome.changed, failed=False, msg=msg,
                     plan=outcome.plan, generation=outcome.generation, verify=outcome.verify,
                     messages=outcome.messages + outcome.post_actions)
        lines = [plan_text(outcome.plan, Painter(), show_noops=False)] if outcome.changed else []
        lines += outcome.messages + outcome.post_actions + [msg]
        if outcome.verify is not None:
            lines.append(_verify_text(outcome.verify))
        _emit(as_json, doc, "\n".join(lines))
        return 0

    _run("apply", as_json, root, profile or DEFAULT_PROFILE, body)


def _verify_text(report) -> str:
    from fixer.render import verify_text

    return verify_text(report)


@app.command()
def rollback(
    root: str = RootOpt,
    to: Optional[int] = typer.Option(None, "--to", help="Roll back every generation down to and including N."),
    force: bool = ForceOpt,
    restart: bool = RestartOpt,
    as_json: bool = JsonOpt,
    lock_timeout: float = LockTimeoutOpt,
) -> None:
    """Restore the newest applied generation byte for byte (or down to --to N)."""

    def body() -> int:
        from fixer import core
        from fixer.render import result

        real = _root(root)
        wait = _seconds("--lock-timeout", lock_timeout)
        outcome = core.rollback(real, to=to, force=force, restart=restart, lock_timeout=wait)
        msg = f"rolled back to before generation {outcome.generation}" if outcome.generation else "recovered"
        doc = result("rollback", profile=None, root=real, changed=True, failed=False, msg=msg,
                     generation=outcome.generation, restored=outcome.restored, messages=outcome.messages)
        _emit(as_json, doc, "\n".join(outcome.messages + [f"restored {p}" for p in outcome.restored] + [msg]))
        return 0

    _run("rollback", as_json, root, None, body)


@app.command()
def history(root: str = RootOpt, as_json: bool = JsonOpt) -> None:
    """List generations: time, profile, status, user, number of changes."""

    def body() -> int:
        from fixer.apply.journal import Journal
        from fixer.render import history_text, result

        real = _root(root)
        intact, damaged = Journal(real).scan()
        rows = sorted([g.summary() for g in intact] + [d.summary() for d in damaged], key=lambda r: r["generation"])
        msg = f"{len(rows)} generation(s)" + (f", {len(damaged)} damaged" if damaged else "")
        doc = result("history", profile=None, root=real, changed=False, failed=False, msg=msg, generations=rows)
        _emit(as_json, doc, history_text(rows))
        return 0

    _run("history", as_json, root, None, body)


@profiles_app.command("list")
def profiles_list(root: str = RootOpt, as_json: bool = JsonOpt) -> None:
    """Profiles found by name: shipped ones, then ROOT/etc/vgpu-fix/profiles."""

    def body() -> int:
        from fixer import profiles
        from fixer.render import result

        real = _root(root)
        rows = profiles.list_profiles(real)
        doc = result("profiles", profile=None, root=real, changed=False, failed=False, msg=f"{len(rows)} profile(s)",
                     profiles=[{"name": n, "origin": o, "path": p} for n, o, p in rows])
        _emit(as_json, doc, "\n".join(f"{name:<24} {origin:<8} {path}" for name, origin, path in rows))
        return 0

    _run("profiles", as_json, root, None, body)


@profiles_app.command("show")
def profiles_show(
    name: str = typer.Argument(..., help="Profile name or path."),
    root: str = RootOpt,
    sets: Optional[List[str]] = SetOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Print a profile resolved and validated."""

    def body() -> int:
        from fixer.profiles import dump_yaml
        from fixer.render import result

        real = _root(root)
        loaded = _load(name, real, sets)
        data = loaded.model_dump(mode="json")
        doc = result("profiles", profile=loaded.name, root=real, changed=False, failed=False,
                     msg=f"profile {loaded.name}", profile_data=data)
        _emit(as_json, doc, dump_yaml(data))
        return 0

    _run("profiles", as_json, root, name, body)


@app.command("verify")
def verify_cmd(
    profile: str = ProfileOpt,
    root: str = RootOpt,
    sets: Optional[List[str]] = SetOpt,
    as_json: bool = JsonOpt,
    service: bool = typer.Option(False, "--service", help="Also restart the unit and watch its journal (live root)."),
    timeout: Optional[float] = typer.Option(
        None, "--timeout", help="Seconds per probe (default: the profile's); with --service also the journal wait (default 120)."),
    model: Optional[str] = typer.Option(
        None, "--model", help="With --service: load this model through Ollama's API and require size_vram > 0 in /api/ps."),
    probe: Optional[bool] = ProbeOpt,
) -> None:
    """Prove the GPU backend loads as Ollama's runner would load it. Exit 0: loads; 9: it does not."""

    def body() -> int:
        from fixer.render import result
        from fixer.verify import layers as verifier

        real = _root(root)
        wait = _seconds("--timeout", timeout)
        if model is not None and not service:
            raise InvalidInput("--model loads the model in the running service: give --service too")
        prof = _load(profile, real, sets)
        report = verifier.verify(real, prof, timeout=wait, probe=probe)
        if service:
            from fixer.verify.model_load import check_after_service

            progress = None if as_json else (lambda line: typer.echo(line, err=True))
            serviced = verifier.check_service(real, prof, timeout=wait or 120.0, echo=progress)
            report.checks += [serviced, check_after_service(serviced, report.env, model)]
        doc = report.to_dict()
        msg = (f"{report.backend} does not load: {report.cause}" if not report.ok else
               f"{report.backend} loads" if report.proven else
               f"static checks pass; {report.backend} NOT proven to load: {'; '.join(report.not_run)}")
        _emit(as_json, result("verify", profile=prof.name, root=real, changed=False, failed=not report.ok,
                              msg=msg, verify=doc), _verify_text(doc))
        return int(ExitCode.OK if report.ok else ExitCode.BACKEND_NOT_LOADING)

    _run("verify", as_json, root, profile, body)


@app.command()
def doctor(
    root: str = RootOpt,
    log: Optional[str] = typer.Option(None, "--log", help="Ollama log: journal text, `journalctl -o json`, or Ollama's own."),
    journal: bool = typer.Option(False, "--journal", help="Read `journalctl -u ollama -o json` (live root only)."),
    profile: Optional[str] = typer.Option(None, "--profile", "-p", help="Judge against this profile (unit, paths)."),
    sets: Optional[List[str]] = SetOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Explain why Ollama runs on the CPU, from host state and its log; changes nothing."""

    def body() -> int:
        from fixer.doctor import verdict as doctors
        from fixer.render import doctor_text, dumps

        real = _root(root)
        prof = _load(profile, real, sets) if profile else None
        text = None
        if log and journal:
            raise InvalidInput("give either --log FILE or --journal, not both")
        if log:
            from fixer.facts.paths import MAX_READ, read_capped

            try:  # the newest MAX_READ bytes of a regular file; a device or pipe that never ends is refused
                text = read_capped(log, limit=MAX_READ, tail=True).decode("utf-8", errors="replace")
            except OSError as exc:
                raise InvalidInput(f"--log {log}: cannot read: {exc.strerror}") from None
            except Conflict as exc:
                raise InvalidInput(f"--log {exc.message}") from None
        elif journal:
            unit = prof.service.unit if prof else "ollama.service"
            text = doctors.journal_text(real, unit, prof.service.scope if prof else "system")
        diagnosis = doctors.diagnose(real, text, prof)
        typer.echo(dumps(diagnosis.to_dict()) if as_json else doctor_text(diagnosis))
        return int(ExitCode.OK if diagnosis.ok else ExitCode.PROBLEM_FOUND)

    _run("doctor", as_json, root, profile, body)


@app.command()
def schema() -> None:
    """Print the profile JSON Schema."""
    import json

    from fixer.model.profile import Profile

    typer.echo(json.dumps(Profile.model_json_schema(), indent=2))


@app.command()
def demo(keep: bool = typer.Option(False, "--keep", help="Keep the throw-away host for inspection.")) -> None:
    """Build a broken throw-away host (the seed's situation), plan, apply, re-plan, roll back."""

    def body() -> int:
        from fixer.demo import run_demo

        return run_demo(keep=keep, echo=typer.echo)

    _run("demo", False, "(temporary)", "h100-vgpu", body)


def main() -> None:
    """Run the app. SIGINT/SIGTERM outside a transaction stop at once, with a message (typer would
    swallow a KeyboardInterrupt); usage errors and early interrupts also speak JSON under --json."""
    import signal

    try:
        from typer._click.exceptions import ClickException
        from typer.exceptions import Abort
    except ImportError:  # typer before 0.24 uses click itself
        from click.exceptions import Abort, ClickException

    def stop(signum: int, frame) -> None:
        raise Interrupted(f"interrupted by {signal.Signals(signum).name}; nothing was changed", signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)
    as_json = "--json" in sys.argv[1:]
    try:
        code = app(standalone_mode=False)
    except FixerError as exc:  # raised before a command body ran
        code = _outside(exc.message, exc.exit_code, as_json)
    except Abort:
        code = _outside("aborted", ExitCode.INTERRUPTED, as_json)
    except ClickException as exc:
        if as_json:
            code = _outside(exc.format_message(), exc.exit_code, as_json)
        else:
            exc.show()
            code = exc.exit_code
    sys.exit(code if isinstance(code, int) else 0)


def _outside(msg: str, code: int, as_json: bool) -> int:
    """An exit before any command body ran (usage error, early interrupt): one line, or one JSON document."""
    if as_json:
        from fixer.render import dumps

        command = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
        typer.echo(dumps({"format_version": 1, "command": command, "profile": None, "root": None, "changed": False,
                          "failed": True, "msg": msg, "exit_code": int(code)}))
    else:
        typer.echo(f"vgpu-fix: {msg}", err=True)
    return int(code)
