"""Exec a probe in a private mount namespace showing a root's files at their real paths (stdlib only)."""

# Run as `python -I -S launch.py SPEC.json` (no site: stdlib only); it never imports fixer, so any python3 can run it.
# SPEC: namespace ("none" | "mount" | "user" | "isolated"), scratch (dir for overlay upper layers), mounts
# ([{source, target, kind: dir|file}], bound in order), user ({uid, gid, groups} | null), cwd,
# executable, argv, env. On failure before exec it prints one JSON line {"event": "launch-error"}
# and exits 97; otherwise the process becomes the probe (same pid, so the parent's timeout applies).
# "isolated" (an untrusted root; needs root): new mount, network and PID namespaces, every mount
# read-only, loopback up; the probe is forked as PID 1 of the new PID namespace, drops to SPEC's
# unprivileged user and enters a new user namespace before exec; the launcher relays its status.

import ctypes
import json
import os
import sys

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET, CLONE_NEWPID = 0x00020000, 0x10000000, 0x40000000, 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 8, 32, 4096, 16384, 1 << 18
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP, PR_SET_DUMPABLE = 0x8913, 0x8914, 0x1, 4
KEEP_WRITABLE = ("/proc", "/sys")  # kernel interfaces: an unprivileged user can write nothing there anyway
LAUNCH_FAILED = 97


def fail(step: str, error: str) -> None:
    print(json.dumps({"event": "launch-error", "step": step, "error": error}), flush=True)
    sys.exit(LAUNCH_FAILED)


def libc_call(name: str, *args) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if getattr(libc, name)(*args) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{name}: {os.strerror(errno)}")


def mount(source, target, fstype, flags, data=None) -> None:
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    libc_call("mount", enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data))


def enter_namespace(kind: str) -> None:
    uid, gid = os.getuid(), os.getgid()
    flags = {"user": CLONE_NEWUSER, "isolated": CLONE_NEWNET | CLONE_NEWPID}.get(kind, 0)
    libc_call("unshare", CLONE_NEWNS | flags)
    if kind == "user":
        for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
    mount("none", "/", None, MS_REC | MS_PRIVATE)


def loopback_up() -> None:
    import fcntl
    import socket
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def read_only_everywhere() -> None:
    """Remount every mount of this namespace read-only, keeping its other flags (deepest first)."""
    names = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC}
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = fields[4].encode().decode("unicode_escape")
            flags = sum(v for k, v in names.items() if k in fields[5].split(","))
            points.append((point, flags))
    for point, flags in sorted(points, key=lambda p: -p[0].count("/")):
        if point.startswith(KEEP_WRITABLE):
            continue
        try:
            mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags)
        except OSError:
            if os.path.isdir(point) or os.path.isfile(point):
                raise


def become(user: dict, isolated: bool) -> None:
    os.setgroups(user.get("groups", []))
    os.setgid(user["gid"])
    os.setuid(user["uid"])
    if isolated:  # a user namespace of its own: no capability over anything outside it
        # Changing uid made the process non-dumpable, so /proc/self/*_map would stay root's.
        libc_call("prctl", PR_SET_DUMPABLE, 1, 0, 0, 0)
        libc_call("unshare", CLONE_NEWUSER)
        try:  # show the probe its own ids; unmapped, it would see the overflow id (65534) instead
            for name, text in (("setgroups", "deny"), ("uid_map", f"{user['uid']} {user['uid']} 1"),
                               ("gid_map", f"{user['gid']} {user['gid']} 1")):
                with open(f"/proc/self/{name}", "w") as f:
                    f.write(text)
        except OSError:
            pass  # the kernel ids, and so every permission check, are the unprivileged user's either way


def pid_namespace() -> None:
    """Fork into the new PID namespace. Its PID 1 ignores signals it sends itself (a shim's
    raise(SIGSEGV) would not kill it), so PID 1 only forks the probe and reports its wait status
    through a pipe; this launcher then ends the way the probe ended. Only the probe returns."""
    import signal

    read_end, write_end = os.pipe()
    init = os.fork()
    if init == 0:
        os.close(read_end)
        probe = os.fork()
        if probe == 0:
            os.close(write_end)
            return
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _, status = os.waitpid(probe, 0)
        os.write(write_end, str(status).encode())
        os._exit(0)
    os.close(write_end)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    said = b""
    while chunk := os.read(read_end, 64):
        said += chunk
    os.waitpid(init, 0)
    status = int(said or b"0")
    if not said:  # PID 1 died before the probe ended (killed from outside)
        os._exit(LAUNCH_FAILED)
    if os.WIFSIGNALED(status):
        signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
        os.kill(os.getpid(), os.WTERMSIG(status))
    os._exit(os.waitstatus_to_exitcode(status))


def make_targets(mounts: list[dict], scratch: str) -> None:
    """Make every mount target exist inside the namespace before anything is bound: one overlay (upper
    layer on a private tmpfs) over each deepest existing ancestor, shallowest first, then the targets
    created there. Nothing reaches the real filesystem. Binding first would let a later overlay over
    a shared ancestor (say /usr/local/lib for both lib/ollama and lib/vgpu-fix) hide an earlier bind."""
    groups: dict[str, list[dict]] = {}
    for m in mounts:
        if os.path.lexists(m["target"]):
            continue
        ancestor = os.path.dirname(m["target"])
        while not os.path.isdir(ancestor):
            ancestor = os.path.dirname(ancestor)
        groups.setdefault(ancestor, []).append(m)
    for number, ancestor in enumerate(sorted(groups, key=lambda a: a.count("/")), start=1):
        layer = os.path.join(scratch, f"layer{number}")
        os.makedirs(layer, exist_ok=True)
        mount("tmpfs", layer, "tmpfs", 0, "mode=0755")
        os.makedirs(f"{layer}/upper")
        os.makedirs(f"{layer}/work")
        mount("overlay", ancestor, "overlay", 0, f"lowerdir={ancestor},upperdir={layer}/upper,workdir={layer}/work")
        for m in groups[ancestor]:
            if m["kind"] == "dir":
                os.makedirs(m["target"], exist_ok=True)
            else:
                os.makedirs(os.path.dirname(m["target"]), exist_ok=True)
                open(m["target"], "a").close()


def main() -> None:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    step = "namespace"
    try:
        if spec.get("namespace", "none") != "none":
            enter_namespace(spec["namespace"])
            step = "make mount targets"
            make_targets(spec.get("mounts", []), spec["scratch"])
            for m in spec.get("mounts", []):
                step = f"mount {m['source']} on {m['target']}"
                mount(m["source"], m["target"], None, MS_BIND | MS_REC)
        isolated = spec.get("namespace") == "isolated"
        if isolated:
            step = "loopback"
            loopback_up()
            step = "read-only mounts"
            read_only_everywhere()
            step = "fork into the PID namespace"
            pid_namespace()
        user = spec.get("user")
        if user:
            step = f"switch to uid {user['uid']}"
            become(user, isolated)
        step = "chdir"
        try:
            os.chdir(spec.get("cwd") or "/")
        except OSError:
            os.chdir("/")
        step = f"exec {spec['executable']}"
        os.execve(spec["executable"], spec["argv"], spec["env"])
    except OSError as err:
        fail(step, str(err))


if __name__ == "__main__":
    main()
