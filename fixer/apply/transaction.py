"""Change the host: lock, write-ahead journal, atomic writes, post-actions; and roll it back."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

from fixer import plan as planner
from fixer import system
from fixer.apply import crashpoints, rollback_plan, writes
from fixer.apply.interrupts import Interrupts
from fixer.apply.journal import Generation, Journal
from fixer.apply.lock import RunLock
from fixer.errors import (
    ApplyFailed,
    Conflict,
    FixerError,
    Interrupted,
    InvalidInput,
    RollbackFailed,
    VerifyFailedRolledBack,
)
from fixer.facts import host, ldso
from fixer.facts.paths import missing_parents
from fixer.model.plan import PostAction
from fixer.model.profile import Profile
from fixer.model.verify import VerifyReport
from fixer.progress import Progress
from fixer.verify.service import Restart
from fixer.verify.service import restart as restart_unit


@dataclass
class Outcome:
    """What a run did: the plan it executed, the generation it wrote, notes for the operator."""

    command: str
    plan: planner.Plan | None
    changed: bool
    generation: int | None = None
    messages: list[str] = field(default_factory=list)
    post_actions: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # restored paths that did not exist before the apply
    verify: VerifyReport | None = None
    restarted: Restart | None = None  # the unit's restart this run made on the live root


def touched_paths(root: str, plan: planner.Plan) -> list[str]:
    """Every path the apply may create or change, parents it must create first, then ldconfig's outputs."""
    paths: dict[str, None] = {}  # ordered and unique in linear time
    targets = [c.path for c in plan.pending]
    if PostAction.LDCONFIG in plan.post_actions:
        # ldconfig writes each cache through a `~` temp file it leaves behind when it fails.
        targets += [ldso.LD_SO_CACHE, ldso.LD_SO_CACHE + "~", ldso.LDCONFIG_AUX_CACHE, ldso.LDCONFIG_AUX_CACHE + "~"]
    for target in targets:
        for parent in missing_parents(root, target):
            paths.setdefault(parent)
        paths.setdefault(target)
    return list(paths)


def _perform(root: str, change: planner.Change, dirty: set[str]) -> None:
    """Make one change; the directories it changed are noted in `dirty` for one fsync each later."""
    after = change.after
    if after.kind == "absent":
        writes.remove(root, change.path, dirty)
        return
    for parent in missing_parents(root, change.path):
        writes.make_dir(root, parent, 0o755, dirty)
    if after.kind == "symlink":
        if change.before.kind == "file":
            writes.remove(root, change.path, dirty)
        writes.write_symlink(root, change.path, after.target, dirty)
    else:
        if change.before.kind == "symlink":
            writes.remove(root, change.path, dirty)
        writes.write_file(root, change.path, after.data, after.mode, after.uid, after.gid, dirty)


def run_post_actions(root: str, service: dict, actions: list[str], restart: bool) -> tuple[list[str], Restart | None]:
    """Run what the changes need; return one line per action saying what ran or why it did not, and the
    restart of the unit when one ran (the service level judges that very process)."""
    done = []
    restarted = None
    scope, unit = service["scope"], service["unit"]
    live = system.systemd_live(root, scope)
    triggers = [a.partition(" ")[2] for a in actions if a.startswith(f"{PostAction.UDEV_TRIGGER} ")]
    for action in actions:
        crashpoints.hit(f"post:{action.partition(' ')[0]}")
        if action == PostAction.LDCONFIG:
            for parent in missing_parents(root, ldso.LDCONFIG_AUX_CACHE):
                writes.make_dir(root, parent, 0o755)
            system.ldconfig(root)
            done.append("ldconfig: cache rebuilt" + ("" if root == "/" else f" for {root}"))
        elif action.startswith("udev-"):
            done += _udev(root, action, triggers)
        elif not live:
            done.append(f"{action}: skipped (no running service manager for this root)")
        elif action == PostAction.DAEMON_RELOAD:
            system.systemctl(scope, "daemon-reload")
            done.append("daemon-reload: done")
        elif action == PostAction.RESTART and not restart:
            done.append(f"restart: skipped (--no-restart); restart {unit} to take effect")
        elif action == PostAction.RESTART:
            restarted = restart_unit(scope, unit)
            done.append(f"restart: {unit} restarted (main process {restarted.pid or 'none'})")
        elif action in (PostAction.START_WATCH, PostAction.STOP_WATCH):
            done += _switch_watch(root, scope, service, action)
    return done, restarted


