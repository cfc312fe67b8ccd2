"""Shared machinery of the reliability tier and scripts/reliability_report.py.

Runs the real CLI in separate processes, kills it at named crash points, and compares host trees.
Two runners execute `vgpu-fix ARGS` in a separate process:
- "subprocess": `python -m fixer ARGS` (a fresh interpreter; what an operator runs);
- "fork": a child forked from this interpreter with fixer already imported that calls the same
  `fixer.cli.main()` with the same argv and environment (~10x faster; used for the big matrices).
A SIGKILL at a crash point kills only that process in both; the matrix checks both agree.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile

from fixer.apply.journal import DERIVED, Journal
from fixer.demo import build_seed_host, snapshot_tree

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEMP_FILE = re.compile(r"^\..+\.vgpu-fix-.*\.tmp$")
WATCHED = ("etc/systemd/system/ollama.service.d/zz-vgpu-fix.conf",
           "etc/systemd/system/ollama.service.d/override.conf", "etc/ld.so.conf", "etc/ld.so.conf.d/vgpu-fix.conf",
           "etc/ld.so.preload")


@dataclasses.dataclass
class Run:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_subprocess(*args: str, env: dict | None = None, timeout: float = 120, stdin: str | None = None,
                   signal_after: tuple[float, int] | None = None) -> Run:
    """`python -m fixer ARGS`; `stdin`: a path read as its standard input; `signal_after`: (seconds,
    signal) sent while it runs. A run past `timeout` is killed: returncode -9 (a hang is a finding)."""
    import signal as signals

    with open(stdin or os.devnull, "rb") as given:
        proc = subprocess.Popen([sys.executable, "-m", "fixer", *args], stdin=given, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=REPO,
                                env={**os.environ, "NO_COLOR": "1", **(env or {})})
        try:
            if signal_after is not None:
                try:
                    proc.wait(timeout=signal_after[0])
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal_after[1])
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signals.SIGKILL)
            out, err = proc.communicate()
    return Run(args, proc.returncode, out, err)


_WARM = False


def run_fork(*args: str, env: dict | None = None, timeout: float = 120, stdin: str | None = None,
             signal_after: tuple[float, int] | None = None) -> Run:
    """`vgpu-fix ARGS` in a forked child; returncode is -SIG when the child died of a signal. `stdin`,
    `signal_after` and `timeout` as in run_subprocess (a child past `timeout` is killed: -9)."""
    global _WARM
    if not _WARM:  # import in the parent what every child needs, so children start warm
        import sh  # noqa: F401

        import fixer.apply.transaction  # noqa: F401
        import fixer.cli  # noqa: F401
        import fixer.profiles  # noqa: F401
        import fixer.render  # noqa: F401
        _WARM = True
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns into the caller
            code = 1
            try:
                if stdin is not None:
                    given = os.open(stdin, os.O_RDONLY)
                    os.dup2(given, 0)
                    os.close(given)
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                # Under pytest sys.stdout is a capture object, not fd 1: rebind both streams.
                sys.stdout = open(1, "w", encoding="utf-8", errors="replace", closefd=False)
                sys.stderr = open(2, "w", encoding="utf-8", errors="replace", closefd=False)
                os.environ.update({"NO_COLOR": "1", **(env or {})})
                for name in ("VGPU_FIX_CRASH_AT", "VGPU_FIX_CRASH_LOG"):
                    if name not in (env or {}):
                        os.environ.pop(name, None)
                sys.argv = ["vgpu-fix", *args]
                from fixer.apply import crashpoints
                from fixer.cli import main

                crashpoints.reset()  # the parent may have counted steps in earlier in-process runs

                try:
                    main()
                    code = 0
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException:  # noqa: BLE001 - report, then exit like the interpreter would
                import traceback

                traceback.print_exc()
                code = 1
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        status = _wait(pid, timeout, signal_after)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        out.seek(0)
        err.seek(0)
        return Run(args, code, out.read().decode(errors="replace"), err.read().decode(errors="replace"))


def _wait(pid: int, timeout: float, signal_after: tuple[float, int] | None) -> int:
    """The child's wait status; sends `signal_after` on time, and SIGKILL past `timeout`."""
    import signal as signals
    import time

    start = time.monotonic()
    signalled = signal_after is None
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        elapsed = time.monotonic() - start
        if not signalled and elapsed >= signal_after[0]:  # type: ignore[index]
            os.kill(pid, signal_after[1])  # type: ignore[index]
            signalled = True
        if elapsed >= timeout:
            os.kill(pid, signals.SIGKILL)
            return os.waitpid(pid, 0)[1]
        time.sleep(0.01)


RUNNERS = {"fork": run_fork, "subprocess": run_subprocess}


def seed(root: str) -> str:
    os.makedirs(root)
    build_seed_host(root)
    return root


