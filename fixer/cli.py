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
    Conflict,
    ExitCode,
    FixerError,
    Interrupted,
    InvalidInput,
    NotConfirmed,
    RollbackFailed,
    VERIFY_EXIT,
    UsageError,
    exit_code_of,
    host_conflict,
)

HELP = {"help_option_names": ["-h", "--help"]}
app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: flags shown as flags, values as their metavar
    context_settings=HELP,
    help="Make Ollama load its CUDA backend on virtual-GPU hosts: plan, apply, verify, roll back.",
)
profiles_app = typer.Typer(help="List and show profiles (resolved: extends merged, variables substituted).",
                           no_args_is_help=True)
app.add_typer(profiles_app, name="profiles")
history_app = typer.Typer(help="List generations, or show what one changed (`history show N`).")
app.add_typer(history_app, name="history")

PROFILE_HELP = ("Profile name, YAML file, or - to read the profile from stdin (default: the profile and --set "
                "variables of the newest applied generation, else h100-vgpu).")
ProfileOpt = typer.Option(None, "--profile", "-p", metavar="NAME|FILE|-", help=PROFILE_HELP)
RootOpt = typer.Option("/", "--root", metavar="DIR", help="Directory that stands for / (default: the live host).")
SetOpt = typer.Option(None, "--set", metavar="NAME=VALUE", help="Profile variable override (repeatable).")
JsonOpt = typer.Option(False, "--json", help="Print the stable JSON document instead of text.")
ForceOpt = typer.Option(False, "--force", help="Replace paths of the wrong type (a file where a link belongs), journaled first.")
RollbackForceOpt = typer.Option(False, "--force", help="Roll back even though managed paths were edited since the apply.")
RestartOpt = typer.Option(True, "--restart/--no-restart", help="Restart the unit after changes on a live root.")
ProbeOpt = typer.Option(
    None, "--probe/--no-probe",
    help="Execute the root's files (ollama, libggml-*.so, preloads) to prove the backend loads. Default: on for "
         "the live root /, off for any other root (untrusted: then only as an unprivileged user in namespaces).")
ProbeUserOpt = typer.Option(
    "nobody", "--probe-user", metavar="ACCOUNT",
    help="Off the live root, the local account --probe runs the root's files as (never root). The unit's "
         "User= in an image names an account of this machine: it is reported, never adopted.")
LockTimeoutOpt = typer.Option(0.0, "--lock-timeout", metavar="SECONDS",
                              help="Seconds to wait for another run's lock (default: fail at once).")
YesOpt = typer.Option(False, "--yes", "-y", help="Change the live root without asking (needed without a terminal).")
VerifyOpt = typer.Option(True, "--verify/--no-verify", help="Verify the backend loads; roll back if not.")
LevelOpt = typer.Option(
    None, "--level", metavar="LEVEL",
    help="Proof level to require: files, modeled, service or model (default: service where the run restarts the "
         "unit on the live root, model with --model, else modeled). Not reaching it exits 12.")
ServiceCheckOpt = typer.Option(
    True, "--service-check/--no-service-check",
    help="After restarting the unit on the live root, judge by the restarted service's own discovery lines "
         "(the service level); on by default.")
ServiceTimeoutOpt = typer.Option(
    None, "--service-timeout", metavar="SECONDS",
    help="Seconds to wait for the restarted service's discovery result (default: the budget Ollama's own "
         "discovery has on this host, plus start-up).")
ModelOpt = typer.Option(None, "--model", metavar="NAME",
                        help="Also load this model through the service's API and require size_vram > 0 (the model level).")


