"""Run a script as PID 1 of a private mount+pid namespace with a real service manager; leave nothing behind."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

MANAGER = "/lib/systemd/systemd"
HIERARCHIES = ("/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified", "/sys/fs/cgroup")
HERE = os.path.dirname(os.path.abspath(__file__))


def usable() -> str | None:
    """Why the namespace tier cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("unshare", "systemctl", "mount"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    if not os.access(MANAGER, os.X_OK):
        return f"needs {MANAGER}"
    return None


def require() -> None:
    """Skip this tier only where it cannot run by design (not root); as root it must run, so a
    missing tool is a failure, never a silent skip."""
    import pytest

    why = usable()
    if why == "needs root":
        pytest.skip("needs root (mount namespaces)")
    if why:
        pytest.fail(f"running as root, but the namespace tier cannot run: {why}")


def early_failure(script: str, proc: subprocess.CompletedProcess, *logs: str) -> None:
    """A namespace script that stopped before its first result: a test failure with what it said."""
    import pytest

    said = "".join(open(log).read()[-800:] for log in logs if os.path.exists(log))
    pytest.fail(f"{script} failed early (exit {proc.returncode}): {proc.stderr[-1500:]} {said}")


def cgroups(name: str) -> list[str]:
    return [os.path.join(h, name) for h in HIERARCHIES if os.path.isdir(os.path.join(h, name))]


def _members(top: str) -> list[int]:
    pids = []
    for procs in glob.glob(os.path.join(top, "**", "cgroup.procs"), recursive=True):
        try:
            pids += [int(pid) for pid in open(procs).read().split()]
        except OSError:
            pass
    return pids


def remove_cgroup(name: str, patience: float = 10) -> None:
    """Kill whatever is left in cgroup `name` (every hierarchy), wait until the killed processes are
    gone (a cgroup with dying members cannot be removed), and remove it, deepest first."""
    deadline = time.monotonic() + patience
    for top in cgroups(name):
        while (pids := _members(top)) and time.monotonic() < deadline:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        for directory, _, _ in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
            try:
                os.rmdir(directory)
            except OSError:
                pass


def processes_in(name: str) -> list[int]:
    found = []
    for path in glob.glob("/proc/[0-9]*/cgroup"):
        try:
            if name in open(path).read():
                found.append(int(path.split("/")[2]))
        except OSError:
            pass
    return found


def mounts() -> list[str]:
    return sorted(open("/proc/self/mountinfo").read().splitlines())


def run(script: str, *args: str, timeout: float = 240) -> tuple[subprocess.CompletedProcess, str]:
    """Run `bash script ID ARGS…` as PID 1 of a fresh namespace; (its result, the cgroup name ID).
    The cgroup is removed afterwards whatever happened."""
    name = f"vgpufix-test-{uuid.uuid4().hex[:12]}"
    try:
        proc = subprocess.run(["unshare", "--mount", "--pid", "--fork", "--kill-child", "--propagation", "private", "bash",
                               os.path.join(HERE, script), name, *args], capture_output=True, text=True,
                              timeout=timeout, env={**os.environ, "PYTHON": sys.executable})
    finally:
        remove_cgroup(name)
    return proc, name
