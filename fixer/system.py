"""The only module that runs external commands (ldconfig, systemctl, journalctl, systemd-run, udevadm), via `sh`."""

# systemd-run is the one command whose output is streamed while it runs: start_transient uses Popen.

from __future__ import annotations

import os
import shutil

from fixer.errors import ExternalCommandFailed


def _run(program: str, *args: str, env: dict | None = None, timeout: float = 120) -> str:
    import sh  # ~100 ms to import: only when a command really runs

    path = shutil.which(program, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/bin:/bin")
    if path is None:
        raise ExternalCommandFailed(f"{program}: not found on PATH")
    command = sh.Command(path)
    try:
        # No pseudo-terminal (sh's default): journalctl would colour its JSON and systemctl start a pager.
        return str(command(*args, _env=env or dict(os.environ), _timeout=timeout, _err_to_out=True, _tty_out=False))
    except sh.ErrorReturnCode as exc:
        output = exc.stdout.decode(errors="replace").strip()
        raise ExternalCommandFailed(f"{program} {' '.join(args)} failed (exit {exc.exit_code}): {output}") from None
    except sh.TimeoutException:
        raise ExternalCommandFailed(f"{program} {' '.join(args)} timed out after {timeout:.0f} s") from None


def ldconfig(root: str) -> None:
    """Rebuild the ld.so cache of `root` with a C-locale include order and without touching links."""
    args = ["-X"] + (["-r", root] if root != "/" else [])
    _run("ldconfig", *args, env={**os.environ, "LC_ALL": "C"})


def udev_live(root: str) -> bool:
    """True when `root` is the running system and its udev daemon listens for control messages."""
    return root == "/" and os.path.exists("/run/udev/control")


def udevadm_argv(action: str, syspaths: list[str] | None = None) -> list[str]:
    """`udevadm control --reload`, or `udevadm trigger --action=change --settle` on exactly `syspaths`
    (absolute /sys paths, passed as separate arguments: never through a shell)."""
    if action == "reload":
        return ["control", "--reload"]
    paths = list(syspaths or [])
    if not paths or any(not p.startswith("/sys/") or "\n" in p for p in paths):
        raise ExternalCommandFailed(f"udevadm trigger: refusing device paths {paths!r}")
    return ["trigger", "--action=change", "--settle", *paths]


def udevadm(action: str, syspaths: list[str] | None = None) -> None:
    _run("udevadm", *udevadm_argv(action, syspaths))


def systemd_live(root: str, scope: str) -> bool:
    """True when `root` is the running system and its service manager for `scope` is reachable."""
    if root != "/":
        return False
    if scope == "system":
        return os.path.isdir("/run/systemd/system")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return bool(runtime) and os.path.exists(os.path.join(runtime, "systemd", "private"))


def systemctl(scope: str, *args: str, timeout: float = 120) -> str:
    return _run("systemctl", *(["--user"] if scope == "user" else []), *args, timeout=timeout)


def journal(unit: str, scope: str, since: str | None = None, lines: int | None = None) -> str:
    # `--user -u` reads only the caller's own user journal files, and root's (like any system user's)
    # user units log to the system journal: --user-unit matches the unit in every file we may read.
    args = ["--user-unit", unit] if scope == "user" else ["-u", unit]
    args += ["-o", "json", "--no-pager"]
    if since:
        args += ["--since", since]
    if lines:
        args += ["-n", str(lines)]
    return _run("journalctl", *args)


def transient_argv(scope: str, unit: str, properties: list[str], argv: list[str], cwd: str = "/") -> list[str]:
    """The `systemd-run` command line that runs `argv` as transient service `unit` of the `scope`
    manager with `properties`, waits for it, and pipes its stdio to ours. The environment is never
    on this command line (any local user can read /proc/PID/cmdline): pass an EnvironmentFile= property.
    Without --quiet: its closing "Finished with result" lines tell a timeout or a signal apart."""
    path = shutil.which("systemd-run", path=os.environ.get("PATH", "") + ":/usr/bin:/bin") or "systemd-run"
    out = [path, *(["--user"] if scope == "user" else []), "--wait", "--pipe", "--collect", f"--unit={unit}",
           f"--working-directory={cwd}"]
    out += [f"--property={p}" for p in properties]
    # The manager expands $VAR in a command line: keep ours literal.
    return out + ["--", *(a.replace("$", "$$") for a in argv)]


def start_transient(scope: str, unit: str, properties: list[str], argv: list[str], cwd: str = "/",
                    stdout=None, stderr=None):
    """Start `transient_argv(...)` in its own process group; the caller waits and reads its output."""
    import subprocess

    return subprocess.Popen(transient_argv(scope, unit, properties, argv, cwd), env=dict(os.environ),
                            stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, start_new_session=True,
                            text=True, errors="replace")


def kill_transient(scope: str, unit: str) -> None:
    """SIGKILL every process of transient `unit`; a unit already gone is fine."""
    try:
        systemctl(scope, "kill", "--signal=SIGKILL", unit, timeout=15)
    except ExternalCommandFailed:
        pass
