"""Text and JSON renderings of every result: plans, applies, rollbacks, verify reports, diagnoses."""

from __future__ import annotations

import os
import sys
import textwrap
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fixer.doctor.verdict import Diagnosis
    from fixer.errors import FixerError
    from fixer.model.verify import VerifyReport
    from fixer.plan import Change, Plan

FORMAT_VERSION = 1
SYMBOL = {"create": "+", "update": "~", "delete": "-", "noop": "="}
COLOUR = {"+": "32", "~": "33", "-": "31", "=": "2", "!": "1;31", "warn": "33", "head": "1"}


class Painter:
    def __init__(self, enabled: bool | None = None):
        if enabled is None:
            enabled = sys.stdout.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"
        self.enabled = enabled

    def __call__(self, text: str, style: str) -> str:
        return f"\x1b[{COLOUR[style]}m{text}\x1b[0m" if self.enabled else text


def _content(change: Change, side: str) -> list[str]:
    state = change.before if side == "before" else change.after
    if state.kind == "file":
        return state.text().splitlines(keepends=True)
    return [state.describe() + "\n"] if state.kind != "absent" else []


def unified(change: Change) -> list[str]:
    import difflib

    return list(difflib.unified_diff(_content(change, "before"), _content(change, "after"),
                                     f"{change.path} (before)", f"{change.path} (after)"))


def ansible_diff(plan: Plan | None) -> list[dict]:
    if plan is None:
        return []
    return [
        {
            "before_header": f"{c.path} ({c.before.describe()})",
            "after_header": f"{c.path} ({c.after.describe()})",
            "before": "".join(_content(c, "before")),
            "after": "".join(_content(c, "after")),
        }
        for c in plan.pending
    ]


def plan_text(plan: Plan, paint: Painter, show_noops: bool = True) -> str:
    out = [paint(f"Plan for profile {plan.profile} on root {plan.root}", "head")]
    if plan.source:
        out.append(paint(f"profile from {plan.source}", "warn"))
    if plan.installation:
        out.append(installation_line(plan.installation))
    for change in plan.changes:
        if change.action == "noop" and not show_noops:
            continue
        sign = SYMBOL[change.action]
        out.append(paint(f"{sign} {change.kind:<13} {change.path}", sign) + f"  ({change.reason})")
        if change.kind == "symlink" and change.pending:
            out.append(f"      {change.before.describe()}  =>  {change.after.describe()}")
        elif change.pending and "file" in (change.before.kind, change.after.kind):
            for line in unified(change)[2:]:
                line = line.rstrip("\n")
                style = "+" if line.startswith("+") else "-" if line.startswith("-") else "="
                out.append("      " + paint(line, style))
    for conflict in plan.conflicts:
        out.append(paint(f"! conflict: {conflict}", "!"))
    for warning in plan.warnings:
        out.append(paint(f"warning: {warning}", "warn"))
    for note in plan.notes:
        out.append(f"note: {note}")
    if plan.post_actions:
        out.append("then: " + ", ".join(plan.post_actions))
    counts = {a: sum(1 for c in plan.changes if c.action == a) for a in SYMBOL}
    out.append(
        f"{counts['create']} to create, {counts['update']} to update, {counts['delete']} to delete, "
        f"{counts['noop']} unchanged" + (f", {len(plan.conflicts)} conflict(s)" if plan.conflicts else "")
    )
    return "\n".join(out)


def result(
    command: str,
    *,
    profile: str | None,
    root: str,
    changed: bool,
    failed: bool,
    msg: str,
    plan: Plan | None = None,
    generation: int | None = None,
    verify: VerifyReport | None = None,
    **extra,
) -> dict:
    """The stable --json document (format_version 1), in Ansible's result shape."""
    doc = {
        "format_version": FORMAT_VERSION,
        "command": command,
        "profile": profile,
        "root": root,
        "changed": changed,
        "failed": failed,
        "msg": msg,
        "changes": [c.to_dict() for c in plan.changes] if plan else [],
        "diff": ansible_diff(plan),
        "generation": generation,
        "verify": verify,
        "proof": proof_summary(verify),
    }
    if plan is not None:
        doc.update(conflicts=plan.conflicts, warnings=plan.warnings, notes=plan.notes, post_actions=plan.post_actions,
                   installation=plan.installation, source=plan.source)
    doc.update(extra)
    return doc


def failure(command: str, exc: FixerError, *, profile: str | None, root: str, changed: bool = False) -> dict:
    """The --json document of a failed command (CLI and Ansible module alike): the error's data, its code."""
    from fixer.errors import exit_code_of

    return result(command, profile=profile, root=root, changed=changed, failed=True, msg=exc.message, plan=exc.plan,
                  generation=exc.generation, verify=exc.verify, errors=exc.details, exit_code=exit_code_of(command, exc),
                  **({"verify_after_rollback": exc.verify_after_rollback} if exc.verify_after_rollback else {}),
                  **exc.facts)


