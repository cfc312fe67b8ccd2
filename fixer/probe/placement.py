"""Start a probe the way Ollama's runner starts: its environment, its user, and a root's files in place."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from fixer.facts import paths
from fixer.facts.ldso import LD_SO_CACHE, LD_SO_PRELOAD, split_preload
from fixer.facts.linker import resolve_in_root, split_path_list
from fixer.facts.paths import host_path
from fixer.probe.capture import Capture, json_objects

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Never bound over: the probe's own interpreter and the host's C library live here.
SYSTEM_DIRS = frozenset({"/", "/etc", "/usr", "/usr/local", "/opt", "/var", "/tmp", "/home", "/root", "/run",
                         "/proc", "/sys", "/dev", "/bin", "/sbin", "/usr/bin", "/usr/sbin", "/lib", "/lib64",
                         "/lib32", "/usr/lib", "/usr/lib64", "/usr/lib32", "/usr/local/lib", "/usr/local/bin",
                         "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu",
                         "/usr/lib/aarch64-linux-gnu"})
LAUNCH_FAILED = 97
HERE = Path(__file__).resolve().parent
# [Service] settings that shape what a process of the unit can reach, passed on to a transient probe
# unit as they are; the values are replayed in file order, so systemd merges them as for the unit.
CARRIED = frozenset("""
    User Group SupplementaryGroups DynamicUser
    LimitCPU LimitFSIZE LimitDATA LimitSTACK LimitCORE LimitRSS LimitNOFILE LimitAS LimitNPROC LimitMEMLOCK
    LimitLOCKS LimitSIGPENDING LimitMSGQUEUE LimitNICE LimitRTPRIO LimitRTTIME
    CapabilityBoundingSet AmbientCapabilities NoNewPrivileges SecureBits
    PrivateDevices PrivateTmp PrivateUsers PrivateIPC PrivateMounts ProtectKernelTunables ProtectKernelModules
    ProtectKernelLogs ProtectControlGroups ProtectSystem ProtectHome ProtectClock ProtectHostname ProtectProc
    ProcSubset ReadWritePaths ReadOnlyPaths InaccessiblePaths ExecPaths NoExecPaths BindPaths BindReadOnlyPaths
    TemporaryFileSystem RootDirectory MountAPIVFS DeviceAllow DevicePolicy MemoryDenyWriteExecute
    RestrictNamespaces RestrictRealtime RestrictSUIDSGID LockPersonality RemoveIPC KeyringMode Personality
    SystemCallFilter SystemCallArchitectures SystemCallErrorNumber RestrictAddressFamilies
    MemoryMax MemoryHigh MemorySwapMax TasksMax CPUQuota OOMScoreAdjust Nice UMask
""".split())
# Settings about starting, stopping, restarting and logging the service: nothing a probe could meet.
NOT_FOR_PROBE = frozenset("""
    ExecStart ExecStartPre ExecStartPost ExecStop ExecStopPost ExecReload ExecCondition Type Restart RestartSec
    RestartPreventExitStatus RestartForceExitStatus SuccessExitStatus TimeoutSec TimeoutStartSec TimeoutStopSec
    TimeoutAbortSec RuntimeMaxSec WatchdogSec KillMode KillSignal SendSIGKILL SendSIGHUP FinalKillSignal PIDFile
    RemainAfterExit NotifyAccess GuessMainPID StandardInput StandardOutput StandardError SyslogIdentifier
    SyslogFacility SyslogLevel LogLevelMax WorkingDirectory Slice Delegate OOMPolicy Description
