"""The operations both faces (the CLI and the Ansible module) call: plan, apply, rollback and its preview, verify."""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
from typing import TYPE_CHECKING

from fixer.errors import InvalidInput, LockHeld
from fixer.facts.paths import STATE_DIR, host_path, parent_problem
from fixer.model.plan import Change, Plan

if TYPE_CHECKING:
    from fixer.apply.rollback_plan import Restore, RollbackPreview
    from fixer.model.proof import Level
    from fixer.apply.transaction import Outcome
    from fixer.model.profile import Profile
    from fixer.model.verify import VerifyReport
    from fixer.progress import Progress

PLAN_FORMAT = 2


def resolve_root(root: str, name: str = "--root") -> str:
    """`/` as given; any other root as its real path. An empty root would silently mean the current
    directory (the live host when run from `/`): refused."""
    if root == "/":
        return root
    if not root:
        raise InvalidInput(f"{name} '': empty; give a directory (/ for the live host)")
    real = os.path.realpath(root)
    if not os.path.isdir(real):
        raise InvalidInput(f"{name} {root}: not a directory")
    return real


def seconds(name: str, value: float | None) -> float | None:
    """A duration option: finite and not negative (nan and inf would wait forever; 1e309 is inf)."""
    if value is None:
        return None
    number = float(value)
    if not math.isfinite(number):
        raise InvalidInput(f"{name} {number}: not a finite number of seconds")
    if number < 0:
        raise InvalidInput(f"{name} {number:g}: negative; give seconds >= 0")
    return number


def journal_of(root: str):
    """The journal of `root`, or None where vgpu-fix has no state there. One rule for every command: a
    symlink at or above the state dir is a Conflict (Journal.present), never read through."""
    if not os.path.lexists(host_path(root, STATE_DIR)) and parent_problem(root, STATE_DIR) is None:
        return None  # the common case without state: the journal's module is not even imported
    from fixer.apply.journal import Journal

    journal = Journal(root)
    return journal if journal.present() else None


def _journal_warnings(root: str) -> list[str]:
    """Interrupted and damaged generations, for the plan's warnings; nothing where there is no state."""
    journal = journal_of(root)
    if journal is None:
        return []
    from fixer.apply.journal import OPEN_STATUSES  # the write side loads only where vgpu-fix has state
    from fixer.apply.lock import held_message, holder_of

    holder = holder_of(journal.lock_path)
    if holder is not None:  # mid-change: an open generation there is that run's, not an interrupted one
        raise LockHeld(held_message(holder) + "; plan again when it has finished", facts={"holder": holder})
    intact, damaged = journal.scan()
    warnings = [f"generation {g.number} was interrupted ({g.status}); "
                "the next apply or `vgpu-fix rollback` restores its before-state"
                for g in intact if g.status in OPEN_STATUSES]
    return warnings + [d.story() for d in damaged]


def make_plan(profile: Profile, root: str, force: bool = False, source: str = "") -> Plan:
    warnings = _journal_warnings(root)  # first: a run holding the lock makes the host a moving target
    plan = _planned(profile, root, force)
    plan.installation = installation(root, profile).to_dict()
    plan.source = source
    plan.warnings[:0] = warnings
    return plan


def _planned(profile: Profile, root: str, force: bool) -> Plan:
    """The pure planner over a fresh snapshot of the root (loaded only by the commands that plan)."""
    from fixer import plan as planner
    from fixer.facts import host

    return planner.build(profile, host.probe(root, profile), force=force)


