"""`vgpu-fix watch check`, what the watch units run: settle, verify, plan for drift, re-apply if asked.

An operation over fixer.core (above it), kept apart from fixer.watch, which the planner imports."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from fixer.model.profile import Profile
from fixer.watch import watched_paths


@dataclass
class CheckResult:
    """What one triggered check found: the verify verdict, drift, and a re-apply if the profile asks."""

    ok: bool
    outcome: str  # the verify outcome: passed | failed | not_proven (model.proof.Outcome)
    backend: str
    cause: str | None
    drift: int
    conflicts: int
    reapplied: str | None = None
    lines: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        from fixer.errors import VERIFY_EXIT, ExitCode

        if self.outcome != "passed":
            return int(VERIFY_EXIT[self.outcome])
        return int(ExitCode.CONFLICT if self.conflicts else ExitCode.DRIFT if self.drift else ExitCode.OK)

    def to_dict(self) -> dict:
        return {"ok": self.ok, "outcome": self.outcome, "backend": self.backend, "cause": self.cause, "drift": self.drift,
                "conflicts": self.conflicts, "reapplied": self.reapplied, "exit_code": self.exit_code}


def settle(root: str, paths: list[str], quiet_for: float, limit: float = 300.0) -> float:
    """Wait until none of `paths` changed (ctime, lstat) for `quiet_for` seconds; return seconds waited."""
    from fixer.facts.paths import stat_in

    def stamp() -> tuple:
        out = []
        for path in paths:
            st = stat_in(root, path, follow=False)
            out.append((path, st.st_ctime_ns, st.st_ino) if st else (path, None, None))
        return tuple(out)

    start = time.monotonic()
    last, quiet_since = stamp(), time.monotonic()
    while time.monotonic() - quiet_since < quiet_for and time.monotonic() - start < limit:
        time.sleep(min(0.5, quiet_for))
        now = stamp()
        if now != last:
            last, quiet_since = now, time.monotonic()
    return time.monotonic() - start


def check(root: str, profile: Profile, progress=None) -> CheckResult:
    """Settle, verify (recorded for `status`), plan for drift; re-apply when the profile says so."""
    from fixer import core
    from fixer.verify import layers

    waited = settle(root, watched_paths(profile), profile.watch.settle)
    report = layers.verify(root, profile, progress=progress)
    core.record_verify(root, report)
    plan = core.make_plan(profile, root)
    result = CheckResult(report.ok, str(report.outcome), report.backend, report.cause, len(plan.pending),
                         len(plan.conflicts))
    if profile.watch.reapply and (result.drift or not result.ok) and not result.conflicts:
        result.reapplied = _reapply(root, profile)
    from fixer.render import proof_line

    verdict = proof_line(report.to_dict())
    drift = f"{result.drift} change(s) pending" if result.drift else "none"
    result.lines.append(f"vgpu-fix watch: {verdict}; drift: {drift}"
                        + (f"; {result.conflicts} conflict(s)" if result.conflicts else "")
                        + (f" (settled after {waited:.1f} s)" if waited >= 1 else ""))
    if result.reapplied:
        result.lines.append(f"vgpu-fix watch: re-apply: {result.reapplied}")
    elif not result.ok or result.drift:
        result.lines.append("vgpu-fix watch: run `vgpu-fix doctor` and `vgpu-fix plan` on this host "
                            "(or set watch.reapply in the profile)")
    if profile.watch.textfile:  # last: after a re-apply, the metrics tell the state it left
        result.lines.append(f"vgpu-fix watch: textfile {profile.watch.textfile}: " + _refresh_textfile(root, profile))
    return result


def _refresh_textfile(root: str, profile: Profile) -> str:
    """Write the profile's node-exporter textfile from a fresh status, atomically and inside `root` (its
    symlinks resolved there, as every managed path); says how it went."""
    from fixer import core
    from fixer.apply import writes
    from fixer.errors import FixerError

    doc = {"profile": profile.name, "root": root, **core.status(root, profile)}
    try:
        writes.write_file(root, profile.watch.textfile, core.prometheus_text(doc).encode(), 0o644)
    except (OSError, FixerError) as exc:
        return "cannot write: " + (exc.message if isinstance(exc, FixerError) else exc.strerror)
    return "refreshed"


def _reapply(root: str, profile: Profile) -> str:
    from fixer import core
    from fixer.errors import FixerError

    try:
        outcome = core.apply(profile, root, lock_timeout=60)
    except FixerError as exc:
        return f"failed: {exc.message}"
    return f"applied generation {outcome.generation}" if outcome.changed else "nothing to change"
