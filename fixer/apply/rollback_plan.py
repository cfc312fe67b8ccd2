"""What a rollback would do, decided once for the CLI, the Ansible module and check mode alike."""

from __future__ import annotations

from dataclasses import dataclass

from fixer.apply.journal import OPEN_STATUSES, Damaged, Generation, Journal
from fixer.errors import Conflict, InvalidInput
from fixer.facts.paths import PathState, read_state


@dataclass(frozen=True)
class Restore:
    """One path a rollback would put back, from what is there now to what generation N recorded."""

    generation: int
    path: str
    current: PathState
    recorded: PathState
    rebuilt: bool = False  # ldconfig's cache, rebuilt since the apply: the rollback reruns ldconfig for it


@dataclass(frozen=True)
class RollbackPreview:
    """The generations a rollback would undo (newest first), the interrupted ones it would finish, and drift."""

    to: int | None
    targets: tuple[Generation, ...]
    interrupted: tuple[Generation, ...]
    drifted: tuple[str, ...]
    skipped: tuple[Damaged, ...] = ()  # damaged generations newer than the targets: named, never used

    @property
    def empty(self) -> bool:
        return not self.targets and not self.interrupted

    @property
    def numbers(self) -> list[int]:
        return [g.number for g in (*self.interrupted, *self.targets)]

    def check_drift(self, force: bool, override: str = "--force") -> None:
        """Refuse to discard edits made since the apply unless forced; `override` names the face's way past
        it (`--force` on the command line, `force: true` in Ansible)."""
        if self.drifted and not force:
            raise Conflict("managed paths changed since that apply; rollback would discard those edits "
                           f"({override} rolls back anyway)", details=list(self.drifted))

    def nothing_to_roll_back(self) -> InvalidInput:
        """The refusal when no generation can be undone: a damaged newer generation is named, not hidden
        behind "no applied generation"."""
        if self.skipped:
            return InvalidInput(self.skipped[-1].story(), details=[d.story() for d in self.skipped[:-1]])
        return nothing_applied(self.to)


def nothing_applied(to: int | None = None) -> InvalidInput:
    return InvalidInput("nothing to roll back: no applied generation" + (f" at or after {to}" if to else ""))


NEVER_CHANGED = "nothing to roll back: vgpu-fix has not changed this root"


def nothing_left(to: int | None) -> str:
    """Why a rollback has nothing to undo: success, the host already is as the rollback would leave it."""
    return "nothing to roll back: " + (f"generation {to} and every later one are already rolled back"
                                       if to is not None else "no applied generation")


def preview(journal: Journal, to: int | None = None) -> RollbackPreview:
    """Select what `rollback [--to N]` undoes: the newest applied generation, or every applied one >= N."""
    generations, damaged = journal.scan()
    broken = next((d for d in damaged if d.number == to), None)
    if broken is not None:
        raise InvalidInput(broken.story())
    known = [g.number for g in generations]
    if to is not None and to not in known:
        span = f" (this root has {known[0]}..{known[-1]})" if known else ""
        raise InvalidInput(f"generation {to} does not exist{span}")
    applied = [g for g in generations if g.status == "applied"]
    targets = [g for g in reversed(applied) if g.number >= to] if to is not None else applied[-1:]
    interrupted = [g for g in generations if g.status in OPEN_STATUSES]
    skipped = [d for d in damaged if not targets or d.number > targets[-1].number]
    return RollbackPreview(to, tuple(targets), tuple(interrupted), tuple(drift(journal, targets)), tuple(skipped))


def drift(journal: Journal, targets: list[Generation]) -> list[str]:
    """Paths edited since the apply that a rollback would discard.

    Targets are walked newest first: a path a newer target also manages is owed the state that newer
    generation left, so the older generation's record of it is not drift."""
    drifted: list[str] = []
    newer: set[str] = set()
    for generation in targets:
        drifted += [f"{p} (generation {generation.number})" for p in journal.drifted(generation) if p not in newer]
        newer.update(e.path for e in generation.entries)
    return drifted


def restores(journal: Journal, preview: RollbackPreview) -> list[Restore]:
    """Each path whose current state differs from what the rollback would restore, in restore order."""
    found: list[Restore] = []
    for generation in (*preview.interrupted, *preview.targets):
        for entry in reversed(generation.entries):
            current = read_state(journal.root, entry.path)
            if journal.rebuilt_since(generation, entry):
                found.append(Restore(generation.number, entry.path, current, current, rebuilt=True))
                continue
            recorded = journal.recorded_state(generation, entry)
            if current != recorded:
                found.append(Restore(generation.number, entry.path, current, recorded))
    return found
