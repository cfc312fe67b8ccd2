"""The only module that runs external commands (ldconfig, systemctl, journalctl), via `sh`."""

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
        return str(command(*args, _env=env or dict(os.environ), _timeout=timeout, _err_to_out=True))
    except sh.ErrorReturnCode as exc:
        output = exc.stdout.decode(errors="replace").strip()
        raise ExternalCommandFailed(f"{program} {' '.join(args)} failed (exit {exc.exit_code}): {output}") from None
    except sh.TimeoutException:
        raise ExternalCommandFailed(f"{program} {' '.join(args)} timed out after {timeout:.0f} s") from None


def ldconfig(root: str) -> None:
    """Rebuild the ld.so cache of `root` with a C-locale include order and without touching links."""
    args = ["-X"] + (["-r", root] if root != "/" else [])
    _run("ldconfig", *args, env={**os.environ, "LC_ALL": "C"})


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
    args = ["--user"] if scope == "user" else []
    args += ["-u", unit, "-o", "json", "--no-pager"]
    if since:
        args += ["--since", since]
    if lines:
        args += ["-n", str(lines)]
    return _run("journalctl", *args)