def _switch_watch(root: str, scope: str, service: dict, action: str) -> list[str]:
    """(Re)start or stop the watch's .path unit, and its textfile timer as its unit file now is: a
    timer whose file is gone (or the whole watch stopping) is stopped where it still runs."""
    from fixer.facts.paths import read_state

    starting = action == PostAction.START_WATCH
    watch = f"{service['watch']}.path"
    system.systemctl(scope, "restart" if starting else "stop", watch)
    done = [f"{action}: {watch} " + ("started" if starting else "stopped")]
    timer_file = service.get("watch_timer")  # generations before the textfile timer recorded none
    if timer_file:
        timer = os.path.basename(timer_file)
        if starting and read_state(root, timer_file).kind != "absent":
            system.systemctl(scope, "restart", timer)
            done.append(f"{action}: {timer} started")
        elif _active_state(scope, timer) not in ("", "inactive"):
            system.systemctl(scope, "stop", timer)
            if _active_state(scope, timer) == "failed":  # a timer whose unit file went away ends up failed
                system.systemctl(scope, "reset-failed", timer)
            done.append(f"{action}: {timer} stopped")
    return done


def _active_state(scope: str, unit: str) -> str:
    return system.systemctl(scope, "show", "-p", "ActiveState", "--value", unit).strip()


def _udev(root: str, action: str, triggers: list[str]) -> list[str]:
    """udev-reload runs the reload and then one trigger of every matching device; udev-trigger lines report."""
    if not system.udev_live(root):
        return [f"{action}: skipped (no running udev for this root)"]
    if action == PostAction.UDEV_RELOAD:
        system.udevadm("reload")
        out = ["udev-reload: rules reloaded"]
        if triggers:
            system.udevadm("trigger", triggers)
            out.append(f"udev-trigger: change event for {', '.join(triggers)}")
        return out
    return []


def service_of(profile: Profile) -> dict:
    watching = profile.watch.enabled is not None
    return {"unit": profile.service.unit, "scope": profile.service.scope, "dropin": profile.dropin_path,
            "watch": profile.watch.unit if watching else None,
            "watch_timer": profile.watch_files["textfile_timer"] if watching else None,
            "watch_files": [profile.watch_files["path"], *(p for r, p in profile.watch_files.items() if r != "path")]
            if watching else []}


def applied_record(profile: Profile) -> dict:
    """What a generation keeps of its profile: where it came from (name or file, and the --set
    variables) and the resolved copy, so `status`, `watch` and a later run reuse exactly that. The copy is
    JSON text: the manifest is saved with sorted keys, and the order of environment and directives counts."""
    import json

    return {"profile_origin": profile.origin, "profile_json": json.dumps(profile.model_dump(mode="json"))}


def _after_restore(root: str, service: dict, restored: list[str]) -> list[str]:
    """The post-actions a restore needs: the drop-in back means reload and restart; the watch units
    back (or gone) mean reload and start (or stop) the watch."""
    actions = [PostAction.UDEV_RELOAD] if any(os.path.dirname(p) == planner.UDEV_RULES_D for p in restored) else []
    if service["dropin"] in restored:
        actions += [PostAction.DAEMON_RELOAD, PostAction.RESTART]
    watch_files = service.get("watch_files") or []
    if set(watch_files) & set(restored):
        from fixer.facts.paths import read_state

        if PostAction.DAEMON_RELOAD not in actions:
            actions.append(PostAction.DAEMON_RELOAD)
        back = read_state(root, watch_files[0]).kind != "absent"  # the .path unit comes first
        at = actions.index(PostAction.DAEMON_RELOAD) + 1
        actions.insert(at, PostAction.START_WATCH if back else PostAction.STOP_WATCH)
    return actions