def _version(value: bool) -> None:
    if value:
        from fixer import __version__

        typer.echo(f"vgpu-fix {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(version: bool = typer.Option(False, "--version", "-V", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Make Ollama load its CUDA backend on virtual-GPU hosts: plan, apply, verify, roll back."""


def _root(root: str) -> str:
    from fixer.core import resolve_root

    return resolve_root(root)


def _level(value: Optional[str]):
    if value is None:
        return None
    from fixer.model.proof import parse_level

    try:
        return parse_level(value)
    except ValueError as exc:
        raise InvalidInput(f"--level {exc}") from None


def _seconds(name: str, value: Optional[float]) -> Optional[float]:
    from fixer.core import seconds

    return seconds(name, value)


def _load(profile: Optional[str], root: str, sets: Optional[List[str]], say_source: bool = True):
    """The profile named (or piped in with -), else the applied generation's, else the default; a site
    profile of the root that shadows a shipped one is said on stderr (`say_source`: unless the command
    prints the plan, whose header says it)."""
    from fixer import core, profiles

    text = None
    if profile == profiles.STDIN:
        if sys.stdin.isatty():
            raise InvalidInput("--profile -: reads the profile from stdin, which is a terminal; pipe a profile in")
        from fixer.facts.reading import read_stdin

        try:
            text = read_stdin("--profile -", profiles.MAX_PROFILE_BYTES)
        except OSError as exc:
            raise InvalidInput(f"--profile - (stdin): {exc.strerror}") from None
    loaded = core.profile_for(root, profile, profiles.parse_overrides(sets or []), text=text)
    source = _source(_ref(profile, loaded), root) if say_source else ""
    if source:
        typer.echo(f"note: profile from {source}", err=True)
    return loaded


def _ref(profile: Optional[str], loaded) -> str:
    """The profile as named: on the command line, else by the applied generation it came from."""
    return profile or (loaded.origin or {}).get("ref") or ""


def _confirm(root: str, yes: bool, shown: str, question: str, verb: str) -> bool:
    """On the live root, show what will change and ask (stdin a terminal), or refuse without --yes.
    True when the operator was asked (and agreed)."""
    if root != "/" or yes:
        return False
    if not sys.stdin.isatty():
        raise NotConfirmed(f"refusing to {verb} the live root / without confirmation: stdin is not a terminal; "
                           f"pass --yes (-y) to {verb} non-interactively")
    typer.echo(shown, err=True)
    if not typer.confirm(question, default=False, err=True):
        raise NotConfirmed("not confirmed; nothing was changed")
    return True


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
        _fail(command, as_json, root, profile, host_conflict(exc, root))
    except Exception as exc:  # a bug: still one JSON document under --json
        if not as_json:
            raise
        import traceback

        traceback.print_exc()
        _fail(command, as_json, root, profile, FixerError(f"internal error (a bug): {type(exc).__name__}: {exc}"))
    raise typer.Exit(code)


def _fail(command: str, as_json: bool, root: str, profile: str | None, exc: FixerError) -> None:
    code = exit_code_of(command, exc)
    if as_json:
        from fixer.render import dumps, failure

        typer.echo(dumps(failure(command, exc, profile=profile, root=root,
                                 changed=isinstance(exc, (RollbackFailed, Interrupted)))))
    elif exc.exit_code == ExitCode.VERIFY_FAILED_ROLLED_BACK and root != "/" and exc.verify is not None:
        typer.echo(f"vgpu-fix {command}: error: {_failed_on_copy(exc, root)}", err=True)
    else:
        if exc.verify is not None:
            typer.echo(_verify_text(exc.verify))
        if exc.verify_after_rollback is not None:
            typer.echo("after rollback: " + _verify_text(exc.verify_after_rollback))
        typer.echo(f"vgpu-fix {command}: error: {exc.message}", err=True)
        for line in exc.details:
            typer.echo(f"  {line}", err=True)
    raise typer.Exit(int(code)) from None


def _failed_on_copy(exc: FixerError, root: str) -> str:
    """One line for a copy of a host whose backend failed verify: what, and what to do."""
    report = exc.verify
    failed = next((c for c in report.checks if c.status == "fail"), None)
    what = f"{failed.name} check: {report.cause or failed.summary}" if failed else "no check passed"
    return (f"verify failed: {report.backend or 'the backend'} does not load under {root} ({what}); "
            f"generation {exc.generation} was rolled back. To change a copy of a host anyway use "
            f"--no-verify; `vgpu-fix verify --root {root}` shows the full report and `vgpu-fix verify --help` "
            "how to probe a non-live root")


def _progress(as_json: bool):
    from fixer.progress import for_terminal

    return for_terminal(as_json)


def _show_plan(prof, real: str, as_json: bool, force: bool, out: Optional[str] = None,
               saved: Optional[dict] = None, plan_file: Optional[str] = None, source: str = "",
               command: str = "plan", extra: Optional[dict] = None, preface: str = "") -> int:
    """Plan `prof` on `real` and print it (exit 0/4/5); with `saved`, preview that saved plan as
    `apply --plan` would check it; with `out`, save it."""
    from fixer import core
    from fixer.render import Painter, plan_text, result

    the_plan = core.make_plan(prof, real, force=force, source=source)
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
    doc = result(command, profile=prof.name, root=real, changed=bool(the_plan.pending),
                 failed=code == ExitCode.CONFLICT, msg=msg, plan=the_plan, **(extra or {}))
    _emit(as_json, doc, preface + plan_text(the_plan, Painter()) + said)
    return int(code)


@app.command()
def plan(
    profile: Optional[str] = ProfileOpt,
    root: str = RootOpt,
    sets: Optional[List[str]] = SetOpt,
    as_json: bool = JsonOpt,
    out: Optional[str] = typer.Option(None, "--out", metavar="FILE", help="Save the plan for `apply --plan FILE`."),
    force: bool = ForceOpt,
) -> None:
    """Show what apply would change. Exit 0: converged; 4: changes pending; 5: conflicts."""

    def body() -> int:
        real = _root(root)
        prof = _load(profile, real, sets, say_source=False)
        return _show_plan(prof, real, as_json, force, out, source=_source(_ref(profile, prof), real))

    _run("plan", as_json, root, profile, body)


def _source(profile: str | None, root: str) -> str:
    from fixer import profiles

    return profiles.shadowing(profile, root) if profile else ""


@app.command()
def apply(
    profile: Optional[str] = typer.Option(None, "--profile", "-p", metavar="NAME|FILE|-",
                                          help=PROFILE_HELP.replace(").", "; not with --plan).")),
    root: str = RootOpt,
    sets: Optional[List[str]] = SetOpt,
    as_json: bool = JsonOpt,
    force: bool = ForceOpt,
    dry_run: bool = typer.Option(False, "--dry-run", help="Only plan (same output and exit codes as `plan`)."),
    plan_file: Optional[str] = typer.Option(None, "--plan", metavar="FILE",
                                            help="Apply exactly this saved plan; refused if stale."),
    restart: bool = RestartOpt,
    verify: bool = VerifyOpt,
    probe: Optional[bool] = ProbeOpt,
    probe_user: str = ProbeUserOpt,
    service_check: bool = ServiceCheckOpt,
    service_timeout: Optional[float] = ServiceTimeoutOpt,
    model: Optional[str] = ModelOpt,
    level: Optional[str] = LevelOpt,
    lock_timeout: float = LockTimeoutOpt,
    yes: bool = YesOpt,
) -> None:
    """Change the host to match the profile, journaled and atomic; verify; roll back on failure.

    Verify judges by proof level (files, modeled, service, model; see README). Where apply restarts the
    unit on the live root, the restarted service's own discovery result is the verdict: the CPU, a crash
    loop or no result in time rolls back (exit 6). A copy of a host (--root DIR) without --probe can
    reach only `files`: refused up front (exit 12, nothing changed) unless --level files or --no-verify.
    Exit 0: applied and the level asked reached (or converged); 12: applied, level asked not reached.
    On the live root it shows the plan and asks first (stdin a terminal); --yes skips the question and
    is required without a terminal (exit 11 otherwise)."""

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
            prof = _load(profile, real, sets, say_source=not dry_run)
        source = _source(_ref(profile, prof), real) if not plan_file else ""
        if dry_run:
            return _show_plan(prof, real, as_json, force, saved=saved, plan_file=plan_file, source=source)
        proof = {"service_check": service_check, "model": model, "level": _level(level),
                 "service_timeout": _seconds("--service-timeout", service_timeout), "probe_user": probe_user}
        return _apply_profile("apply", prof, real, source, saved=saved, saved_from=plan_file or "", force=force,
                              restart=restart, verify=verify, probe=probe, lock_timeout=wait, yes=yes, as_json=as_json,
                              proof=proof)

    _run("apply", as_json, root, profile, body)


def _apply_profile(command: str, prof, real: str, source: str, *, saved, saved_from: str, force: bool,
                   restart: bool, verify: bool, probe, lock_timeout: float, yes: bool, as_json: bool,
                   proof: dict | None = None, extra: dict | None = None, preface: str = "",
                   chosen: dict | None = None) -> int:
    """Apply `prof` to `real`: on the live root show the plan and ask first (or --yes); then apply
    exactly what was shown, with progress on a terminal, and render the outcome."""
    from fixer import core
    from fixer.render import Painter, plan_text, proof_line, result

    proof = proof or {}
    asked = False
    if preface and not as_json:
        typer.echo(preface)
    if real == "/" and not yes:
        shown = core.make_plan(prof, real, force=force, source=source)
        if saved is not None:
            core.check_saved(shown, saved, saved_from or "the saved plan")
        if shown.pending and not shown.conflicts:
            asked = _confirm(real, yes, plan_text(shown, Painter(enabled=False), show_noops=False),
                             f"Apply {len(shown.pending)} change(s) to the live host?", "apply to")
            if saved is None:  # apply exactly what was shown, or refuse it as stale
                saved, saved_from = shown.to_dict(), "the plan shown"
    progress = _progress(as_json)
    outcome = core.apply(prof, real, force=force, restart=restart, lock_timeout=lock_timeout, saved_plan=saved,
                         saved_from=saved_from, verify=verify, probe=probe, progress=progress, chosen=chosen,
                         **proof)
    msg = (f"applied generation {outcome.generation}" if outcome.changed else "no changes: host already converged")
    report = outcome.verify
    if report is not None:
        msg += "; verify: " + proof_line(report.to_dict())
    elif outcome.changed and not verify:
        msg += "; verify: not run (--no-verify)"
    unproven = report is not None and not report.ok
    doc = result(command, profile=prof.name, root=real, changed=outcome.changed, failed=unproven, msg=msg,
                 plan=outcome.plan, generation=outcome.generation, verify=outcome.verify,
                 messages=outcome.messages + outcome.post_actions, **(extra or {}))
    lines = [plan_text(outcome.plan, Painter(), show_noops=False)] if outcome.changed and not asked else []
    lines += outcome.messages + outcome.post_actions + [msg]
    if outcome.verify is not None:
        lines.append(_verify_text(outcome.verify))
    _emit(as_json, doc, "\n".join(lines))
    return int(ExitCode.NOT_PROVEN if unproven else ExitCode.OK)


@app.command()
def fix(
    root: str = RootOpt,
    sets: Optional[List[str]] = typer.Option(None, "--set", metavar="NAME=VALUE",
                                             help="Override a chosen variable (repeatable); the operator's value wins."),
    as_json: bool = JsonOpt,
    dry_run: bool = typer.Option(False, "--dry-run", help="Stop after the evidence, the choices and the plan."),
    probe: Optional[bool] = ProbeOpt,
    probe_user: str = ProbeUserOpt,
    force: bool = ForceOpt,
    restart: bool = RestartOpt,
    verify: bool = VerifyOpt,
    service_check: bool = ServiceCheckOpt,
    service_timeout: Optional[float] = ServiceTimeoutOpt,
    model: Optional[str] = ModelOpt,
    level: Optional[str] = LevelOpt,
    lock_timeout: float = LockTimeoutOpt,
    yes: bool = YesOpt,
) -> None:
    """Choose the profile and its variables from the host's own evidence, then apply and prove it.

    Reads what doctor and verify read (the Ollama install, a real NVIDIA driver, which files export the
    CUDA driver, runtime and NVML entry points, the versions they report, the CUDA folders shipped, the
    para-virtual device's PCI ids, the unit's settings), shows each choice with the evidence line it came
    from, then the plan; asks on the live root unless --yes; applies like `apply` (journaled, verified,
    rolled back on failure; on the live root the restarted service decides). Exit 13 (nothing changed)
    when no shipped profile can fix the host, naming why; otherwise `apply`'s codes (`plan`'s with --dry-run)."""

    def body() -> int:
        from fixer import core, profiles
        from fixer.render import fix_text, result

        real = _root(root)
        wait = _seconds("--lock-timeout", lock_timeout)
        found, decision = core.fix_choice(real, probe, overrides=profiles.parse_overrides(sets or []),
                                          probe_user=probe_user)
        extra = {"evidence": found.to_dict(), "choices": decision.to_dict()}
        preface = fix_text(extra["evidence"], extra["choices"])
        if decision.profile is None:
            doc = result("fix", profile=None, root=real, changed=False, failed=True,
                         msg="no shipped profile can fix this host: " + "; ".join(decision.cannot_fix), **extra)
            _emit(as_json, {**doc, "exit_code": int(ExitCode.CANNOT_FIX)}, preface)
            return int(ExitCode.CANNOT_FIX)
        prof = core.fix_profile(real, decision)
        if dry_run:
            return _show_plan(prof, real, as_json, force, command="fix", extra=extra, preface=preface + "\n")
        proof = {"service_check": service_check, "model": model, "level": _level(level),
                 "service_timeout": _seconds("--service-timeout", service_timeout), "probe_user": probe_user}
        try:
            return _apply_profile("fix", prof, real, "", saved=None, saved_from="", force=force, restart=restart,
                                  verify=verify, probe=probe, lock_timeout=wait, yes=yes, as_json=as_json, proof=proof,
                                  extra=extra, preface=preface, chosen=decision.record())
        except FixerError as exc:  # a refusal or a rollback still shows what was chosen, and from what
            exc.facts.update(extra)
            raise

    _run("fix", as_json, root, None, body)


def _verify_text(report) -> str:
    from fixer.render import verify_text

    return verify_text(report)


@app.command()
def rollback(
    root: str = RootOpt,
    to: Optional[int] = typer.Option(None, "--to", metavar="N", help="Roll back every generation down to and including N."),
    force: bool = RollbackForceOpt,
    restart: bool = RestartOpt,
    as_json: bool = JsonOpt,
    lock_timeout: float = LockTimeoutOpt,
    dry_run: bool = typer.Option(False, "--dry-run", help="Only show what would be restored or removed, as diffs."),
    service_check: bool = ServiceCheckOpt,
    service_timeout: Optional[float] = ServiceTimeoutOpt,
    yes: bool = YesOpt,
) -> None:
    """Restore the newest applied generation byte for byte (or down to --to N); names what it removes.

    On the live root it shows what it would restore and asks first (see `apply`)."""

    def body() -> int:
        from fixer import core
        from fixer.render import Painter, plan_text, result

        real = _root(root)
        wait = _seconds("--lock-timeout", lock_timeout)
        # Nothing to roll back is a success that changes nothing: no preview, no question; the rollback
        # itself still runs (under the lock it finishes a journal save a crash cut short) and says so.
        nothing = core.nothing_to_roll_back(real, to)
        if nothing and dry_run:
            _emit(as_json, result("rollback", profile=None, root=real, changed=False, failed=False, msg=nothing,
                                  generation=None, restored=[], removed=[], messages=[]), nothing)
            return 0
        if not nothing and (dry_run or (real == "/" and not yes)):
            preview = core.rollback_dry_run(real, to)
            text = plan_text(preview, Painter(enabled=False if not dry_run else None)).replace(
                "Plan for profile", "Rollback of profile", 1)
            if dry_run:
                doc = result("rollback", profile=preview.profile, root=real, changed=bool(preview.pending),
                             failed=False, msg=f"dry run: {len(preview.pending)} path(s) would change", plan=preview)
                _emit(as_json, doc, text)
                return 0
            _confirm(real, yes, text, f"Roll back {len(preview.pending)} path(s) on the live host?", "roll back")
        outcome = core.rollback(real, to=to, force=force, restart=restart, lock_timeout=wait,
                                progress=_progress(as_json), service_check=service_check,
                                service_timeout=_seconds("--service-timeout", service_timeout))
        msg = (f"rolled back to before generation {outcome.generation}" if outcome.generation else
               "recovered" if outcome.changed else outcome.messages.pop())  # nothing to roll back
        if outcome.verify is not None:
            from fixer.render import proof_line

            msg += "; the restored service: " + proof_line(outcome.verify.to_dict())
        doc = result("rollback", profile=None, root=real, changed=outcome.changed, failed=False, msg=msg,
                     generation=outcome.generation, restored=outcome.restored, removed=outcome.removed,
                     messages=outcome.messages, verify=outcome.verify)
        removed = set(outcome.removed)
        done = [f"removed {p}" if p in removed else f"restored {p}" for p in outcome.restored]
        _emit(as_json, doc, "\n".join(outcome.messages + done + [msg]))
        return 0

    _run("rollback", as_json, root, None, body)


@history_app.callback(invoke_without_command=True)
def history(ctx: typer.Context, root: str = RootOpt, as_json: bool = JsonOpt) -> None:
    """List generations: time, profile, status, user, number of changes."""
    if ctx.invoked_subcommand is not None:
        return

    def body() -> int:
        from fixer.core import journal_of
        from fixer.render import history_text, result

        real = _root(root)
        journal = journal_of(real)
        intact, damaged = journal.scan() if journal is not None else ([], [])
        rows = sorted([g.summary() for g in intact] + [d.summary() for d in damaged], key=lambda r: r["generation"])
        msg = f"{len(rows)} generation(s)" + (f", {len(damaged)} damaged" if damaged else "")
        doc = result("history", profile=None, root=real, changed=False, failed=False, msg=msg, generations=rows)
        _emit(as_json, doc, history_text(rows))
        return 0

    _run("history", as_json, root, None, body)


@history_app.command("show")
def history_show(
    number: int = typer.Argument(..., metavar="N", help="Generation number (see `vgpu-fix history`)."),
    root: str = RootOpt,
    as_json: bool = JsonOpt,
) -> None:
    """What generation N changed, with which profile, and what verify said after it."""

    def body() -> int:
        from fixer import core
        from fixer.render import Painter, dumps, generation_text, result

        real = _root(root)
        detail = core.generation_detail(real, number)
        if as_json:
            doc = result("history", profile=detail["profile"], root=real, changed=False, failed=False,
                         msg=f"generation {number}: {detail['status']}", generation=number, verify=detail["verify"])
            typer.echo(dumps({**doc, **detail}))
        else:
            typer.echo(generation_text(detail, Painter()))
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
    profile: Optional[str] = ProfileOpt,
    root: str = RootOpt,
    sets: Optional[List[str]] = SetOpt,
    as_json: bool = JsonOpt,
    service: bool = typer.Option(
        False, "--service", help="Also restart the unit and judge by its own discovery lines (live root: the service level)."),
    timeout: Optional[float] = typer.Option(
        None, "--timeout", metavar="SECONDS",
        help="Seconds for each of vgpu-fix's own probes (default: Ollama's budget for the stage the probe stands "
             "for); Ollama's discovery passes always get Ollama's budgets."),
    service_timeout: Optional[float] = ServiceTimeoutOpt,
    model: Optional[str] = typer.Option(
        None, "--model", metavar="NAME",
        help="With --service: load this model through Ollama's API and require size_vram > 0 in /api/ps (the model level)."),
    probe: Optional[bool] = ProbeOpt,
    probe_user: str = ProbeUserOpt,
    level: Optional[str] = LevelOpt,
) -> None:
    """Prove the GPU backend loads the way the installed Ollama loads it (v0.13-v0.24: `ollama runner
    --ollama-engine`; v0.30+: the bundled llama-server and Ollama's filters), up to a proof level:
    files (ELF and loader resolution, nothing executed), modeled (the root's programs run sandboxed as
    Ollama runs them), service (--service: the restarted unit's own discovery lines), model (--model).

    Exit 0: the level asked was reached and passed; 9: a check failed (the backend does not load, or the
    service fell back to the CPU); 12: nothing failed but the level asked was not reached (for example a
    copy of a host without --probe): one line names what did not run and the flag that runs it."""

    def body() -> int:
        from fixer import core
        from fixer.render import proof_line, result
        from fixer.verify import layers as verifier

        real = _root(root)
        wait = _seconds("--timeout", timeout)
        asked = _level(level)
        if model is not None and not service:
            raise InvalidInput("--model loads the model in the running service: give --service too")
        prof = _load(profile, real, sets)
        progress = _progress(as_json)
        report = verifier.verify(real, prof, timeout=wait, probe=probe, progress=progress, probe_user=probe_user)
        if service:
            verifier.add_service_level(report, real, prof, timeout=_seconds("--service-timeout", service_timeout),
                                       model=model, progress=progress)
        report.asked = asked or verifier.default_asked(report, service=service, model=model)
        doc = report.to_dict()
        recorded = core.record_verify(real, report)
        _emit(as_json, result("verify", profile=prof.name, root=real, changed=False, failed=not report.ok,
                              msg=proof_line(doc), verify=doc), _verify_text(doc))
        if recorded and not as_json:
            typer.echo(f"note: {recorded}", err=True)
        return int(VERIFY_EXIT[report.outcome.value])

    _run("verify", as_json, root, profile, body)