def copy_root(src: str, dst: str) -> str:
    """An exact copy (symlinks as links, modes, owners) of a test root."""
    shutil.copytree(src, dst, symlinks=True)
    for directory, dirs, files in os.walk(src):
        for name in dirs + files + [""]:
            real = os.path.join(directory, name)
            st = os.lstat(real)
            os.lchown(os.path.join(dst, os.path.relpath(real, src)), st.st_uid, st.st_gid)
    return dst


def tree(root: str) -> dict:
    """snapshot_tree without the state dir; the derived ld caches compared by kind and mode only."""
    snap = snapshot_tree(root)
    for path in DERIVED:
        rel = path.lstrip("/")
        if rel in snap and snap[rel][0] == "file":
            snap[rel] = snap[rel][:4]
    return snap


def watched_bytes(root: str) -> dict:
    found = {}
    for rel in WATCHED:
        real = os.path.join(root, rel)
        found[rel] = open(real, "rb").read() if os.path.lexists(real) and not os.path.islink(real) else None
    return found


def temp_files(root: str) -> list[str]:
    """Leftover vgpu-fix temp files anywhere under the root (the state dir included)."""
    found = []
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            if TEMP_FILE.match(name) or name.endswith(".tmp") and "vgpu-fix" in directory:
                found.append(os.path.relpath(os.path.join(directory, name), root))
    return found


def generation_statuses(root: str) -> list[str]:
    journal = Journal(root)
    if not os.path.isdir(journal.directory):
        return []
    intact, damaged = journal.scan()  # damaged ones listed as "damaged", in order
    return [g.status for g in sorted(intact + damaged, key=lambda g: g.number)]


def list_steps(run, command: str, root: str, args: tuple[str, ...] = ()) -> tuple[list[str], Run]:
    """Every crash step `command` reaches on `root`, in order (`step#n`), via VGPU_FIX_CRASH_LOG."""
    log = os.path.join(os.path.dirname(root), f"steps-{command}.log")
    result = run(command, "--root", root, *args, env={"VGPU_FIX_CRASH_LOG": log})
    with open(log, encoding="utf-8") as fh:
        steps = [line.strip() for line in fh if line.strip()]
    os.unlink(log)
    return steps, result


APPLY = ("--profile", "h100-vgpu", "--no-verify")


@dataclasses.dataclass
class CrashCase:
    """One crash point and everything observed around it."""

    command: str  # the command killed: apply or rollback
    step: str
    killed: bool = False
    status_after_crash: list[str] = dataclasses.field(default_factory=list)
    plan_rc: int | None = None
    plan_says_interrupted: bool = False
    rollback_rc: int | None = None
    rollback_output: str = ""
    restored_by_rollback: bool = False
    watched_by_rollback: bool = False
    apply_rc: int | None = None
    apply_output: str = ""
    apply_reports_recovery: bool = False
    converged_by_apply: bool = False
    restored_after_apply_and_rollback: bool = False
    temp_files: list[str] = dataclasses.field(default_factory=list)
    open_generations_left: list[str] = dataclasses.field(default_factory=list)
    audit_ok: bool = False

    @property
    def interrupted(self) -> bool:
        """The crash left an open generation (pending or rolling_back) behind."""
        return any(s in ("pending", "rolling_back") for s in self.status_after_crash)

    def problems(self) -> list[str]:
        found = []
        if not self.killed:
            found.append("the process was not killed at this step")
        if self.interrupted and not self.plan_says_interrupted:
            found.append("plan did not report the interrupted generation")
        nothing_to_undo = not any(s in ("pending", "rolling_back", "applied") for s in self.status_after_crash)
        if nothing_to_undo:
            # Killed before apply's manifest existed (nothing changed) or after a rollback committed
            # (everything restored): rollback rightly finds nothing to do (exit 0) and changes nothing.
            if not (self.rollback_rc == 0 and "nothing to roll back" in self.rollback_output):
                found.append(f"rollback exited {self.rollback_rc}: {self.rollback_output.strip()[-300:]}")
        elif self.rollback_rc != 0:
            found.append(f"rollback exited {self.rollback_rc}: {self.rollback_output.strip()[-300:]}")
        if not self.restored_by_rollback:
            found.append("rollback did not restore the exact before-state tree")
        if not self.watched_by_rollback:
            found.append("drop-in / ld.so.conf / ld.so.preload bytes differ from before")
        if self.apply_rc != 0:
            found.append(f"recovering apply exited {self.apply_rc}: {self.apply_output.strip()[-300:]}")
        if self.interrupted and not self.apply_reports_recovery:
            found.append("apply did not report recovering the interrupted generation")
        if not self.converged_by_apply:
            found.append("apply after the crash did not converge the host")
        if not self.restored_after_apply_and_rollback:
            found.append("apply + rollback after the crash did not restore the before-state")
        if self.temp_files:
            found.append(f"temp files survived: {self.temp_files}")
        if self.open_generations_left:
            found.append(f"generations left open: {self.open_generations_left}")
        if not self.audit_ok:
            found.append("the audit log is unreadable or lost lines")
        return found