def _audit(journal: Journal, event: dict, messages: list[str]) -> None:
    """Append to the audit log after the host changed: a failure there is reported beside what was
    done (a warning in `messages`), never as "nothing changed"."""
    try:
        journal.audit(event)
    except (OSError, FixerError) as exc:
        messages.append(f"warning: the {event['event']} of generation {event.get('generation')} happened but could "
                        f"not be written to the audit log: {_describe(exc)}")


@dataclass
class Restored:
    """What restoring one generation did: the paths put back, and the unit's restart if it ran."""

    paths: list[str]
    restarted: Restart | None = None


def recover(journal: Journal, restart: bool, progress: Progress | None = None) -> list[str]:
    """Finish interrupted runs by restoring their before-state; returns messages."""
    messages = []
    journal.tidy()  # finish a manifest save a crash cut short; drop generations that never began
    for generation in reversed(journal.open_generations()):
        restored = _restore(journal, generation, restart, status="recovered", notes=messages, progress=progress)
        messages.append(f"recovered interrupted generation {generation.number}: restored {len(restored.paths)} path(s)")
    return messages


def _restore(journal: Journal, generation: Generation, restart: bool, status: str, notes: list[str],
             progress: Progress | None = None) -> Restored:
    """Restore one generation; a failure part-way is RollbackFailed naming what was and was not restored."""
    journal.verify_blobs(generation)  # a damaged journal is refused before anything is touched
    journal.set_status(generation, "rolling_back")
    crashpoints.hit("rollback:marked")
    done: list[str] = []
    restarted = None
    try:
        with (progress or Progress()).task(f"restoring generation {generation.number}", len(generation.entries)) as step:
            rebuild = journal.restore(generation, done, notes, step)
        if rebuild:
            system.ldconfig(journal.root)
        crashpoints.hit("rollback:restored")
        service = generation.manifest.get("service")
        actions = _after_restore(journal.root, service, done) if service else []
        if actions:
            generation.manifest["post_actions"], restarted = run_post_actions(journal.root, service, actions, restart)
    except (OSError, FixerError) as exc:
        raise _rollback_failed(journal, generation, done, exc) from None
    journal.set_status(generation, status)
    crashpoints.hit("rollback:done")
    return Restored(done, restarted)


def _rollback_failed(journal: Journal, generation: Generation, done: list[str], exc: BaseException) -> RollbackFailed:
    missing = journal.unrestored(generation)
    details = [f"restored: {p}" for p in done] + [f"not restored: {p}" for p in missing]
    if not missing:
        details.append("every recorded path is back to its before-state; the step after it failed")
    return RollbackFailed(
        f"rollback of generation {generation.number} failed: {_describe(exc)}; the host may be half-changed; "
        "rerun `vgpu-fix rollback` once the cause is fixed",
        details=details, generation=generation.number, facts={"restored": done, "not_restored": missing})


