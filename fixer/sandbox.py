"""Start a probe the way Ollama's runner starts: its environment, its user, and a root's files in place."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from fixer.linker import on_host, resolve_in_root, runner_library_path, split_path_list, split_preload

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Never bound over: the probe's own interpreter and the host's C library live here.
SYSTEM_DIRS = frozenset({"/", "/etc", "/usr", "/usr/local", "/opt", "/var", "/tmp", "/home", "/root", "/run",
                         "/proc", "/sys", "/dev", "/bin", "/sbin", "/usr/bin", "/usr/sbin", "/lib", "/lib64",
                         "/lib32", "/usr/lib", "/usr/lib64", "/usr/lib32", "/usr/local/lib", "/usr/local/bin",
                         "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu",
                         "/usr/lib/aarch64-linux-gnu"})
LAUNCH_FAILED = 97
HERE = Path(__file__).resolve().parent


def runner_env(env: Mapping[str, str], spec) -> dict[str, str]:
    """The environment `ollama serve` gives a runner for spec.library: the service's environment,
    LD_LIBRARY_PATH prefixed with Ollama's two dirs, OLLAMA_LIBRARY_PATH overwritten with them."""
    out = {"PATH": DEFAULT_PATH, **env}
    out["LD_LIBRARY_PATH"] = ":".join(runner_library_path(spec.ollama_lib, spec.library, env))
    out["OLLAMA_LIBRARY_PATH"] = f"{spec.ollama_lib}:{spec.ollama_lib}/{spec.library}"
    return out


@dataclass
class Placement:
    """How the root's files reach the probe, and what of the real situation that honours."""

    root: str
    mode: str  # live | namespace | user-namespace | translated
    mounts: list[dict] = field(default_factory=list)
    for_real: list[str] = field(default_factory=list)
    not_honoured: list[str] = field(default_factory=list)

    def path(self, path: str) -> str:
        """Where the probe process finds absolute `path` of the root."""
        if self.mode != "translated":
            return path
        return on_host(self.root, resolve_in_root(self.root, path) or path)

    def env(self, env: Mapping[str, str]) -> dict[str, str]:
        out = dict(env)
        if self.mode != "translated":
            return out
        for name in ("LD_LIBRARY_PATH", "OLLAMA_LIBRARY_PATH"):
            if name in out:
                out[name] = ":".join(self.path(p) for p in split_path_list(out[name]))
        if out.get("LD_PRELOAD"):
            out["LD_PRELOAD"] = ":".join(self.path(p) if "/" in p else p for p in split_preload(out["LD_PRELOAD"]))
        return out


def _is_system(path: str) -> bool:
    path = path.rstrip("/") or "/"
    return path in SYSTEM_DIRS or any(d.startswith(path + "/") for d in SYSTEM_DIRS if path != "/")


def place(root: str, env: Mapping[str, str], spec, files: tuple[str, ...] = (), mode: str | None = None) -> Placement:
    """Decide how to show `root` to a probe with runner environment `env` (see runner_env)."""
    root = os.fspath(root)
    if root in ("/", ""):
        return Placement("/", "live", for_real=["the live host's files, loader cache and preload list"])
    mode = mode or ("namespace" if os.geteuid() == 0 else "user-namespace")
    placement = Placement(root, mode)
    if mode == "translated":
        placement.for_real = [f"the root's files, reached through paths under {root}"]
        placement.not_honoured = [
            f"{root}/etc/ld.so.cache (the loader reads only /etc/ld.so.cache; libraries found only through "
            "the root's cache are missing here — the static check covers them)",
            "absolute symlink targets inside the root point at the live host",
            "the root's /etc/ld.so.preload",
        ]
        return placement
    dirs = [spec.ollama_lib] + split_path_list(env.get("LD_LIBRARY_PATH")) + [
        os.path.dirname(p) for p in split_preload(env.get("LD_PRELOAD")) if "/" in p]
    try:
        from fixer.ldcache import read_cache

        dirs += [os.path.dirname(e.path) for e in read_cache(on_host(root, "/etc/ld.so.cache")).entries]
    except Exception:  # no or unreadable cache: the loader then ignores it too
        pass
    chosen: list[str] = []
    for folder in dict.fromkeys(os.path.normpath(d) for d in dirs):
        if _is_system(folder):
            placement.not_honoured.append(f"{folder}: a system directory, the live host's copy was used")
        elif not any(folder == c or folder.startswith(c + "/") for c in chosen):
            chosen = [c for c in chosen if not c.startswith(folder + "/")] + [folder]
    empty = None
    for folder in sorted(chosen, key=lambda d: d.count("/")):
        inside = resolve_in_root(root, folder)
        if inside is not None and os.path.isdir(on_host(root, inside)):
            placement.mounts.append({"source": on_host(root, inside), "target": folder, "kind": "dir"})
        elif os.path.isdir(folder):
            empty = empty or "@empty"
            placement.mounts.append({"source": empty, "target": folder, "kind": "dir"})
    for path in files:
        inside = resolve_in_root(root, path)
        if inside is not None:
            placement.mounts.append({"source": on_host(root, inside), "target": path, "kind": "file"})
    cache = on_host(root, "/etc/ld.so.cache")
    placement.mounts.append({"source": cache if os.path.isfile(cache) else "/dev/null",
                             "target": "/etc/ld.so.cache", "kind": "file"})
    preload = on_host(root, "/etc/ld.so.preload")
    if os.path.isfile(preload) or os.path.exists("/etc/ld.so.preload"):
        placement.mounts.append({"source": preload if os.path.isfile(preload) else "/dev/null",
                                 "target": "/etc/ld.so.preload", "kind": "file"})
    placement.for_real = [f"{m['target']} (from the root)" for m in placement.mounts if m["source"] != "@empty"]
    placement.for_real.append(f"in a private mount namespace ({mode})")
    return placement


