"""The operations both faces (the CLI and the Ansible module) call: plan, apply, rollback and its preview, verify."""

from __future__ import annotations

import json
import math
import os
from typing import TYPE_CHECKING

from fixer import plan as planner
from fixer.errors import InvalidInput
from fixer.facts import host
from fixer.facts.paths import STATE_DIR, host_path
from fixer.model.profile import Profile

if TYPE_CHECKING:
    from fixer.apply.rollback_plan import Restore, RollbackPreview
    from fixer.apply.transaction import Outcome

PLAN_FORMAT = 1


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


def apply(profile: Profile, root: str, *, force: bool = False, restart: bool = True, lock_timeout: float = 0.0,
          saved_plan: dict | None = None, verify: bool = True) -> Outcome:
    """Apply the profile under the lock, journaled; with `verify`, prove the backend loads or roll back."""
    from fixer.apply import transaction

    checker = verifier() if verify else None
    return transaction.apply(profile, root, force=force, restart=restart, lock_timeout=lock_timeout,
                             saved_plan=saved_plan, verify=checker)


def rollback(root: str, *, to: int | None = None, force: bool = False, restart: bool = True,
             lock_timeout: float = 0.0) -> Outcome:
    from fixer.apply import transaction

    return transaction.rollback(root, to=to, force=force, restart=restart, lock_timeout=lock_timeout)


def rollback_preview(root: str, to: int | None = None) -> tuple[RollbackPreview, list[Restore]] | None:
    """What `rollback [--to N]` would undo and restore, read-only; None where vgpu-fix has no state."""
    if not os.path.isdir(host_path(root, STATE_DIR)):
        return None
    from fixer.apply import rollback_plan
    from fixer.apply.journal import Journal

    journal = Journal(root)
    if not journal.generations():
        return None
    selected = rollback_plan.preview(journal, to)
    return selected, rollback_plan.restores(journal, selected)


def verifier():
    """The check apply runs after its changes (and `state: verified` runs alone): (profile, root) -> report."""
    from fixer.verify import layers

    return layers.check_for_apply