@app.command()
def doctor(
    root: str = RootOpt,
    log: Optional[str] = typer.Option(None, "--log", metavar="FILE",
                                      help="Ollama log: journalctl (short, -o cat, -o json), Ollama's own lines, docker logs "
                                           "[--timestamps], docker compose logs, kubectl logs [--timestamps] [--prefix]; "
                                           "a file or a pipe."),
    journal: Optional[bool] = typer.Option(
        None, "--journal/--no-journal",
        help="Read the unit's journal (default on the live root when no --log is given)."),
    profile: Optional[str] = typer.Option(None, "--profile", "-p", metavar="NAME|FILE|-",
                                          help="Judge against this profile (unit, paths)."),
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
            from fixer.facts.reading import read_file

            try:  # the newest MAX_READ bytes of a regular file, or a pipe up to the cap; a device is refused
                text = read_file(log, tail=True, pipes=True).decode("utf-8", errors="replace")
            except OSError as exc:
                raise InvalidInput(f"--log {log}: {exc.strerror}") from None
        elif journal or (journal is None and real == "/"):
            unit = prof.service.unit if prof else "ollama.service"
            try:
                text = doctors.journal_text(real, unit, prof.service.scope if prof else "system")
            except FixerError as exc:
                if journal:  # asked for explicitly: its failure is the answer
                    raise
                typer.echo(f"note: judged from host state only; the journal could not be read ({exc.message})",
                           err=True)
        diagnosis = doctors.diagnose(real, text, prof)
        typer.echo(dumps(diagnosis.to_dict()) if as_json else doctor_text(diagnosis))
        return int(ExitCode.OK if diagnosis.ok else ExitCode.PROBLEM_FOUND)

    _run("doctor", as_json, root, profile, body)


@app.command()
def status(
    profile: Optional[str] = ProfileOpt,
    root: str = RootOpt,
    sets: Optional[List[str]] = SetOpt,
    as_json: bool = JsonOpt,
    prometheus: Optional[str] = typer.Option(
        None, "--prometheus", metavar="FILE",
        help="Also write node-exporter textfile metrics to FILE (atomically)."),
) -> None:
    """One read-only summary: Ollama version and generation, applied profile, drift, last verify, watch."""

    def body() -> int:
        from fixer import core
        from fixer.render import result, status_text

        real = _root(root)
        prof = _load(profile, real, sets)
        summary = core.status(real, prof)
        doc = result("status", profile=prof.name, root=real, changed=False, failed=False,
                     msg=_status_msg(summary), **summary)
        if prometheus:
            core.write_textfile(prometheus, core.prometheus_text(doc))
        _emit(as_json, doc, status_text(doc))
        return 0

    _run("status", as_json, root, profile, body)


def _status_msg(summary: dict) -> str:
    from fixer.render import proof_line

    verify = summary["last_verify"]
    verdict = "never verified" if verify is None else proof_line(verify)
    drift = summary["drift"]["pending"]
    return f"{verdict}; " + (f"{drift} change(s) pending" if drift else "converged")


watch_app = typer.Typer(help="Upgrade survival: re-verify the host when Ollama's files change (systemd .path unit).",
                        no_args_is_help=True)
app.add_typer(watch_app, name="watch")


def _with_watch(prof, enabled: bool):
    return prof.model_copy(update={"watch": prof.watch.model_copy(update={"enabled": enabled})})


def _watch_switch(enabled: bool, doc: str):
    """`watch enable` / `watch disable`: apply the profile with its `watch` section switched on or off."""
    command = "watch " + ("enable" if enabled else "disable")

    def switch(
        profile: Optional[str] = ProfileOpt,
        root: str = RootOpt,
        sets: Optional[List[str]] = SetOpt,
        as_json: bool = JsonOpt,
        verify: bool = VerifyOpt,
        probe: Optional[bool] = ProbeOpt,
        probe_user: str = ProbeUserOpt,
        lock_timeout: float = LockTimeoutOpt,
        yes: bool = YesOpt,
    ) -> None:
        def body() -> int:
            real = _root(root)
            wait = _seconds("--lock-timeout", lock_timeout)
            prof = _with_watch(_load(profile, real, sets), enabled)
            return _apply_profile(command, prof, real, _source(_ref(profile, prof), real), saved=None, saved_from="",
                                  force=False, restart=True, verify=verify, probe=probe, lock_timeout=wait, yes=yes,
                                  as_json=as_json, proof={"probe_user": probe_user})

        _run(command, as_json, root, profile, body)

    switch.__doc__ = doc
    return switch


watch_app.command("enable")(_watch_switch(
    True, "Apply the profile with its `watch` section on: install, enable and start the watch units (journaled)."))
watch_app.command("disable")(_watch_switch(
    False, "Apply the profile with its `watch` section off: stop the watch and remove its units (journaled)."))


@watch_app.command("status")
def watch_status(profile: Optional[str] = ProfileOpt, root: str = RootOpt, sets: Optional[List[str]] = SetOpt,
                 as_json: bool = JsonOpt) -> None:
    """Whether the watch units are installed, enabled and active, what they watch, and the last check."""

    def body() -> int:
        from fixer import core, watch
        from fixer.render import dumps

        real = _root(root)
        prof = _load(profile, real, sets)
        state = {**watch.state(real, prof), "last_verify": core.last_verify(real)}
        if as_json:
            typer.echo(dumps({"format_version": 1, "command": "watch status", "root": real, **state}))
        else:
            from fixer.render import watch_text

            typer.echo(watch_text(state))
        return 0

    _run("watch status", as_json, root, profile, body)


@watch_app.command("check")
def watch_check(profile: Optional[str] = ProfileOpt, root: str = RootOpt, sets: Optional[List[str]] = SetOpt,
                as_json: bool = JsonOpt) -> None:
    """What the watch service runs: wait for changes to settle, verify, plan for drift, re-apply if the
    profile says so; one journal line; exit 0 ok, 4 drift, 5 conflicts, 9 the backend does not load,
    12 the proof level asked was not reached."""

    def body() -> int:
        from fixer import watch_check
        from fixer.render import result

        real = _root(root)
        prof = _load(profile, real, sets)
        outcome = watch_check.check(real, prof, progress=_progress(as_json))
        _emit(as_json, result("watch check", profile=prof.name, root=real, changed=bool(outcome.reapplied),
                              failed=outcome.exit_code != 0, msg=outcome.lines[0], check=outcome.to_dict()),
              "\n".join(outcome.lines))
        return outcome.exit_code

    _run("watch check", as_json, root, profile, body)


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
