"""Read-only planning: probe a root and plan it; save a plan and load it back for `apply --plan`."""

from __future__ import annotations

import json
import os

from fixer.facts import host

from fixer import plan as planner
from fixer.errors import InvalidInput
from fixer.model.profile import Profile
from fixer.facts.paths import STATE_DIR, host_path

PLAN_FORMAT = 1


def _interrupted(root: str) -> list:
    if not os.path.isdir(host_path(root, STATE_DIR)):
        return []
    from fixer.apply.journal import Journal  # the write side loads only where vgpu-fix has state

    return Journal(root).open_generations()


def make_plan(profile: Profile, root: str, force: bool = False) -> planner.Plan:
    plan = planner.build(profile, host.probe(root, profile), force=force)
    for generation in _interrupted(root):
        plan.warnings.insert(0, f"generation {generation.number} was interrupted ({generation.status}); "
                                "the next apply or `vgpu-fix rollback` restores its before-state")
    return plan


def save_plan(plan: planner.Plan, profile: Profile, path: str) -> None:
    document = {"format": PLAN_FORMAT, "profile_data": profile.model_dump(mode="json"), "plan": plan.to_dict()}
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(document, fh, indent=1)  # key order is meaningful: environment and directives


def load_plan(path: str) -> tuple[Profile, dict]:
    try:
        with open(path, encoding="utf-8") as fh:
            document = json.load(fh)
        if document.get("format") != PLAN_FORMAT:
            raise ValueError("unknown plan format")
        return Profile.model_validate(document["profile_data"]), document["plan"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(f"{path}: not a usable saved plan ({exc})") from None