def plan_digest(profile_data: dict, plan: dict) -> str:
    """The digest that binds a saved plan's changes to the profile it was made from."""
    canonical = json.dumps({"profile_data": profile_data, "plan": plan}, ensure_ascii=False, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def installation(root: str, profile: Profile):
    """The Ollama installed under `root`: version, discovery generation, and how that was decided."""
    from fixer.ollama import detect

    return detect.detect(root, profile.verify.ollama_bin, profile.verify.ollama_lib)


def write_output(option: str, path: str, data: bytes, mode: int) -> None:
    """Replace the operator's output file `path` (--out, --prometheus) atomically: temp file and rename
    in its directory. Only a regular file or nothing may stand there: a device node, FIFO, socket,
    symlink (/dev/stdout) or directory is refused in one line, never replaced."""
    from fixer.apply import writes
    from fixer.errors import FixerError
    from fixer.facts.reading import kind_of

    directory, name = os.path.split(os.path.abspath(path))
    try:
        found = os.lstat(path).st_mode
    except FileNotFoundError:
        found = None
    except OSError as exc:
        raise InvalidInput(f"{option} {path}: cannot write: {exc.strerror}") from None
    if found is not None and not stat.S_ISREG(found):
        raise InvalidInput(f"{option} {path}: is {kind_of(found)}; vgpu-fix writes only a new file or replaces "
                           "a regular one")
    try:
        writes.write_file(os.path.realpath(directory), "/" + name, data, mode)
    except (OSError, FixerError) as exc:
        why = exc.message if isinstance(exc, FixerError) else exc.strerror
        raise InvalidInput(f"{option} {path}: cannot write: {why}") from None


def save_plan(plan: Plan, profile: Profile, path: str) -> str:
    """Write the plan for `apply --plan` (write_output, mode 0600). Returns the plan's digest."""
    profile_data, planned = profile.model_dump(mode="json"), plan.to_dict()
    digest = plan_digest(profile_data, planned)
    # key order is meaningful: environment and directives
    document = {"format": PLAN_FORMAT, "digest": digest, "profile_data": profile_data, "plan": planned}
    write_output("--out", path, json.dumps(document, indent=1).encode(), 0o600)
    return digest


def load_plan(path: str) -> tuple[Profile, dict]:
    """(the profile recorded in the plan, the plan as reviewed); refused when edited since it was saved."""
    from fixer.facts.reading import read_file

    try:
        raw = read_file(path, pipes=True)  # capped; a device is refused, never read
    except OSError as exc:
        raise InvalidInput(f"--plan {path}: cannot read: {exc.strerror}") from None
    try:
        document = json.loads(raw)
        if not isinstance(document, dict) or document.get("format") != PLAN_FORMAT:
            raise ValueError(f"not format {PLAN_FORMAT}; make it again with `vgpu-fix plan --out`")
        profile_data, planned = document["profile_data"], document["plan"]
        if document.get("digest") != plan_digest(profile_data, planned):
            raise InvalidInput(f"{path}: the saved plan was edited after it was made (its digest does not "
                               "match its content); make it again with `vgpu-fix plan --out`")
        from fixer.model.profile import Profile

        return Profile.model_validate(profile_data), planned
    except InvalidInput:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(f"{path}: not a usable saved plan ({exc})") from None


def check_saved(plan: Plan, saved: dict, path: str = "the saved plan") -> None:
    """Refuse a saved plan unless `plan` (re-derived now from the profile recorded in it) is exactly
    what it shows: a changed host is a conflict (exit 5), different changes an edited plan (exit 3)."""
    from fixer.errors import Conflict

    recorded = saved.get("fingerprints", {})
    stale = sorted(p for p in set(plan.fingerprints) | set(recorded) if plan.fingerprints.get(p) != recorded.get(p))
    if stale or saved.get("root") != plan.root:
        raise Conflict("the saved plan is stale: the host changed since it was made; run `vgpu-fix plan --out` again",
                       details=[f"changed: {p}" for p in stale] or [f"root differs: {saved.get('root')}"])
    derived = plan.to_dict()
    differ = [key for key in ("changes", "post_actions", "conflicts") if derived[key] != saved.get(key)]
    if differ:
        by_path = {c["path"]: c for c in saved.get("changes", [])}
        paths = [c["path"] for c in derived["changes"] if by_path.get(c["path"]) != c]
        derived_paths = {c["path"] for c in derived["changes"]}
        paths += [p for p in by_path if p not in derived_paths]
        raise InvalidInput(f"{path}: its changes are not what its recorded profile yields on this host; "
                           "it was edited (apply only a plan as `vgpu-fix plan --out` wrote it)",
                           details=[f"differs: {p}" for p in dict.fromkeys(paths)] or [f"differs: {', '.join(differ)}"])


def apply(profile: Profile, root: str, *, force: bool = False, restart: bool = True, lock_timeout: float = 0.0,
          saved_plan: dict | None = None, saved_from: str = "the saved plan", verify: bool = True,
          probe: bool | None = None, progress: Progress | None = None, service_check: bool = True,
          service_timeout: float | None = None, model: str | None = None, level: Level | None = None,
          probe_user: str | None = None, chosen: dict | None = None) -> Outcome:
    """Apply the profile under the lock, journaled; with `verify`, prove the backend loads or roll back.
    Where the apply restarts the unit on the live root, the restarted service's own discovery is the
    verdict (unless not `service_check`). A copy of a host whose files may not run (no `probe`) cannot
    reach a level above `files`: refused before anything changes, unless `level` asks only for files.
    With `saved_plan` (from load_plan), apply exactly that plan: it is checked before vgpu-fix creates
    any state, and again under the lock. `chosen`: what `fix` chose, kept in the generation it writes."""
    from fixer.apply import transaction

    if verify:
        refuse_unprovable(root, probe, level, model)
    check = None
    if saved_plan is not None:
        def check(plan: Plan) -> None:
            check_saved(plan, saved_plan, saved_from)

        check(_planned(profile, root, force))
    if verify and root != "/":  # a bad --probe-user is refused before anything changes, not after
        from fixer.verify.layers import probe_refusal

        if probe_refusal(root, probe) is None:
            from fixer.probe.placement import probe_account

            probe_account(probe_user)
    checker = verifier(probe, progress, service_check=service_check, service_timeout=service_timeout,
                       model=model, level=level, probe_user=probe_user) if verify else None
    outcome = transaction.apply(profile, root, force=force, restart=restart, lock_timeout=lock_timeout,
                                check_plan=check, verify=checker, progress=progress)
    if chosen is not None and outcome.generation is not None and outcome.changed:
        record_choice(root, outcome.generation, chosen, lock_timeout)
    return outcome


def record_choice(root: str, generation: int, chosen: dict, lock_timeout: float = 0.0) -> None:
    """Keep in the generation what `fix` chose (its profile, variables and unit scope), under the run lock."""
    from fixer.apply.lock import RunLock

    journal = journal_of(root)
    with RunLock(journal.lock_path, lock_timeout):
        journal.note(generation, fix=chosen)


def fix_choice(root: str, probe: bool | None = None, log_text: str | None = None, timeout: float = 20.0,
               overrides: dict[str, str] | None = None, probe_user: str | None = None):
    """`vgpu-fix fix`'s read-only half: (the evidence, the profile and variables chosen from it, or why
    none can fix the host). The shims run to report their versions only where verify would run the root's
    files: the live root, or a copy with `probe`."""
    from fixer import profiles
    from fixer.fix import choose, evidence

    found = evidence.gather(root, probe=probe if probe is not None else root == "/", log_text=log_text,
                            journal=root == "/" and log_text is None, timeout=timeout, probe_user=probe_user)
    limits = {name: tuple(profiles.load(name, root).cannot_fix)
              for name in (choose.SHIM, choose.PRELOAD, choose.CUDA13, choose.PASSTHROUGH)}
    return found, choose.with_overrides(choose.choose(found, limits), overrides or {})


def fix_profile(root: str, decision) -> Profile:
    """The chosen profile with its chosen variables (the operator's --set values among them), for the unit's scope."""
    from fixer import profiles

    profile = profiles.load(decision.profile, root, decision.variables)
    if decision.scope != profile.service.scope:
        profile = profile.model_copy(update={"service": profile.service.model_copy(update={"scope": decision.scope})})
    return profile


def rollback(root: str, *, to: int | None = None, force: bool = False, restart: bool = True,
             lock_timeout: float = 0.0, progress: Progress | None = None, service_check: bool = True,
             service_timeout: float | None = None) -> Outcome:
    """Roll back; where that restarted the unit on the live root, read what the restored service decided
    (`outcome.verify`, asked: service). A restored service on the CPU does not undo the rollback: it is
    the state the host had before, reported as such."""
    from fixer.apply import transaction

    outcome = transaction.rollback(root, to=to, force=force, restart=restart, lock_timeout=lock_timeout,
                                   progress=progress)
    if outcome.restarted is not None and service_check:
        outcome.verify = service_report(root, outcome.restarted, service_timeout, progress)
    return outcome


def service_report(root: str, restarted, timeout: float | None = None, progress: Progress | None = None) -> VerifyReport:
    """A report of the service level alone, for a restart no profile asked for (rollback)."""
    from fixer import profiles
    from fixer.facts.host import probe_unit
    from fixer.model.proof import Level
    from fixer.model.verify import VerifyReport
    from fixer.verify.layers import add_service_level

    base = profiles.load("h100-vgpu", root)  # only its verify paths (Ollama's install tree) are read
    profile = base.model_copy(update={"service": base.service.model_copy(
        update={"unit": restarted.unit, "scope": restarted.scope})})
    unit = probe_unit(root, restarted.unit, restarted.scope)
    report = VerifyReport(root, profile.name, restarted.unit, unit.user, unit.environment.effective(),
                          asked=Level.SERVICE)
    add_service_level(report, root, profile, restarted=restarted, timeout=timeout, progress=progress)
    return report


def rollback_preview(root: str, to: int | None = None) -> tuple[RollbackPreview, list[Restore]] | None:
    """What `rollback [--to N]` would undo and restore, read-only; None where vgpu-fix has no state."""
    journal = journal_of(root)
    if journal is None:
        return None
    from fixer.apply import rollback_plan

    if not any(journal.scan()):  # a damaged generation alone still has a story to tell (see preview)
        return None
    selected = rollback_plan.preview(journal, to)
    return selected, rollback_plan.restores(journal, selected)


def nothing_to_roll_back(root: str, to: int | None = None) -> str | None:
    """The message when `rollback [--to N]` has nothing to undo (a success: exit 0, unchanged), else None.
    A generation N that does not exist is invalid input; damaged generations are left to rollback to name."""
    from fixer.apply import rollback_plan

    found = rollback_preview(root, to)
    if found is None:
        return rollback_plan.NEVER_CHANGED
    return rollback_plan.nothing_left(to) if found[0].empty and not found[0].skipped else None


def verifier(probe: bool | None = None, progress: Progress | None = None, **service):
    """The check apply runs after its changes (and `state: verified` runs alone):
    (profile, root, restarted=None) -> report. `probe`: execute the root's files (default: only on the
    live root /; see layers.probe_refusal); `progress`: shows the probes on a terminal; `service`:
    service_check, service_timeout, model, level and probe_user (the account probes run as off the
    live root), as layers.check_for_apply takes them."""
    from functools import partial

    from fixer.verify import layers

    return partial(layers.check_for_apply, probe=probe, progress=progress, **service)


def refuse_unprovable(root: str, probe: bool | None, level: Level | None, model: str | None = None) -> None:
    """An apply to a copy of a host that may not run the copy's files can prove nothing past `files`:
    refuse it up front (exit NOT_PROVEN, nothing changed) rather than leave an unproven change behind."""
    from fixer.errors import NotProven
    from fixer.model.proof import Level
    from fixer.verify.layers import probe_refusal

    if root == "/" or (level is not None and level <= Level.FILES and not model):
        return
    refusal = probe_refusal(root, probe)
    wanted = "model" if model else str(level or Level.MODELED)
    if refusal is not None:
        raise NotProven(f"refusing to apply to {root}: verify could reach only the files level there, and "
                        f"{wanted} was asked ({refusal}); nothing was changed. Add --probe to run the copy's "
                        "files sandboxed, --level files to accept static checks only, or --no-verify")
    if model or (level is not None and level >= Level.SERVICE):
        raise NotProven(f"refusing to apply to {root}: the {wanted} level needs the live root's own service "
                        "(a root other than / has none); nothing was changed. Ask for --level modeled at most")


def rollback_dry_run(root: str, to: int | None = None) -> Plan:
    """`rollback --dry-run` (and the question on the live root): the rollback as a plan, one change per
    path with its final state — `delete` for a path the apply created, which the rollback removes."""
    nothing = nothing_to_roll_back(root, to)
    if nothing:
        raise InvalidInput(nothing)  # callers ask nothing_to_roll_back first
    selected, restores = rollback_preview(root, to)
    if selected.empty:  # only damaged generations: name them, as rollback does
        raise selected.nothing_to_roll_back()
    final: dict[str, Restore] = {}
    for restore in restores:  # restore order: a path's last restore (its oldest generation) is what stays
        final[restore.path] = restore
    changes = []
    for r in final.values():
        if r.rebuilt:
            action, reason = "update", f"changed since generation {r.generation}: rollback reruns ldconfig to rebuild it"
        elif r.recorded.kind == "absent":
            action, reason = "delete", f"created by generation {r.generation}: rollback removes it"
        else:
            action = "create" if r.current.kind == "absent" else "update"
            reason = f"restore the state before generation {r.generation}"
        changes.append(Change("rollback", r.path, action, r.current, r.recorded, reason))
    generations = (*selected.interrupted, *selected.targets)
    preview = Plan(profile=", ".join(sorted({g.manifest["profile"] for g in generations})), root=root,
                           changes=changes)
    preview.notes = [f"would roll back generation {g.number} ({g.status}, {g.manifest['created']})" for g in generations]
    preview.conflicts = [f"{d}: changed since that apply (--force discards the edit)" for d in selected.drifted]
    return preview


def generation_detail(root: str, number: int) -> dict:
    """`history show N`: what generation N changed, with which profile, and what verify said."""
    journal = journal_of(root)
    if journal is None:
        raise InvalidInput(f"no generation {number}: vgpu-fix has no state under {host_path(root, STATE_DIR)}")
    intact, damaged = journal.scan()
    broken = next((d for d in damaged if d.number == number), None)
    if broken is not None:
        raise InvalidInput(broken.story())
    if number not in [g.number for g in intact]:
        raise InvalidInput(f"no generation {number} under {journal.directory}")
    m = journal.load(number).manifest
    return {"generation": number, "status": m["status"], "created": m["created"], "user": m["user"],
            "profile": m["profile"], "changes": m.get("changes", []), "paths": [e["path"] for e in m["entries"]],
            "post_actions": m.get("post_actions", []), "verify": m.get("verify"), "fix": m.get("fix")}


LAST_VERIFY = "last-verify.json"


def record_verify(root: str, report: VerifyReport) -> str | None:
    """Keep the verdict of a `verify` run for `status` (where vgpu-fix has state); a line when it could not."""
    from fixer.errors import Conflict

    try:
        journal = journal_of(root)
    except Conflict as exc:
        return f"could not record the verdict: {exc.message}"
    if journal is None:
        return None
    from fixer.apply.transaction import verify_summary

    try:
        journal.write_record(LAST_VERIFY, verify_summary(report))
        journal.audit({"event": "verify", **verify_summary(report)})
    except OSError as exc:
        return f"could not record the verdict in {journal.directory}: {exc.strerror}"
    return None


def last_verify(root: str) -> dict | None:
    """The newest recorded verify verdict: a `verify` run's or the one an apply made after its changes."""
    journal = journal_of(root)
    if journal is None:
        return None
    found = []
    standalone = journal.read_record(LAST_VERIFY)
    if standalone:
        found.append({**standalone, "source": "verify"})
    for generation in journal.generations():
        if generation.manifest.get("verify"):
            found.append({**generation.manifest["verify"], "source": f"apply (generation {generation.number})"})
    return max(found, key=lambda v: v.get("time") or "", default=None)


DEFAULT_PROFILE = "h100-vgpu"


def applied_profile(root: str) -> tuple[Profile, dict] | None:
    """The profile of the newest applied generation as it was applied (its resolved copy, noting
    where it came from), and {generation, profile, origin}; None where nothing is applied."""
    journal = journal_of(root)
    if journal is None:
        return None
    from pydantic import ValidationError

    from fixer.model.profile import Profile

    newest = [g for g in journal.generations() if g.status == "applied"][-1:]
    if not newest or not newest[0].manifest.get("profile_json"):  # none, or applied before generations kept it
        return None
    m = newest[0].manifest
    try:
        profile = Profile.model_validate_json(m["profile_json"])
    except ValidationError as exc:
        raise InvalidInput(f"generation {newest[0].number}: its recorded profile {m['profile']} no longer validates "
                           f"({exc.error_count()} error(s)); give --profile") from None
    profile._origin = m.get("profile_origin")
    return profile, {"generation": newest[0].number, "profile": m["profile"], "origin": profile.origin}


def profile_for(root: str, ref: str | None, overrides: dict[str, str], text: bytes | None = None) -> Profile:
    """The profile a command works with: `ref` when given; else the newest applied generation's
    (its recorded copy; with `overrides`, its source loaded again with the recorded variables and
    these on top); else DEFAULT_PROFILE."""
    from fixer import profiles

    if ref is not None:
        return profiles.load(ref, root, overrides, text=text)
    applied = applied_profile(root)
    if applied is None:
        return profiles.load(DEFAULT_PROFILE, root, overrides)
    profile, about = applied
    if not overrides:
        return profile
    origin = profile.origin or {}
    if not origin.get("path"):
        raise InvalidInput(f"--set: the applied profile {profile.name} (generation {about['generation']}) was given "
                           "as text, not a name or file; give it again with --profile to change its variables")
    ref = origin["ref"] if profiles.NAME.match(origin["ref"]) else origin["path"]  # a file: where it was read
    return profiles.load(ref, root, {**origin.get("vars", {}), **overrides})


def status(root: str, profile: Profile) -> dict:
    """`vgpu-fix status`: one read-only summary of a host for people, Ansible facts and Prometheus."""
    from fixer import watch

    plan = make_plan(profile, root)
    applied = None
    journal = journal_of(root)
    if journal is not None:
        newest = [g for g in journal.generations() if g.status == "applied"][-1:]
        if newest:
            m = newest[0].manifest
            applied = {"generation": newest[0].number, "profile": m["profile"], "created": m["created"],
                       "vars": (m.get("profile_origin") or {}).get("vars")}
    return {
        "ollama": plan.installation,
        "applied": applied,
        "drift": {"pending": len(plan.pending), "conflicts": len(plan.conflicts),
                  "paths": [c.path for c in plan.pending]},
        "last_verify": last_verify(root),
        "watch": watch.state(root, profile),
    }


def prometheus_text(doc: dict) -> str:
    """The node-exporter textfile for a `status` document."""

    def label(value: object) -> str:
        return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    labels = f'profile="{label(doc["profile"])}",root="{label(doc["root"])}"'
    out = []

    def metric(name: str, help_text: str, value: float, extra: str = "") -> None:
        out.extend([f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name}{{{labels}{extra}}} {value:.15g}"])

    verify = doc["last_verify"] or {}
    reached, asked = verify.get("reached"), verify.get("asked")
    proof = f',backend="{label(verify.get("backend") or "")}",asked="{label(asked or "")}",reached="{label(reached or "")}"'
    metric("vgpu_fix_verify_ok", "1 when the last verify reached the proof level it asked for and passed; 0 when "
           "it failed, did not reach that level, was recorded before proof levels, or never ran",
           1 if verify.get("outcome") == "passed" else 0, proof)
    metric("vgpu_fix_verify_level", "proof level the last verify reached: 0 none or never verified, 1 files, "
           "2 modeled, 3 service, 4 model", _level_number(reached), proof)
    metric("vgpu_fix_verify_asked_level", "proof level the last verify asked for (numbered as vgpu_fix_verify_level; "
           "0 never verified)", _level_number(asked), proof)
    metric("vgpu_fix_last_verify_timestamp_seconds", "Unix time of the last verify (0: never verified)",
           _epoch(verify.get("time")))
    ollama = doc.get("ollama") or {}
    metric("vgpu_fix_ollama_info", "the Ollama installed under the root (always 1; see the labels)", 1,
           f',version="{label(ollama.get("version") or "unknown")}",generation="{label(ollama.get("generation") or "")}"')
    metric("vgpu_fix_drift", "changes the profile has pending on this host (0: converged)", doc["drift"]["pending"])
    metric("vgpu_fix_generation", "newest applied vgpu-fix generation (0: none)",
           (doc["applied"] or {}).get("generation") or 0)
    metric("vgpu_fix_watch_enabled", "1 when the upgrade watch is installed and enabled", int(
        bool(doc["watch"]["installed"] and doc["watch"]["enabled"])))
    return "\n".join(out) + "\n"


def _level_number(level: str | None) -> int:
    from fixer.model.proof import LEVELS

    return next((lv.rank + 1 for lv in LEVELS if lv.value == level), 0)


def _epoch(stamp: str | None) -> float:
    from datetime import datetime

    try:
        return datetime.strptime(stamp or "", "%Y-%m-%dT%H:%M:%S%z").timestamp()
    except ValueError:
        return 0


def write_textfile(path: str, text: str) -> None:
    """Replace `path` atomically (write_output, mode 0644) so a scrape never sees half a file."""
    write_output("--prometheus", path, text.encode(), 0o644)