def dumps(doc: dict) -> str:
    import json

    return json.dumps(doc, indent=2, default=_jsonable)


def _jsonable(value: object) -> object:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def history_text(rows: list[dict]) -> str:
    if not rows:
        return "no generations yet"
    lines = [f"{'gen':>4}  {'status':<12} {'created':<25} {'profile':<20} {'user':<10} {'changes':>7}  verify"]
    for r in rows:
        lines.append(f"{r['generation']:>4}  {r['status']:<12} {r['created']:<25} {r['profile']:<20} "
                     f"{r['user']:<10} {r['changes']:>7}  {_proof_cell(r.get('proof'))}")
    return "\n".join(lines)


def _proof_cell(proof: dict | None) -> str:
    if proof is None:
        return "not run"
    if proof.get("outcome") is None:
        return "level unknown (recorded before proof levels)"
    return f"{proof['outcome']}, reached {proof.get('reached') or 'none'} of {proof.get('asked')}"


def proof_summary(verify: VerifyReport | dict | None) -> dict | None:
    """The proof part of a verify verdict, for every result: the level asked and reached, the outcome,
    and each level not reached with why and what reaches it. None where verify did not run."""
    if verify is None:
        return None
    doc = verify if isinstance(verify, dict) else verify.to_dict()
    return {"asked": doc.get("asked"), "reached": doc.get("reached"), "outcome": doc.get("outcome"),
            "not_reached": doc.get("not_reached", [])}


def installation_line(found: dict) -> str:
    """One line naming the Ollama under the root (fixer.ollama.detect.Installation.to_dict())."""
    if found["how"] == "nothing":
        return f"  no Ollama found: {found['note']}"
    return (f"  Ollama {found['version'] or '(version unknown)'}: {found['generation']} generation "
            f"(from the {found['how']})" + (f"; {found['note']}" if found.get("note") else ""))


# ---------------------------------------------------------------- verify


def verify_text(verified: VerifyReport | dict) -> str:
    """The verify report for a terminal: each layer, then the verdict."""
    report = verified if isinstance(verified, dict) else verified.to_dict()
    mark = {"pass": "PASS", "fail": "FAIL", "skip": "skip"}
    who = f"user {report['user'] or 'root'}"
    if report.get("probe_user"):  # an image: its User= is only reported
        who = f"the image's User={report['user'] or '(unset)'}, not adopted; probes as {report['probe_user']}"
    lines = [f"verify {report['profile']} on {report['root']} (unit {report['unit']}, {who}):"]
    if report.get("installation"):
        lines.append(installation_line(report["installation"]))
    for check in report["checks"]:
        lines.append(f"  [{mark[check['status']]}] {check['name']}: {check['summary']}")
        lines += [f"         {line}" for line in check["evidence"][:12]]
        if check["status"] == "fail":
            if check.get("cause"):
                lines.append(f"         cause: {check['cause']}")
            if check.get("fix"):
                lines.append(f"         fix: {check['fix']}")
    for name in report.get("overruled") or []:
        lines.append(f"  note: the {name} check failed but the real service reported the GPU: verify's model "
                     "of Ollama is wrong here (the service is the arbiter); please report it")
    lines.append("verdict: " + proof_line(report))
    return "\n".join(lines)


def proof_line(verify: dict) -> str:
    """One line for a verify verdict (a report's to_dict(), or the summary the journal keeps): the
    outcome, the level reached against the level asked, and for each level asked but not reached, why
    and what reaches it. A verdict recorded before proof levels existed is never shown as a pass."""
    backend = verify.get("backend") or "the backend"
    if "outcome" not in verify:
        return f"{backend}: recorded before proof levels; level unknown, nothing proven"
    where = f"level reached: {verify.get('reached') or 'none'} (asked: {verify.get('asked')})"
    if verify["outcome"] == "failed":
        return f"FAILED: {backend} does not load: {verify.get('cause') or 'see above'}; {where}"
    if verify["outcome"] == "passed":
        return f"passed at {verify.get('reached')}: {_PROVES.get(verify.get('reached'), '')} ({where})".replace(
            "BACKEND", backend)
    missing = [r for r in verify.get("not_reached", []) if r.get("asked")]
    why = "; ".join(f"{r['level']}: {r['why']}" + (f" [{r['flag']}]" if r.get("flag") else "") for r in missing)
    return f"NOT PROVEN: {where}; {why}"


_PROVES = {"files": "BACKEND and its libraries resolve; nothing was executed",
           "modeled": "BACKEND loads and finds the GPU the way Ollama runs it",
           "service": "the restarted service reports the GPU",
           "model": "a model loaded into GPU memory"}


# ---------------------------------------------------------------- doctor

_LABEL = {"external": "OUTSIDE", "error": "ERROR", "warning": "WARN", "info": "INFO"}


def _wrap(text: str, indent: str) -> str:
    return textwrap.fill(text, width=100, initial_indent=indent, subsequent_indent=indent)


