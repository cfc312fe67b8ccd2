"""What verify found: one Check per layer and the VerifyReport around them, one JSON shape."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class Check:
    """One layer's verdict: pass, fail or skip, what it saw, and on failure the cause and the fix."""

    name: str
    status: str  # pass | fail | skip
    summary: str
    evidence: list[str] = field(default_factory=list)
    cause: str | None = None
    fix: str | None = None
    details: dict = field(default_factory=dict)


@dataclass
class VerifyReport:
    """Every layer verify ran on a root, in order; `ok` when none failed and one passed."""

    root: str
    profile: str
    unit: str
    user: str | None
    env: dict[str, str]
    backend: str = ""  # the backend verify loads, as `<library folder>/<file>`
    checks: list[Check] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)  # probe layers deliberately not run, and why

    installation: dict | None = None  # detect.Installation.to_dict(): version, generation, how, evidence
    # Off the live root: the local account the probes ran (or would run) as, chosen by the operator
    # (--probe-user); `user` then is only what the image's unit names.
    probe_user: str | None = None

    @property
    def proven(self) -> bool:
        """The backend was really loaded: every check passed or skipped, and no probe was left out."""
        return self.ok and not self.not_run

    @property
    def ok(self) -> bool:
        return not any(c.status == "fail" for c in self.checks) and any(c.status == "pass" for c in self.checks)

    @property
    def cause(self) -> str | None:
        return next((c.cause for c in self.checks if c.status == "fail"), None)

    @property
    def fix(self) -> str | None:
        return next((c.fix for c in self.checks if c.status == "fail"), None)

    def to_dict(self) -> dict:
        out = asdict(self)
        out.update(ok=self.ok, proven=self.proven, cause=self.cause, fix=self.fix)
        return out