def apply(
    profile: Profile,
    root: str,
    *,
    force: bool = False,
    restart: bool = True,
    lock_timeout: float = 0.0,
    check_plan: Callable[[planner.Plan], None] | None = None,
    verify: Callable[..., VerifyReport] | None = None,
    progress: Progress | None = None,
) -> Outcome:
    journal = Journal(root)
    journal.ensure()
    with RunLock(journal.lock_path, lock_timeout) as lock, Interrupts() as stop:
        messages = []
        if lock.stale_holder:
            messages.append(f"took over a stale lock left by pid {lock.stale_holder.get('pid')}")
        messages += recover(journal, restart, progress)
        stop.check()  # interrupted while recovering: stop before anything new begins
        damaged = journal.damaged()
        if damaged:  # it may hold the only record of an interrupted run's before-state: never build over it
            raise InvalidInput(damaged[0].reason, details=[
                d.reason for d in damaged[1:]] + [f"inspect {d.number:04d} under {journal.directory}/generations and move "
                                                  "it aside to apply again" for d in damaged])
        plan = planner.build(profile, host.probe(root, profile), force=force)
        if check_plan is not None:  # a saved plan: refused unless this is exactly it
            check_plan(plan)
        if plan.conflicts:
            raise Conflict(f"{len(plan.conflicts)} conflict(s) block the plan", details=plan.conflicts,
                           plan=plan)
        if not plan.pending:
            return Outcome("apply", plan, changed=False, messages=messages + ["host already converged"])
        paths = touched_paths(root, plan)
        stop.check()
        generation = journal.begin(profile.name, paths, [c.to_dict() for c in plan.pending], service_of(profile),
                                   applied_record(profile))
        dirty: set[str] = set()
        try:
            with (progress or Progress()).task(f"applying {len(plan.pending)} change(s)", len(plan.pending)) as step:
                try:
                    for change in plan.pending:
                        stop.check()
                        crashpoints.hit("apply:change")
                        _perform(root, change, dirty)
                        crashpoints.hit("apply:changed")
                        step(change.path)
                finally:  # durable before the post-actions read them and before the status says applied
                    writes.sync_dirs(root, dirty)
            stop.check()
            done, restarted = run_post_actions(root, service_of(profile), plan.post_actions, restart)
            journal.record_after(generation)
            journal.set_status(generation, "applied")
            crashpoints.hit("apply:done")
        except Interrupted as signal_:
            notes: list[str] = []
            restored = _restore(journal, generation, restart, status="interrupted", notes=notes)
            _audit(journal, {"event": "apply-interrupted", "generation": generation.number, "signal": stop.name}, notes)
            raise Interrupted(f"interrupted by {stop.name}: generation {generation.number} was undone "
                              f"({len(restored.paths)} path(s) restored); the host is as it was before this apply",
                              signal_.signum, details=notes, generation=generation.number) from None
        except (OSError, FixerError) as exc:
            _undo_failed_apply(journal, generation, profile, restart, exc)
        _audit(journal, {"event": "apply", "generation": generation.number, "profile": profile.name,
                         "changes": len(plan.pending)}, messages)
        outcome = Outcome("apply", plan, True, generation.number, messages, done)
        if verify is not None:
            stop.deferring = False  # verify only reads and probes: a signal stops it at once
            try:
                stop.check()  # a signal that came during the post-actions
                outcome.verify = verify(profile, root, restarted=restarted)
            except Interrupted as signal_:
                raise Interrupted(f"interrupted by {stop.name} during verify: generation {generation.number} is "
                                  "applied but not verified; run `vgpu-fix verify`, or `vgpu-fix rollback` to undo it",
                                  signal_.signum, generation=generation.number) from None
            stop.deferring = True
            try:
                journal.set_status(generation, generation.status, verify=verify_summary(outcome.verify))
            except OSError as exc:  # the generation stays applied: say so beside the verdict
                messages.append(f"warning: generation {generation.number} is applied, but verify's verdict could "
                                f"not be recorded in its manifest: {_describe(exc)}")
            if outcome.verify.failed:
                _verify_failed(journal, generation, profile, restart, outcome, verify)
        return outcome


def verify_summary(report: VerifyReport) -> dict:
    """What the journal keeps of a verify report: when, the verdict, the backend and the cause."""
    import time

    reached = report.reached
    return {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "ok": report.ok, "outcome": str(report.outcome),
            "asked": str(report.asked), "reached": str(reached) if reached else None,
            "not_reached": report.not_reached(), "backend": report.backend, "cause": report.cause,
            "profile": report.profile, "version": (report.installation or {}).get("version"),
            "generation": (report.installation or {}).get("generation")}