def resolve_user(user: str | None) -> tuple[dict | None, str | None]:
    """(uid/gid/groups for the launcher, or None; a note when User= cannot be honoured)."""
    if not user or user == "root":
        return None, None
    if os.geteuid() != 0:
        return None, f"User={user} not honoured: switching users needs root"
    import grp
    import pwd

    try:
        entry = pwd.getpwnam(user) if not user.isdigit() else pwd.getpwuid(int(user))
    except KeyError:
        return None, f"User={user} does not exist on this machine; ran as root"
    groups = [g.gr_gid for g in grp.getgrall() if entry.pw_name in g.gr_mem]
    return {"uid": entry.pw_uid, "gid": entry.pw_gid, "groups": sorted({entry.pw_gid, *groups})}, None


def _usable_by(path: str, uid: int) -> bool:
    """Whether a non-root `uid` can execute `path` (every parent searchable)."""
    if uid == 0:
        return True
    real = os.path.realpath(path)
    parts = real.split("/")
    for i in range(2, len(parts)):
        st = os.stat("/".join(parts[:i]))
        if not (st.st_mode & 0o001 or (st.st_uid == uid and st.st_mode & 0o100)):
            return False
    st = os.stat(real)
    return bool(st.st_mode & 0o005 == 0o005 or st.st_uid == uid)


def interpreter(user: dict | None) -> str:
    import sys

    if user is None or _usable_by(sys.executable, user["uid"]):
        return sys.executable
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.path.exists(candidate) and _usable_by(candidate, user["uid"]):
            return candidate
    return sys.executable


@dataclass
class Launched:
    process: subprocess.Popen
    scratch: str
    started: float


@dataclass
class Completed:
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    duration: float

    @property
    def signal(self) -> str | None:
        if self.returncode is None or self.returncode >= 0:
            return None
        try:
            return signal.Signals(-self.returncode).name
        except ValueError:
            return f"signal {-self.returncode}"

    @property
    def launch_error(self) -> dict | None:
        if self.returncode != LAUNCH_FAILED:
            return None
        for line in self.stdout.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "launch-error":
                return event
        return None


def start(placement: Placement, argv: list[str], env: Mapping[str, str], *, user: dict | None = None,
          cwd: str = "/", executable: str | None = None, python_child: bool = False,
          stdout=subprocess.PIPE, stderr=subprocess.PIPE) -> Launched:
    """Start `argv` through the launcher in its own process group. With `python_child`, argv[1:] are
    the arguments of probe_child.py, run by an interpreter whose process name starts with "ollama"
    (shims decide by it whether to interpose)."""
    scratch = tempfile.mkdtemp(prefix="vgpu-fix-probe-")
    os.chmod(scratch, 0o755)
    for name in ("launch.py", "probe_child.py"):
        shutil.copy(HERE / name, f"{scratch}/{name}")
        os.chmod(f"{scratch}/{name}", 0o644)
    if python_child:
        python = interpreter(user)
        alias = f"{scratch}/ollama-vgpu-probe"
        os.symlink(python, alias)
        argv = [alias, "-I", f"{scratch}/probe_child.py", *argv[1:]]
        executable = alias
    mounts = [dict(m, source=f"{scratch}/empty" if m["source"] == "@empty" else m["source"])
              for m in placement.mounts]
    if any(m["source"] == f"{scratch}/empty" for m in mounts):
        os.makedirs(f"{scratch}/empty")
    namespace = {"namespace": "mount", "user-namespace": "user"}.get(placement.mode, "none")
    spec = {"namespace": namespace, "scratch": f"{scratch}/layers", "mounts": mounts, "user": user,
            "cwd": cwd, "executable": executable or argv[0], "argv": argv, "env": dict(env)}
    with open(f"{scratch}/spec.json", "w") as f:
        json.dump(spec, f)
    os.chmod(f"{scratch}/spec.json", 0o644)
    os.makedirs(f"{scratch}/layers")
    import sys

    process = subprocess.Popen(
        [sys.executable, "-I", f"{scratch}/launch.py", f"{scratch}/spec.json"],
        env={"PATH": DEFAULT_PATH, "LC_ALL": "C"}, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
        start_new_session=True, text=True, errors="replace")
    return Launched(process, scratch, time.monotonic())


def stop(launched: Launched) -> None:
    """Kill the whole process group and reap the leader."""
    try:
        os.killpg(launched.process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        launched.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def cleanup(launched: Launched) -> None:
    shutil.rmtree(launched.scratch, ignore_errors=True)


def finish(launched: Launched, timeout: float) -> Completed:
    """Wait up to `timeout` s; on expiry kill the process group. Always reaps and cleans up."""
    timed_out = False
    try:
        out, err = launched.process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        stop(launched)
        out, err = launched.process.communicate()
    finally:
        stop(launched)
        cleanup(launched)
    return Completed(None if timed_out else launched.process.returncode, out or "", err or "", timed_out,
                     time.monotonic() - launched.started)