class CrashMatrix:
    """Seeds, references and the per-step experiment, in one scratch directory."""

    def __init__(self, workdir: str, run=run_fork):
        self.workdir = workdir
        self.run = run
        self.seed_root = seed(os.path.join(workdir, "seed", "root"))
        self.before = tree(self.seed_root)
        self.before_bytes = watched_bytes(self.seed_root)
        applied = copy_root(self.seed_root, os.path.join(workdir, "applied"))
        result = self.run("apply", "--root", applied, *APPLY)
        assert result.returncode == 0, result.output
        self.applied_root = applied
        self.applied = tree(applied)
        self._n = 0

    def steps(self, command: str) -> list[str]:
        root = self._fresh(command == "rollback")
        steps, result = list_steps(self.run, command, root, APPLY if command == "apply" else ())
        assert result.returncode == 0, result.output
        return steps

    def _fresh(self, applied: bool) -> str:
        self._n += 1
        return copy_root(self.applied_root if applied else self.seed_root,
                         os.path.join(self.workdir, f"case{self._n:04d}", "root"))

    def case(self, command: str, step: str) -> CrashCase:
        case = CrashCase(command, step)
        root = self._fresh(command == "rollback")
        audit_before = _audit_lines(root)
        args = APPLY if command == "apply" else ()
        crashed = self.run(command, "--root", root, *args, env={"VGPU_FIX_CRASH_AT": step})
        case.killed = crashed.returncode == -9
        case.status_after_crash = generation_statuses(root)
        twin = copy_root(root, os.path.join(os.path.dirname(root), "twin"))

        # Path 1: plan reports the interruption; rollback restores the before-state.
        plan = self.run("plan", "--root", root, "--profile", "h100-vgpu")
        case.plan_rc = plan.returncode
        case.plan_says_interrupted = "interrupted" in plan.output
        back = self.run("rollback", "--root", root)
        case.rollback_rc, case.rollback_output = back.returncode, back.output
        case.restored_by_rollback = tree(root) == self.before
        case.watched_by_rollback = watched_bytes(root) == self.before_bytes

        # Path 2 (on an exact copy of the crashed host): apply recovers, converges; rollback restores.
        again = self.run("apply", "--root", twin, *APPLY)
        case.apply_rc, case.apply_output = again.returncode, again.output
        case.apply_reports_recovery = "recovered interrupted generation" in again.output
        case.converged_by_apply = tree(twin) == self.applied
        self.run("rollback", "--root", twin)
        case.restored_after_apply_and_rollback = tree(twin) == self.before and watched_bytes(twin) == self.before_bytes

        case.temp_files = temp_files(root) + temp_files(twin)
        case.open_generations_left = [s for r in (root, twin) for s in generation_statuses(r)
                                      if s in ("pending", "rolling_back")]
        audit_after = _audit_lines(root)
        case.audit_ok = audit_after is not None and audit_after[:len(audit_before or [])] == (audit_before or [])
        shutil.rmtree(os.path.dirname(root), ignore_errors=True)
        return case


def _audit_lines(root: str) -> list[str] | None:
    path = os.path.join(root, "var/lib/vgpu-fix/audit.log")
    if not os.path.exists(path):
        return []
    import json

    try:
        with open(path, encoding="utf-8") as fh:
            lines = [line for line in fh if line.strip()]
        for line in lines:
            json.loads(line)
        return lines
    except (OSError, ValueError):
        return None


def _worker(args: tuple) -> list[CrashCase]:
    workdir, runner, jobs = args
    matrix = CrashMatrix(workdir, RUNNERS[runner])
    return [matrix.case(command, step) for command, step in jobs]


def run_matrix(workdir: str, runner: str = "fork", processes: int = 2,
               sample: bool = False) -> dict[str, list[CrashCase]]:
    """Kill `apply` and `rollback` at every crash step they reach (or one per step name with
    `sample`) and observe recovery; cases are spread over `processes` worker processes."""
    import multiprocessing

    lister = CrashMatrix(os.path.join(workdir, "list"), RUNNERS[runner])
    jobs = []
    for command in ("apply", "rollback"):
        steps = lister.steps(command)
        if sample:
            first: dict[str, str] = {}
            for step in steps:
                first.setdefault(step.split("#")[0], step)
            steps = list(first.values())
        jobs += [(command, step) for step in steps]
    chunks = [jobs[i::processes] for i in range(processes)]
    args = [(os.path.join(workdir, f"w{i}"), runner, chunk) for i, chunk in enumerate(chunks)]
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        done = [case for part in pool.map(_worker, args) for case in part]
    order = {job: i for i, job in enumerate(jobs)}
    done.sort(key=lambda c: order[(c.command, c.step)])
    return {command: [c for c in done if c.command == command] for command in ("apply", "rollback")}