def _undo_failed_apply(journal: Journal, generation: Generation, profile: Profile, restart: bool,
                       exc: BaseException) -> None:
    notes: list[str] = []
    try:
        _restore(journal, generation, restart, status="failed", notes=notes)
    except RollbackFailed as undo:
        raise RollbackFailed(f"apply failed ({_describe(exc)}) and undoing it failed too: {undo.message}",
                             details=undo.details, generation=undo.generation, facts=undo.facts) from None
    _audit(journal, {"event": "apply-failed", "generation": generation.number, "profile": profile.name,
                     "error": str(exc)}, notes)
    raise ApplyFailed(f"apply failed and was undone: {_describe(exc)}", details=notes,
                      generation=generation.number) from None


def _verify_failed(journal, generation, profile, restart, outcome, verify) -> None:
    notes: list[str] = []
    try:
        restored = _restore(journal, generation, restart, status="rolled_back", notes=notes)
    except FixerError as exc:
        raise RollbackFailed(f"verify failed and rolling back generation {generation.number} failed: {exc.message}",
                             details=exc.details, facts=exc.facts, verify=outcome.verify,
                             generation=generation.number) from None
    _audit(journal, {"event": "rollback", "generation": generation.number, "reason": "verify failed"}, notes)
    after = verify(profile, journal.root, restarted=restored.restarted)
    raise VerifyFailedRolledBack(
        f"verify failed after apply; generation {generation.number} was rolled back "
        f"({len(restored.paths)} path(s) restored)",
        verify=outcome.verify, verify_after_rollback=after, generation=generation.number, plan=outcome.plan,
        details=notes,
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, FixerError):
        return exc.message
    if isinstance(exc, OSError):
        return f"{exc.filename or ''}: {exc.strerror}".strip(": ")
    return str(exc)


def rollback(root: str, *, to: int | None = None, force: bool = False, restart: bool = True,
             lock_timeout: float = 0.0, progress: Progress | None = None) -> Outcome:
    journal = Journal(root)
    if not journal.present():
        return Outcome("rollback", None, False, messages=[rollback_plan.NEVER_CHANGED])
    journal.ensure()  # refuses a symlinked state dir before the lock is taken through it
    with RunLock(journal.lock_path, lock_timeout), Interrupts() as stop:
        messages = recover(journal, restart, progress)
        selected = rollback_plan.preview(journal, to)
        targets = list(selected.targets)
        skipped = list(selected.skipped)
        if not targets:
            if messages:
                return Outcome("rollback", None, True, messages=messages)
            if not skipped:  # success: the host already is as the rollback would leave it
                return Outcome("rollback", None, False, messages=[rollback_plan.nothing_left(to)])
            raise selected.nothing_to_roll_back()
        messages += [f"skipped: {d.story()}" for d in skipped]
        selected.check_drift(force)
        restored: list[str] = []
        restarted = None
        absent_before: set[str] = set()
        for index, generation in enumerate(targets):
            try:
                stop.check()  # a generation is restored whole or not begun
            except Interrupted as signal_:
                left = ", ".join(str(g.number) for g in targets[index:])
                raise Interrupted(
                    f"interrupted by {stop.name}: rolled back {index} generation(s); generation(s) {left} "
                    "are still applied; run `vgpu-fix rollback` to continue", signal_.signum, details=messages,
                    generation=targets[index].number, facts={"restored": restored}) from None
            back = _restore(journal, generation, restart, status="rolled_back", notes=messages, progress=progress)
            restored += back.paths
            restarted = back.restarted or restarted
            absent_before |= {e.path for e in generation.entries if e.kind == "absent"}
            _audit(journal, {"event": "rollback", "generation": generation.number, "paths": len(restored)}, messages)
        removed = [p for p in restored if p in absent_before]
        return Outcome("rollback", None, True, targets[-1].number, messages, restored=restored, removed=removed,
                       restarted=restarted)