""".split())
# Exit statuses systemd itself uses when it cannot set up a unit's process (systemd.exec(5)).
EXEC_SETUP_STATUS = {200: "CHDIR", 201: "NICE", 202: "FDS", 203: "EXEC", 204: "MEMORY", 205: "LIMITS",
                     206: "OOM_ADJUST", 207: "SIGNAL_MASK", 208: "STDIN", 209: "STDOUT", 210: "CHROOT",
                     211: "IOPRIO", 212: "TIMERSLACK", 213: "SECUREBITS", 214: "SETSCHEDULER", 215: "CPUAFFINITY",
                     216: "GROUP", 217: "USER", 218: "CAPABILITIES", 219: "CGROUP", 220: "SETSID",
                     221: "CONFIRM", 222: "STDERR", 224: "PAM", 225: "NETWORK", 226: "NAMESPACE",
                     227: "NO_NEW_PRIVILEGES", 228: "SECCOMP", 229: "SELINUX_CONTEXT", 230: "PERSONALITY",
                     231: "APPARMOR_PROFILE", 232: "ADDRESS_FAMILIES", 233: "RUNTIME_DIRECTORY",
                     235: "CHOWN", 236: "SMACK_PROCESS_LABEL", 237: "KEYRING", 238: "STATE_DIRECTORY",
                     239: "CACHE_DIRECTORY", 240: "LOGS_DIRECTORY", 241: "CONFIGURATION_DIRECTORY",
                     242: "NUMA_POLICY", 243: "CREDENTIALS"}
SYSTEMD_RUN_LINES = re.compile(r"^(Running as unit: |Finished with result: |Main processes terminated with: |"
                               r"Service runtime: |CPU time consumed: |Memory peak: |IP traffic |IO bytes )")


@dataclass
class Placement:
    """How the root's files reach the probe, and what of the real situation that honours."""

    root: str
    mode: str  # systemd | live | namespace | user-namespace | translated | isolated
    untrusted: bool = False  # isolated: a root other than /, whose files never run with our privileges
    mounts: list[dict] = field(default_factory=list)
    for_real: list[str] = field(default_factory=list)
    not_honoured: list[str] = field(default_factory=list)
    scope: str | None = None  # systemd mode: the manager that runs the probe as a transient unit
    properties: list[str] = field(default_factory=list)  # systemd mode: the unit's settings carried over

    @property
    def transient(self) -> dict | None:
        if self.mode != "systemd":
            return None
        return {"scope": self.scope, "properties": list(self.properties),
                "not_carried": [n for n in self.not_honoured if n.startswith("not carried")]}

    def path(self, path: str) -> str:
        """Where the probe process finds absolute `path` of the root."""
        if self.mode != "translated":
            return path
        return host_path(self.root, resolve_in_root(self.root, path) or path)

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


def with_home(env: Mapping[str, str]) -> dict[str, str]:
    """`env` for a probe that execs the root's own `ollama`: HOME kept, else set to "/". systemd gives a
    service with User= its account's home (systemd.exec(5)), and every `ollama` panics at start without
    one (v0.32.15 envconfig/config.go:113-120, os.UserHomeDir); the probes write nothing there."""
    return {**env, "HOME": env.get("HOME") or "/"}


def _is_system(path: str) -> bool:
    path = path.rstrip("/") or "/"
    return path in SYSTEM_DIRS or any(d.startswith(path + "/") for d in SYSTEM_DIRS if path != "/")