def _log_line(events: dict) -> str:
    parts = [events["version"]["text"] + (f", {events['generation']} generation" if events.get("generation") else "")]
    if events["compute"]:
        parts.append("CPU fallback" if events["cpu_fallback"] else f"{len(events['gpu_devices'])} GPU(s) in use")
    for b in events["bootstraps"][:3]:
        folder = (b["libdirs"] or ["?"])[-1].rsplit("/", 1)[-1]
        secs = f"{b['seconds']:.2f} s" if b["seconds"] is not None else "?"
        parts.append(f"bootstrap {folder} {secs}")
    if events["initial_count"] is not None:
        parts.append(f"initial_count={events['initial_count']}")
    if events["verifying"] or events["filtered"]:
        parts.append(f"{len(events['verifying'])} verified, {len(events['filtered'])} filtered")
    return "; ".join(parts)


def doctor_text(diagnosis: Diagnosis) -> str:
    lines = [f"vgpu-fix doctor — root {diagnosis.root}"]
    if diagnosis.installation:
        lines.append(installation_line(diagnosis.installation).strip())
    if diagnosis.events:
        lines.append(f"log: {_log_line(diagnosis.events)}")
    elif not diagnosis.log_seen:
        lines.append("log: none given (use --log FILE; on the live root the journal is read by default)")
    lines.append("")
    for f in diagnosis.findings:
        lines.append(f"[{_LABEL[f.severity]}] {f.id}: {f.summary}")
        for item in f.evidence:
            lines.append(_wrap(item, "    > "))
        lines.append(_wrap(f.explanation, "    "))
        setting = f" (profile setting: {f.fix.setting})" if f.fix.setting else " (no profile setting fixes this)"
        lines.append(_wrap("fix: " + f.fix.text + setting, "    "))
        lines.append("")
    if not diagnosis.findings:
        lines += ["no findings", ""]
    lines.append(f"verdict: {diagnosis.verdict}")
    return "\n".join(lines) + "\n"


def generation_text(detail: dict, paint: Painter) -> str:
    """`history show N`: the generation's header, each change with its reason, and its verify verdict."""
    out = [paint(f"generation {detail['generation']}: {detail['status']}, profile {detail['profile']}, "
                 f"{detail['created']} by {detail['user']}", "head")]
    for change in detail["changes"]:
        sign = SYMBOL.get(change["action"], "~")
        out.append(paint(f"{sign} {change['kind']:<13} {change['path']}", sign) + f"  ({change['reason']})")
    changed = {c["path"] for c in detail["changes"]}
    created = [p for p in detail["paths"] if p not in changed]
    if created:
        out.append("also recorded (parents, ldconfig outputs): " + ", ".join(created))
    verify = detail.get("verify")
    if verify is None:
        out.append("verify: not run (--no-verify, or nothing changed)")
    else:
        out.append(f"verify at {verify['time']}: {proof_line(verify)}")
    return "\n".join(out)


def watch_text(state: dict) -> str:
    installed = "installed" if state["installed"] else "not installed"
    enabled = "enabled" if state["enabled"] else "disabled"
    lines = [f"watch {state['unit']}: {installed}, {enabled}" + (f", {state['active']}" if state["active"] else "")]
    lines.append("watches: " + ", ".join(state["watched"]))
    lines.append(f"on failure or drift: {'re-apply the profile' if state['reapply'] else 'report only'}")
    if state.get("textfile"):
        lines.append(f"textfile: {state['textfile']}, refreshed by every check"
                     + (" and by its timer" if state.get("textfile_timer") else " (its timer is not installed)"))
    lines.append(_verify_line(state.get("last_verify")))
    return "\n".join(lines)


def _verify_line(verify: dict | None) -> str:
    if verify is None:
        return "last verify: none recorded"
    return f"last verify: {verify['time']} {proof_line(verify)} [{verify.get('source', 'verify')}]"


def status_text(doc: dict) -> str:
    """`vgpu-fix status` for people."""
    ollama, applied, drift = doc["ollama"], doc["applied"], doc["drift"]
    lines = [f"host {doc['root']}, profile {doc['profile']}", installation_line(ollama).strip(),
             "applied: " + (f"generation {applied['generation']} ({applied['profile']}"
                            + "".join(f" --set {k}={v}" for k, v in (applied.get("vars") or {}).items())
                            + f", {applied['created']})" if applied else "nothing applied by vgpu-fix"),
             "drift: " + (f"{drift['pending']} change(s) pending: " + ", ".join(drift["paths"][:5])
                          + (" …" if len(drift["paths"]) > 5 else "") if drift["pending"] else "none (converged)")
             + (f"; {drift['conflicts']} conflict(s)" if drift["conflicts"] else ""),
             _verify_line(doc["last_verify"])]
    w = doc["watch"]
    lines.append(f"watch: {w['unit']} " + ("enabled" if w["installed"] and w["enabled"] else "not enabled")
                 + (f", {w['active']}" if w["active"] else ""))
    return "\n".join(lines)
