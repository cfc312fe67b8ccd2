"""What a plan is: typed changes (kind, action, before/after, reason) and the plan around them, one JSON shape."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from fixer.model.path import PathState


class Word(str, Enum):
    """A closed set of words that still prints, formats and compares as its plain value."""

    def __str__(self) -> str:
        return self.value

    __format__ = str.__format__


class ChangeKind(Word):
    """What a change manages; the JSON `changes[].kind`."""

    SYMLINK = "symlink"
    DROPIN = "dropin"
    LD_SO_CONF = "ld_so_conf"
    LD_SO_PRELOAD = "ld_so_preload"
    UDEV = "udev"
    FILE = "file"
    ABSENT = "absent"
    ROLLBACK = "rollback"  # a preview of what a rollback restores
    WATCH = "watch"  # the upgrade watch's units and profile copy


class Action(Word):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    NOOP = "noop"


class PostAction(Word):
    """What runs after the writes, in this order, only when a change needs it."""

    LDCONFIG = "ldconfig"
    UDEV_RELOAD = "udev-reload"
    UDEV_TRIGGER = "udev-trigger"  # written "udev-trigger SYSPATH": one device the rule matches
    DAEMON_RELOAD = "daemon-reload"
    START_WATCH = "start-watch"  # (re)start the upgrade watch's .path unit
    STOP_WATCH = "stop-watch"
    RESTART = "restart"


@dataclass(frozen=True)
class Change:
    """One path's step from `before` to `after`; `action` is create, update, delete or noop."""

    kind: ChangeKind
    path: str
    action: Action
    before: PathState
    after: PathState
    reason: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", ChangeKind(self.kind))
        object.__setattr__(self, "action", Action(self.action))

    @property
    def pending(self) -> bool:
        return self.action is not Action.NOOP

    def to_dict(self) -> dict:
        return {
            "kind": self.kind.value,
            "path": self.path,
            "action": self.action.value,
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "reason": self.reason,
        }


@dataclass
class Plan:
    """Everything `apply` would do, as data: changes (no-ops included), conflicts, notes, post-actions."""

    profile: str
    root: str
    changes: list[Change]
    conflicts: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    post_actions: list[str] = field(default_factory=list)  # PostAction values; udev-trigger carries a syspath
    fingerprints: dict[str, str] = field(default_factory=dict)
    forced: list[str] = field(default_factory=list)
    installation: dict | None = None  # the Ollama found under the root (fixer.ollama.detect), set by core
    source: str = ""  # where the profile came from, when worth saying (a site profile shadowing a shipped one)

    @property
    def pending(self) -> list[Change]:
        return [c for c in self.changes if c.pending]

    @property
    def converged(self) -> bool:
        return not self.pending and not self.conflicts

    def to_dict(self) -> dict:
        return {
            "profile": self.profile,
            "root": self.root,
            "changes": [c.to_dict() for c in self.changes],
            "conflicts": self.conflicts,
            "notes": self.notes,
            "warnings": self.warnings,
            "post_actions": [str(a) for a in self.post_actions],
            "fingerprints": self.fingerprints,
            "installation": self.installation,
            "source": self.source,
        }