def place(root: str, env: Mapping[str, str], spec, files: tuple[str, ...] = (), mode: str | None = None,
          unit=None) -> Placement:
    """Decide how to show `root` to a probe with the environment `env` Ollama gives the probed program. With the
    unit (host.UnitState) on a live root whose manager runs, the probe runs as a transient unit of it."""
    root = os.fspath(root)
    if mode in (None, "systemd") and unit is not None and root in ("/", ""):
        from fixer import system

        if system.systemd_live("/", unit.scope):
            return systemd_placement(unit)
    if root in ("/", ""):
        return Placement("/", "live", for_real=["the live host's files, loader cache and preload list"])
    untrusted = mode is None
    mode = mode or "isolated"
    placement = Placement(root, mode, untrusted=untrusted)
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
        from fixer.facts.ldso import root_cache

        for entry in root_cache(root).entries:
            # The entry's directory, and where its link leads (vgpu-fix's link dir points into the shim dir).
            real = resolve_in_root(root, entry.path)
            dirs += [os.path.dirname(entry.path)] + ([os.path.dirname(real)] if real else [])
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
        if paths.is_dir(root, folder):
            placement.mounts.append({"source": paths.real_path(root, folder), "target": folder, "kind": "dir"})
        elif os.path.isdir(folder):  # the live host's own folder, hidden behind an empty one
            empty = empty or "@empty"
            placement.mounts.append({"source": empty, "target": folder, "kind": "dir"})
    for path in files:
        real = paths.real_path(root, path)
        if real is not None:
            placement.mounts.append({"source": real, "target": path, "kind": "file"})
    cache = paths.real_path(root, LD_SO_CACHE) if paths.is_file(root, LD_SO_CACHE) else None
    placement.mounts.append({"source": cache or "/dev/null", "target": "/etc/ld.so.cache", "kind": "file"})
    preload = paths.real_path(root, LD_SO_PRELOAD) if paths.is_file(root, LD_SO_PRELOAD) else None
    if preload or os.path.exists("/etc/ld.so.preload"):  # the live host's own: hidden unless the root has one
        placement.mounts.append({"source": preload or "/dev/null", "target": "/etc/ld.so.preload", "kind": "file"})
    placement.for_real = [f"{m['target']} (from the root)" for m in placement.mounts if m["source"] != "@empty"]
    placement.for_real.append(f"in a private mount namespace ({mode})" if not untrusted else
                              "as an unprivileged user in new user, PID, network and mount namespaces, "
                              "every mount read-only")
    return placement


def systemd_placement(unit) -> Placement:
    """Run the probe under the unit's own manager with its User=, sandbox and resource settings."""
    properties, not_carried = transient_properties(unit.directives)
    manager = "systemd-run --user" if unit.scope == "user" else "systemd-run"
    shown = ", ".join(properties) or "none set in the unit"
    return Placement("/", "systemd", for_real=[
        f"{manager}: a transient unit with {unit.unit}'s environment and settings ({shown})",
        "the live host's files, loader cache and preload list, as the unit's sandbox shows them"],
        not_honoured=not_carried, scope=unit.scope, properties=properties)


def transient_properties(directives: Mapping[str, tuple[str, list[str]]]) -> tuple[list[str], list[str]]:
    """(`Key=value` for systemd-run in merge order, notes on the unit's settings that were not carried)."""
    properties: list[str] = []
    notes: list[str] = []
    for key, (origin, values) in directives.items():
        if key in NOT_FOR_PROBE:
            continue
        if key not in CARRIED:
            notes.append(f"not carried: {key}= (from {origin}): vgpu-fix does not pass it to systemd-run")
            continue
        for value in values:
            if "%" in value.replace("%%", ""):
                notes.append(f"not carried: {key}={value} (from {origin}): a %-specifier only a unit file expands")
            else:
                properties.append(f"{key}={value.replace('%%', '%')}")
    return properties, notes


def fallback(placement: Placement, root: str, env: Mapping[str, str], spec, files: tuple[str, ...] = (),
             why: str = "") -> Placement:
    """The next placement after `placement` could not start the probe."""
    if placement.mode == "systemd":
        nxt = place(root, env, spec, files)
        nxt.not_honoured.insert(0, f"the unit's sandbox and User=: systemd-run could not start the probe ({why})")
        return nxt
    nxt = place(root, env, spec, files, mode="translated")
    nxt.not_honoured.insert(0, "no private mount namespace could be made")
    return nxt


def account_for(placement: Placement, user: str | None) -> tuple[dict | None, str | None]:
    """Whom the launcher runs a probe as under `placement` (None in systemd mode: the unit's manager
    applies User= itself), and a note when the unit's User= cannot be honoured."""
    if placement.mode == "systemd":
        return None, None
    return resolve_user(user, placement.untrusted)


