"""Exec a probe in a private mount namespace showing a root's files at their real paths (stdlib only)."""

# Run as `python -I launch.py SPEC.json`; it never imports fixer, so any python3 can run it.
# SPEC: namespace ("none" | "mount" | "user"), scratch (dir for overlay upper layers), mounts
# ([{source, target, kind: dir|file}], bound in order), user ({uid, gid, groups} | null), cwd,
# executable, argv, env. On failure before exec it prints one JSON line {"event": "launch-error"}
# and exits 97; otherwise the process becomes the probe (same pid, so the parent's timeout applies).

import ctypes
import json
import os
import sys

CLONE_NEWNS, CLONE_NEWUSER = 0x00020000, 0x10000000
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
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
    libc_call("unshare", CLONE_NEWNS | (CLONE_NEWUSER if kind == "user" else 0))
    if kind == "user":
        for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
    mount("none", "/", None, MS_REC | MS_PRIVATE)


def make_target(target: str, kind: str, scratch: str, counter: list) -> None:
    """Make `target` exist inside the namespace: an overlay (upper layer on a private tmpfs) over its
    deepest existing ancestor, then create it there. Nothing reaches the real filesystem."""
    if os.path.lexists(target):
        return
    ancestor = os.path.dirname(target)
    while not os.path.isdir(ancestor):
        ancestor = os.path.dirname(ancestor)
    counter[0] += 1
    layer = os.path.join(scratch, f"layer{counter[0]}")
    os.makedirs(layer, exist_ok=True)
    mount("tmpfs", layer, "tmpfs", 0, "mode=0755")
    os.makedirs(f"{layer}/upper")
    os.makedirs(f"{layer}/work")
    options = f"lowerdir={ancestor},upperdir={layer}/upper,workdir={layer}/work"
    mount("overlay", ancestor, "overlay", 0, options)
    if kind == "dir":
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "a").close()


def main() -> None:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    step = "namespace"
    try:
        if spec.get("namespace", "none") != "none":
            enter_namespace(spec["namespace"])
            counter = [0]
            for m in spec.get("mounts", []):
                step = f"mount {m['source']} on {m['target']}"
                make_target(m["target"], m["kind"], spec["scratch"], counter)
                mount(m["source"], m["target"], None, MS_BIND | MS_REC)
        user = spec.get("user")
        if user:
            step = f"switch to uid {user['uid']}"
            os.setgroups(user.get("groups", []))
            os.setgid(user["gid"])
            os.setuid(user["uid"])
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
