"""Upgrade survival: the systemd units a profile's `watch` section manages, and the check they run."""

from __future__ import annotations

import json
import posixpath
import sys
import time
from dataclasses import dataclass, field

from fixer.facts.systemd import unit_value
from fixer.model.profile import Profile

CHECK_TIMEOUT = "15min"


def watched_paths(profile: Profile) -> list[str]:
    """What an Ollama upgrade (install.sh) replaces, plus the shim dirs the profile links into."""
    spec = profile.verify
    found = [spec.ollama_bin, spec.ollama_lib, f"{spec.ollama_lib}/{spec.library}"]
    found += sorted({posixpath.dirname(s.path) for s in profile.symlinks if not s.path.startswith(spec.ollama_lib + "/")})
    found += profile.watch.paths
    return list(dict.fromkeys(found))


def command(profile: Profile) -> list[str]:
    # The interpreter running this vgpu-fix: the service then runs the same installation.
    return list(profile.watch.command or [sys.executable, "-m", "fixer"])


def _header(profile: Profile) -> str:
    return f"# Managed by vgpu-fix (profile {profile.name}, section `watch`); change the profile, not this file.\n"


def render_path_unit(profile: Profile) -> str:
    unit = profile.watch.unit
    lines = [_header(profile).rstrip("\n"), "[Unit]",
             "Description=vgpu-fix: re-verify Ollama's GPU backend when its files change", "", "[Path]"]
    lines += [f"PathChanged={unit_value(p, 'path')}" for p in watched_paths(profile)]
    lines += [f"Unit={unit}.service", "", "[Install]",
              "WantedBy=" + ("paths.target" if profile.service.scope == "system" else "default.target")]
    return "\n".join(lines) + "\n"


def render_service_unit(profile: Profile) -> str:
    argv = command(profile) + ["watch", "check", "--root", "/", "--profile", profile.watch_files["profile"]]
    lines = [_header(profile).rstrip("\n"), "[Unit]",
             "Description=vgpu-fix: verify Ollama's GPU backend after a change of its files", "", "[Service]",
             "Type=oneshot", f"SyslogIdentifier={profile.watch.unit}", f"TimeoutStartSec={CHECK_TIMEOUT}",
             "ExecStart=" + " ".join(unit_value(w, "exec") for w in argv)]
    return "\n".join(lines) + "\n"


def render_profile(profile: Profile) -> str:
    """The resolved profile the service checks against, as JSON (a YAML subset vgpu-fix loads back)."""

    def literal(node):  # resolved values: keep a `${` literal when the file is loaded again
        if isinstance(node, dict):
            return {k: literal(v) for k, v in node.items()}
        if isinstance(node, list):
            return [literal(v) for v in node]
        return node.replace("${", "$${") if isinstance(node, str) else node

    data = profile.model_dump(mode="json")
    data["watch"]["command"] = command(profile)
    data["vars"] = {}
    return json.dumps(literal(data), indent=1) + "\n"


def planned(profile: Profile) -> list[tuple[str, str, str]]:
    """(kind, path, content or link target) of everything the section manages, in write order."""
    files = profile.watch_files
    return [("file", files["profile"], render_profile(profile)),
            ("file", files["service"], render_service_unit(profile)),
            ("file", files["path"], render_path_unit(profile)),
            ("link", files["wants"], files["path"])]


# ------------------------------------------------------------------ on the host (read side and the check)


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
    return result


def _reapply(root: str, profile: Profile) -> str:
    from fixer import core
    from fixer.errors import FixerError

    try:
        outcome = core.apply(profile, root, lock_timeout=60)
    except FixerError as exc:
        return f"failed: {exc.message}"
    return f"applied generation {outcome.generation}" if outcome.changed else "nothing to change"


def state(root: str, profile: Profile) -> dict:
    """`watch status`: which units are in place, enabled and (on a live root) active; reads only."""
    from fixer import system
    from fixer.errors import ExternalCommandFailed
    from fixer.facts.paths import read_state

    files = profile.watch_files
    present = {role: read_state(root, path).kind != "absent" for role, path in files.items()}
    active = None
    if system.systemd_live(root, profile.service.scope) and present["path"]:
        try:
            active = system.systemctl(profile.service.scope, "show", "-p", "ActiveState", "--value",
                                      f"{profile.watch.unit}.path").strip()
        except ExternalCommandFailed:
            active = "unknown"
    return {"unit": f"{profile.watch.unit}.path", "installed": present["path"] and present["service"],
            "enabled": present["wants"], "active": active, "watched": watched_paths(profile),
            "reapply": profile.watch.reapply}