PROBE_USER = "nobody"  # the default account the code of an untrusted root runs as (--probe-user)


def probe_account(name: str | None) -> dict:
    """The local account the operator chose (--probe-user, default nobody) for running an untrusted
    root's code: it must exist here and must not be root. Never an account the root itself names."""
    import pwd

    from fixer.errors import InvalidInput

    name = name or PROBE_USER
    try:
        entry = pwd.getpwnam(name) if not name.isdigit() else pwd.getpwuid(int(name))
    except (KeyError, ValueError):
        raise InvalidInput(f"--probe-user {name}: no such account on this machine") from None
    if entry.pw_uid == 0:
        raise InvalidInput(f"--probe-user {name}: is root (uid 0); the code of a root other than / never runs as root")
    return _account(entry)


def resolve_user(user: str | None, untrusted: bool = False) -> tuple[dict | None, str | None]:
    """(uid/gid/groups for the launcher, or None; a note when User= cannot be honoured). For an
    untrusted root `user` is the operator's --probe-user (layers.verify passes it instead of the
    unit's User=): see probe_account."""
    if untrusted:
        return probe_account(user), None
    if not user or user == "root":
        return None, None
    if os.geteuid() != 0:
        return None, f"User={user} not honoured: switching users needs root"
    import pwd

    try:
        entry = pwd.getpwnam(user) if not user.isdigit() else pwd.getpwuid(int(user))
    except KeyError:
        return None, f"User={user} does not exist on this machine; ran as root"
    return _account(entry), None


def _account(entry) -> dict:
    import grp

    groups = [g.gr_gid for g in grp.getgrall() if entry.pw_name in g.gr_mem]
    return {"uid": entry.pw_uid, "gid": entry.pw_gid, "groups": sorted({entry.pw_gid, *groups})}


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


def sandbox_interpreter() -> str:
    """A system python3 for a probe inside a unit's sandbox (ProtectHome= hides /root and /home)."""
    import sys

    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.access(candidate, os.X_OK) and not os.path.realpath(candidate).startswith(("/root/", "/home/")):
            return candidate
    return sys.executable


def _scratch_dir() -> str:
    """A directory a transient unit's process can read: /run survives PrivateTmp=, /tmp does not."""
    for base in ("/run", os.environ.get("XDG_RUNTIME_DIR")):
        if base and os.access(base, os.W_OK):
            return tempfile.mkdtemp(prefix="vgpu-fix-probe-", dir=base)
    return tempfile.mkdtemp(prefix="vgpu-fix-probe-")


@dataclass
class Launched:
    process: subprocess.Popen
    scratch: str
    started: float
    unit: str | None = None  # systemd mode: the transient unit
    scope: str | None = None
    isolated: bool = False  # in its own network namespace: reach its ports through connect()


@dataclass
class Completed:
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    duration: float
    transient: dict | None = None  # systemd mode: unit, started, result, code, status

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
        if self.transient is not None:
            if self.transient["started"]:
                return None
            return {"event": "launch-error", "step": "systemd-run", "error": self.stderr.strip()[-300:]}
        if self.returncode != LAUNCH_FAILED:
            return None
        return next((e for e in json_objects(self.stdout) if e.get("event") == "launch-error"), None)


