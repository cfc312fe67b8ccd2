"""The service level: the live unit restarted, judged by what that very process logged of its discovery."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from fixer.model.profile import Profile
from fixer.model.verify import Check

# Not Ollama's: seconds for the restarted `ollama serve` to exec, read its config and begin discovery.
START_GRACE_S = 15.0
POLL_S = 1.0
FLAG = "verify --service on the live root (apply: on when it restarts the unit; --no-service-check turns it off)"


@dataclass(frozen=True)
class Restart:
    """One restart of the unit: when (journalctl --since text), the new main process, a monotonic start."""

    scope: str
    unit: str
    since: str
    pid: str | None
    started: float


@dataclass(frozen=True)
class UnitState:
    pid: str | None
    active: str
    sub: str

    @property
    def gone(self) -> bool:
        return self.active in ("failed", "inactive", "deactivating") or self.sub in ("auto-restart", "dead", "failed")


def restart(scope: str, unit: str) -> Restart:
    from fixer import system

    since = time.strftime("%Y-%m-%d %H:%M:%S")
    started = time.monotonic()
    system.systemctl(scope, "restart", unit)
    return Restart(scope, unit, since, unit_state(scope, unit).pid, started)


def unit_state(scope: str, unit: str) -> UnitState:
    from fixer import system

    shown = system.systemctl(scope, "show", "--property=MainPID,ActiveState,SubState", unit)
    values = dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)
    pid = values.get("MainPID", "").strip()
    return UnitState(pid if pid.isdigit() and pid != "0" else None, values.get("ActiveState", "").strip(),
                     values.get("SubState", "").strip())


def discovery_budget(root: str, spec, env: dict[str, str]) -> tuple[float, str]:
    """Seconds Ollama's own discovery may take on this root (one bootstrap budget per library folder it
    scans, serially, then one shared second pass), plus START_GRACE_S; and how that was reckoned. `spec`:
    the profile's verify section with the install tree the unit really runs (layers.install_tree)."""
    from fixer.ollama import detect, generations, layout

    installation = detect.detect(root, spec.ollama_bin, spec.ollama_lib)
    generation = generations.by_name(installation.generation)
    folders = layout.scanned_folders(root, spec.ollama_lib, env)
    seconds = len(folders) * generation.bootstrap_s + generation.second_pass_s + START_GRACE_S
    why = (f"{generation.name}: {len(folders)} folder(s) scanned ({', '.join(folders) or 'none'}) x "
           f"{generation.bootstrap_s:g} s + second pass {generation.second_pass_s:g} s + start {START_GRACE_S:g} s")
    return seconds, why


def check_service(root: str, profile: Profile, env: dict[str, str], restarted: Restart | None = None,
                  timeout: float | None = None, echo=None, spec=None) -> Check:
    """Restart the unit (unless `restarted` says it just was) and follow the journal of that process
    until its "inference compute" lines: the GPU passes; the CPU, an exit or crash loop, or no line
    within Ollama's own discovery budget (or `timeout`) fails, with doctor's reading of the lines."""
    from fixer import system
    from fixer.errors import ExternalCommandFailed

    scope, unit = profile.service.scope, profile.service.unit
    if not system.systemd_live(root, scope):
        why = ("a root other than / has no running service of its own" if root != "/"
               else f"no running {scope} service manager")
        return Check("service", "skip", f"not run: {why}", flag=FLAG)
    budget, reckoned = discovery_budget(root, spec or profile.verify, env)
    if timeout is not None:
        budget, reckoned = timeout, f"--service-timeout {timeout:g} s (Ollama's own: {reckoned})"
    if restarted is None:
        restarted = restart(scope, unit)
    evidence = [f"{unit} restarted; main process {restarted.pid or '(none)'}", f"budget {budget:g} s: {reckoned}"]
    deadline = restarted.started + budget
    while True:
        try:
            state = unit_state(scope, unit)
            text = _lines_of(system.journal(unit, scope, since=restarted.since), restarted.pid)
        except ExternalCommandFailed as exc:  # nothing to judge by: not proven, not failed
            return Check("service", "skip", f"not run: could not read {unit}'s state or journal: {exc.message}",
                         evidence, flag="make `systemctl show` and `journalctl` work for this user, then `verify --service`")
        judged = _judge(root, profile, unit, text, evidence)
        if judged is not None:
            return judged
        if restarted.pid is None or state.pid != restarted.pid or state.gone:
            return _failed(root, profile, text, evidence + [f"now: MainPID={state.pid or 0} {state.active}/{state.sub}"],
                           f"{unit} exited before discovery finished" + (" and is restarting (crash loop)"
                                                                        if state.sub == "auto-restart" else ""),
                           "the restarted service died during start-up")
        left = deadline - time.monotonic()
        if left <= 0:
            return _failed(root, profile, text, evidence, f"no \"inference compute\" line from {unit} within {budget:g} s",
                           "discovery hung past the budget Ollama allows itself, or the service never started it")
        if echo:
            echo(f"  waiting for {unit}'s \"inference compute\" line ({left:.0f} s left)")
        time.sleep(min(POLL_S, left))


def _judge(root: str, profile: Profile, unit: str, text: str, evidence: list[str]) -> Check | None:
    from fixer.ollama.logs import summarize

    summary = summarize(text)
    if not summary.compute:
        return None
    lines = evidence + [json.dumps(e.data, sort_keys=True) for e in summary.compute]
    gpus = summary.gpu_devices
    if gpus:
        libraries = sorted({str(e.data.get("library")) for e in gpus})
        return Check("service", "pass", f"{unit} reports {len(gpus)} GPU(s), library={','.join(libraries)}", lines,
                     details={"compute": [e.data for e in summary.compute]})
    return _failed(root, profile, text, lines, f"{unit} fell back to the CPU (inference compute id=cpu library=cpu)",
                   "Ollama's own discovery found no usable GPU")


def _failed(root: str, profile: Profile, text: str, evidence: list[str], summary: str, cause: str) -> Check:
    """A failed service check, with doctor's diagnosis of the lines that process logged."""
    from fixer.doctor import verdict as doctors

    diagnosis = doctors.diagnose(root, text or None, profile)
    top = diagnosis.findings[0] if diagnosis.findings else None
    fix = top.fix.text if top is not None else "run `vgpu-fix doctor` for the cause and the setting that fixes it"
    return Check("service", "fail", summary, evidence + [f"doctor: {diagnosis.verdict}"],
                 f"{cause}; doctor: {diagnosis.verdict}", fix, {"diagnosis": diagnosis.to_dict()})


def _lines_of(journal_json: str, pid: str | None) -> str:
    """The JSON journal lines logged by process `pid` (the restarted `ollama serve`): the instance
    before the restart may have logged in the same second. No pid: nothing counts."""
    if pid is None:
        return ""
    kept = []
    for line in journal_json.splitlines():
        try:
            if json.loads(line).get("_PID") == pid:
                kept.append(line)
        except (ValueError, AttributeError):
            continue
    return "\n".join(kept)
