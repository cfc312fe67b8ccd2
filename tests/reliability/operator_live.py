"""Driven inside ns_operator.sh's namespace, on its live root `/`: vgpu-fix as an operator uses it.
Each step's exit status, terminal output and host facts go to OUT/results.json for the test to judge."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from tests import terminal

DROPIN = "/etc/systemd/user/ollama.service.d/zz-vgpu-fix.conf"
TEXTFILE = "/var/lib/node-exporter/vgpu_fix.prom"  # the profile's watch.textfile (test_operator_live.py)


def systemctl(*args: str) -> str:
    return subprocess.run(["systemctl", "--user", *args], capture_output=True, text=True).stdout.strip()


def main(profile: str, out: str) -> None:
    results: dict = {}

    def step(name: str, args: list[str], **kw) -> None:
        session = terminal.run(args, **kw)
        results[name] = {"rc": session.returncode, "terminal": session.terminal, "piped": session.piped,
                         "dropin": os.path.exists(DROPIN), "ollama_pid": systemctl("show", "-p", "MainPID", "--value",
                                                                                       "ollama.service")}

    results["start_pid"] = systemctl("show", "-p", "MainPID", "--value", "ollama.service")
    # Confirmation on the live root.
    step("no_terminal", ["apply", "-p", profile, "--no-verify"], stdin_tty=False, stdout_tty=False, stderr_tty=False)
    step("declined", ["apply", "-p", profile, "--no-verify"], answers={"[y/N]:": "n"})
    step("confirmed", ["apply", "-p", profile, "--no-verify"], answers={"[y/N]:": "y"})
    step("converged", ["apply", "-p", profile, "--no-verify"], stdin_tty=False, stdout_tty=False, stderr_tty=False)
    step("rollback_no_terminal", ["rollback"], stdin_tty=False, stdout_tty=False, stderr_tty=False)
    step("rollback_confirmed", ["rollback"], answers={"[y/N]:": "y"})
    step("yes", ["apply", "-p", profile, "--no-verify", "--yes"], stdin_tty=False, stdout_tty=False, stderr_tty=False)
    # doctor on the live root reads the journal without being told to.
    step("doctor", ["doctor", "-p", profile, "--json"], stdin_tty=False, stdout_tty=False, stderr_tty=False)
    # The upgrade watch through the real manager.
    os.makedirs(os.path.dirname(TEXTFILE), exist_ok=True)
    step("watch_enable", ["watch", "enable", "-p", profile, "--no-verify", "--yes"], stdin_tty=False,
         stdout_tty=False, stderr_tty=False)
    results["watch_path_active"] = systemctl("is-active", "vgpu-fix-watch.path")
    results["textfile_timer_active"] = systemctl("is-active", "vgpu-fix-watch-textfile.timer")
    results["textfile_by_timer"] = _wait_for(TEXTFILE, 60)
    results["textfile_journal"] = subprocess.run(["journalctl", "--user-unit", "vgpu-fix-watch-textfile.service",
                                                  "-o", "cat", "--no-pager"], capture_output=True, text=True).stdout
    os.unlink(TEXTFILE)  # the check the touch below starts writes it again
    results["watch_before_touch"] = systemctl("show", "-p", "ActiveState", "-p", "Result", "-p", "ExecMainStatus",
                                              "vgpu-fix-watch.service")
    os.utime("/usr/local/bin/ollama")  # what an upgrade does to the binary, at the least
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = systemctl("show", "-p", "ActiveState", "-p", "Result", "-p", "ExecMainStatus", "vgpu-fix-watch.service")
        if "ActiveState=failed" in state or ("ExecMainStatus=" in state and "ExecMainStatus=0" not in state
                                             and "ActiveState=inactive" in state):
            break
        time.sleep(0.5)
    results["watch_after_touch"] = state
    results["textfile_by_check"] = _wait_for(TEXTFILE, 5)
    results["watch_is_failed"] = systemctl("is-failed", "vgpu-fix-watch.service")
    results["failed_units"] = systemctl("list-units", "--failed", "--plain", "--no-legend")
    results["watch_journal"] = subprocess.run(["journalctl", "--user-unit", "vgpu-fix-watch.service", "-o", "cat",
                                               "--no-pager"], capture_output=True, text=True).stdout
    step("status", ["status", "-p", profile, "--json"], stdin_tty=False, stdout_tty=False, stderr_tty=False)
    step("watch_status", ["watch", "status", "-p", profile, "--json"], stdin_tty=False, stdout_tty=False,
         stderr_tty=False)
    step("watch_disable", ["watch", "disable", "-p", profile, "--no-verify", "--yes"], stdin_tty=False,
         stdout_tty=False, stderr_tty=False)
    results["watch_path_after_disable"] = systemctl("is-active", "vgpu-fix-watch.path")
    results["textfile_timer_after_disable"] = systemctl("is-active", "vgpu-fix-watch-textfile.timer")
    results["watch_files_after_disable"] = [p for p in ("/etc/systemd/user/vgpu-fix-watch.path",
                                                        "/etc/systemd/user/vgpu-fix-watch.service",
                                                        "/etc/systemd/user/vgpu-fix-watch-textfile.timer",
                                                        "/etc/systemd/user/vgpu-fix-watch-textfile.service")
                                            if os.path.lexists(p)]
    with open(os.path.join(out, "results.json"), "w") as fh:
        json.dump(results, fh, indent=1)


def _wait_for(path: str, seconds: float) -> str | None:
    """The file's text once it exists (None if it does not within `seconds`)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path, encoding="utf-8") as fh:
                return fh.read()
        time.sleep(0.2)
    return None


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