def start(placement: Placement, argv: list[str], env: Mapping[str, str], *, user: dict | None = None,
          cwd: str = "/", executable: str | None = None, python_child: bool = False, process: str = "ollama",
          stdout=subprocess.PIPE, stderr=subprocess.PIPE, limit: float | None = None) -> Launched:
    """Start `argv` through the launcher in its own process group. With `python_child`, argv[1:] are
    the arguments of probe_child.py, run by an interpreter named `process` (argv[0] and /proc/self/comm;
    /proc/self/exe stays the interpreter): the name of the Ollama process whose work the probe
    repeats, since shims decide by it whether to interpose (`llama-server` initialises CUDA since
    v0.30, `ollama` runs gpu-discover and the v0.13-v0.24 runner). In systemd mode the unit's manager
    runs it instead, for at most `limit` seconds."""
    if placement.mode == "systemd":
        return _start_transient(placement, argv, env, cwd, executable, python_child and process, stdout, stderr,
                                limit)
    scratch = tempfile.mkdtemp(prefix="vgpu-fix-probe-")
    os.chmod(scratch, 0o755)
    for name in ("launch.py", "probe_child.py"):
        shutil.copy(HERE / name, f"{scratch}/{name}")
        os.chmod(f"{scratch}/{name}", 0o644)
    if python_child:
        python = interpreter(user)
        alias = f"{scratch}/{process}"
        os.symlink(python, alias)
        argv = [alias, "-I", "-S", f"{scratch}/probe_child.py", *argv[1:]]
        executable = alias
    mounts = [dict(m, source=f"{scratch}/empty" if m["source"] == "@empty" else m["source"])
              for m in placement.mounts]
    if any(m["source"] == f"{scratch}/empty" for m in mounts):
        os.makedirs(f"{scratch}/empty")
    namespace = {"namespace": "mount", "user-namespace": "user", "isolated": "isolated"}.get(placement.mode, "none")
    if namespace == "isolated" and not user:
        raise ValueError("an untrusted root's code never runs without an unprivileged user")
    spec = {"namespace": namespace, "scratch": f"{scratch}/layers", "mounts": mounts, "user": user,
            "cwd": cwd, "executable": executable or argv[0], "argv": argv, "env": dict(env)}
    # The launcher reads the spec (the unit's whole environment) before it drops privileges.
    spec_path = private_file(scratch, "spec.json", json.dumps(spec))
    os.makedirs(f"{scratch}/layers")
    import sys

    process = subprocess.Popen(
        [sys.executable, "-I", "-S", f"{scratch}/launch.py", spec_path],
        env={"PATH": DEFAULT_PATH, "LC_ALL": "C"}, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
        start_new_session=True, text=True, errors="replace")
    return Launched(process, scratch, time.monotonic(), isolated=namespace == "isolated")


def private_file(scratch: str, name: str, text: str) -> str:
    """Write `text` to scratch/private/NAME: the directory 0700, the file 0600, from the first byte."""
    directory = os.path.join(scratch, "private")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path


def environment_file(env: Mapping[str, str]) -> str:
    """`env` as a systemd EnvironmentFile= (systemd.exec(5)): single quotes keep a value literal
    (newlines too); a value with a single quote goes in double quotes, escaping \\ " ` $."""
    lines = []
    for name, value in env.items():
        if "'" not in value:
            lines.append(f"{name}='{value}'")
        else:
            escaped = "".join("\\" + c if c in '\\"`$' else c for c in value)
            lines.append(f'{name}="{escaped}"')
    return "\n".join(lines) + "\n"


def _start_transient(placement: Placement, argv: list[str], env: Mapping[str, str], cwd: str,
                     executable: str | None, python_child: str | bool, stdout, stderr,
                     limit: float | None) -> Launched:
    from fixer import system

    scratch = _scratch_dir()
    os.chmod(scratch, 0o755)
    if python_child:
        shutil.copy(HERE / "probe_child.py", f"{scratch}/probe_child.py")
        os.chmod(f"{scratch}/probe_child.py", 0o644)
        os.symlink(sandbox_interpreter(), f"{scratch}/{python_child}")
        argv = [f"{scratch}/{python_child}", "-I", "-S", f"{scratch}/probe_child.py", *argv[1:]]
    else:
        argv = [executable or argv[0], *argv[1:]]
    unit = f"vgpu-fix-probe-{uuid.uuid4().hex[:12]}.service"
    properties = [*placement.properties, "TimeoutStopSec=5"]
    if limit:
        properties.append(f"RuntimeMaxSec={math.ceil(limit)}")
    # The manager reads the environment from a private file: never on systemd-run's command line.
    properties.append(f"EnvironmentFile={private_file(scratch, 'environment', environment_file(env))}")
    process = system.start_transient(placement.scope or "system", unit, properties, argv, cwd, stdout, stderr)
    return Launched(process, scratch, time.monotonic(), unit, placement.scope)


