"""Text and JSON renderings of the same result objects."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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
    verify: dict | None = None,
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
    }
    if plan is not None:
        doc.update(conflicts=plan.conflicts, warnings=plan.warnings, notes=plan.notes, post_actions=plan.post_actions)
    doc.update(extra)
    return doc


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
    lines = [f"{'gen':>4}  {'status':<12} {'created':<25} {'profile':<20} {'user':<10} changes"]
    for r in rows:
        lines.append(f"{r['generation']:>4}  {r['status']:<12} {r['created']:<25} {r['profile']:<20} "
                     f"{r['user']:<10} {r['changes']}")
    return "\n".join(lines)
