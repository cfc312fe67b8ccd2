"""What verify found: one Check per layer and the VerifyReport around them, judged by proof level; one JSON shape."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from fixer.model.proof import HOW_TO_REACH, LEVELS, Level, Outcome, level_of

# What a probe's output (a root's own program, untrusted) can put into a report: each string at most
# MAX_TEXT characters with control and bidi-override characters escaped, each list at most MAX_ITEMS.
MAX_TEXT, MAX_ITEMS = 2000, 64
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def reported(value: object) -> object:
    """`value` as a report may carry it: strings capped and made printable, lists capped, recursively."""
    if isinstance(value, str):
        text = _UNSAFE.sub(lambda m: f"\\x{ord(m.group(0)):02x}" if ord(m.group(0)) < 0x100
                           else f"\\u{ord(m.group(0)):04x}", value)
        return text if len(text) <= MAX_TEXT else f"{text[:MAX_TEXT]}… ({len(text) - MAX_TEXT} more characters)"
    if isinstance(value, (list, tuple)):
        items = [reported(v) for v in value[:MAX_ITEMS]]
        return items + ([f"… ({len(value) - MAX_ITEMS} more)"] if len(value) > MAX_ITEMS else [])
    if isinstance(value, dict):
        return {k: reported(v) for k, v in value.items()}
    return value


@dataclass
class Check:
    """One layer's verdict: pass, fail or skip, what it saw, and on failure the cause and the fix.
    A skip says why in `summary` and, where an option would have run it, names that option in `flag`."""

    name: str
    status: str  # pass | fail | skip
    summary: str
    evidence: list[str] = field(default_factory=list)
    cause: str | None = None
    fix: str | None = None
    details: dict = field(default_factory=dict)
    flag: str | None = None

    @property
    def level(self) -> Level:
        return level_of(self.name)

    def to_dict(self) -> dict:
        return {**reported(asdict(self)), "level": str(self.level)}  # type: ignore[dict-item]


@dataclass
class VerifyReport:
    """Every layer verify ran on a root, in order, and the level the operator asked to reach.

    The level reached is the highest level all of whose checks passed, every level below it included;
    a real service that reported the GPU vouches for the levels below it (it is the arbiter: a model of
    it that disagrees is listed in `overruled`, not counted). The outcome is `passed` only when the
    level asked was reached and nothing judged failed."""

    root: str
    profile: str
    unit: str
    user: str | None
    env: dict[str, str]
    backend: str = ""  # the backend verify loads, as `<library folder>/<file>`
    checks: list[Check] = field(default_factory=list)
    asked: Level = Level.MODELED
    unmodeled: str | None = None  # why `modeled` does not count for this Ollama release (source never read)

    installation: dict | None = None  # detect.Installation.to_dict(): version, generation, how, evidence
    # Off the live root: the local account the probes ran (or would run) as, chosen by the operator
    # (--probe-user); `user` then is only what the image's unit names.
    probe_user: str | None = None

    def _at(self, level: Level) -> list[Check]:
        return [c for c in self.checks if c.level == level]

    @property
    def _arbiter(self) -> list[Check]:
        """The checks of the real service (and a model it loaded), where they ran: they decide."""
        return [c for c in self.checks if c.level >= Level.SERVICE and c.status != "skip"]

    @property
    def _service_vouches(self) -> bool:
        return any(c.level == Level.SERVICE and c.status == "pass" for c in self.checks)

    @property
    def judged(self) -> list[Check]:
        return self._arbiter or self.checks

    @property
    def overruled(self) -> list[Check]:
        """Pre-flight checks that failed while the real service reported the GPU: the model was wrong."""
        if not self._service_vouches:
            return []
        return [c for c in self.checks if c.level < Level.SERVICE and c.status == "fail"]

    @property
    def reached(self) -> Level | None:
        reached = None
        for level in LEVELS:
            if level < Level.SERVICE and self._service_vouches:
                reached = level
                continue
            checks = self._at(level)
            if not checks or any(c.status != "pass" for c in checks):
                break
            if level == Level.MODELED and self.unmodeled:
                break
            reached = level
        return reached

    @property
    def outcome(self) -> Outcome:
        if any(c.status == "fail" for c in self.judged):
            return Outcome.FAILED
        reached = self.reached
        return Outcome.PASSED if reached is not None and reached >= self.asked else Outcome.NOT_PROVEN

    @property
    def ok(self) -> bool:
        """The level asked was reached and passed."""
        return self.outcome == Outcome.PASSED

    @property
    def failed(self) -> bool:
        return self.outcome == Outcome.FAILED

    def not_reached(self) -> list[dict]:
        """Every level above the one reached: why it was not reached and what reaches it."""
        reached = self.reached
        above = [lv for lv in LEVELS if reached is None or lv > reached]
        return [{"level": str(lv), "asked": lv <= self.asked, **self._why_not(lv, above[0])} for lv in above]

    def _why_not(self, level: Level, first_missing: Level) -> dict:
        checks = self._at(level)
        failed = next((c for c in checks if c.status == "fail"), None)
        if failed is not None:
            return {"why": f"{failed.name} failed: {failed.cause or failed.summary}", "flag": None}
        if level == Level.MODELED and self.unmodeled and checks and all(c.status == "pass" for c in checks):
            return {"why": self.unmodeled, "flag": HOW_TO_REACH[Level.SERVICE]}
        skipped = next((c for c in checks if c.status == "skip"), None)
        if skipped is not None:
            return {"why": f"{skipped.name} not run: {_unprefixed(skipped.summary)}",
                    "flag": skipped.flag or HOW_TO_REACH[level]}
        if checks:
            return {"why": f"its checks passed, but {first_missing} below it was not reached", "flag": None}
        return {"why": "not asked", "flag": HOW_TO_REACH[level]}

    @property
    def cause(self) -> str | None:
        return next((c.cause for c in self.judged if c.status == "fail"), None)

    @property
    def fix(self) -> str | None:
        return next((c.fix for c in self.judged if c.status == "fail"), None)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["checks"] = [c.to_dict() for c in self.checks]
        reached = self.reached
        out.update(asked=str(self.asked), reached=str(reached) if reached else None, outcome=str(self.outcome),
                   ok=self.ok, not_reached=self.not_reached(), overruled=[c.name for c in self.overruled],
                   cause=reported(self.cause), fix=reported(self.fix))
        return out


def _unprefixed(summary: str) -> str:
    return summary.removeprefix("not run: ").removeprefix("skipped: ")