def connect(launched: Launched, port: int, timeout: float):
    """A TCP connection to 127.0.0.1:`port` as the probe sees it: an isolated probe has its own
    network namespace, entered by one short-lived thread only (setns acts on the calling thread)."""
    import socket
    import threading

    if not launched.isolated:
        return socket.create_connection(("127.0.0.1", port), timeout=timeout)
    made: dict = {}

    def inside() -> None:
        import ctypes

        try:
            with open(f"/proc/{launched.process.pid}/ns/net") as ns:
                if ctypes.CDLL(None, use_errno=True).setns(ns.fileno(), 0x40000000) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            made["sock"] = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        except OSError as exc:
            made["error"] = exc

    thread = threading.Thread(target=inside)
    thread.start()
    thread.join()
    if "error" in made:
        raise made["error"]
    return made["sock"]


def outcome(launched: Launched, output: str) -> tuple[int | None, str, dict | None]:
    """(the probe's own exit status, `output` without systemd-run's lines, what systemd-run said).
    Outside systemd mode: the process's status and `output` unchanged."""
    if launched.unit is None:
        return launched.process.returncode, output, None
    lines = output.splitlines(keepends=True)
    said = {"unit": launched.unit, "scope": launched.scope,
            "started": any(line.startswith("Running as unit: ") for line in lines)}
    for line in lines:
        if line.startswith("Finished with result: "):
            said["result"] = line.split(": ", 1)[1].strip()
        elif line.startswith("Main processes terminated with: "):
            match = re.search(r"code=(\w+)/status=(\w+)", line)
            if match:
                said["code"], said["status"] = match.groups()
    return _status(said, launched.process.returncode), "".join(
        line for line in lines if not SYSTEMD_RUN_LINES.match(line)), said


def _status(said: dict, fallback_code: int | None) -> int | None:
    code, status = said.get("code"), said.get("status", "")
    if code == "exited" and status.isdigit():
        return int(status)
    if code in ("killed", "dumped"):
        try:
            return -getattr(signal, status if status.startswith("SIG") else f"SIG{status}")
        except AttributeError:
            return fallback_code
    return fallback_code


def setup_failure(said: dict | None, returncode: int | None) -> str | None:
    """`226/NAMESPACE` when systemd could not set up the probe's process with the unit's settings."""
    if not said or returncode not in EXEC_SETUP_STATUS:
        return None
    return f"{returncode}/{EXEC_SETUP_STATUS[returncode]}"


def stop(launched: Launched) -> None:
    """Kill the whole process group and reap the leader (in systemd mode: the transient unit first)."""
    if launched.unit and launched.process.poll() is None:
        from fixer import system

        system.kill_transient(launched.scope or "system", launched.unit)
        try:
            launched.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
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
    """Wait up to `timeout` s; on expiry kill the process group. Always reaps and cleans up. A
    transient unit has its own RuntimeMaxSec=: give its manager a moment to report the timeout."""
    timed_out = False
    captures = [Capture(s) if s is not None else None for s in (launched.process.stdout, launched.process.stderr)]
    try:
        launched.process.wait(timeout=timeout + (10 if launched.unit else 0))
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        stop(launched)
        cleanup(launched)
    for capture in captures:
        if capture is not None:
            capture.join()
    out, err = (c.text if c is not None else "" for c in captures)
    returncode, err, said = outcome(launched, err or "")
    timed_out = timed_out or bool(said and said.get("result") == "timeout")
    return Completed(None if timed_out else returncode, out or "", err, timed_out,
                     time.monotonic() - launched.started, said)
