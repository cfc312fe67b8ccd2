"""Run one hostile-input case (a YAML file in cases/) against a fresh seed host and observe everything.

A case says what to feed vgpu-fix and what must come out:

    description: one line
    command: apply                  # plan | apply | rollback (default apply)
    args: [--force]                 # more arguments
    profile: |                      # profile text, passed as --profile PATH (default: h100-vgpu)
      name: bad
    profile_latin1: "..."           # instead of `profile`: raw bytes (each char U+0000-U+00FF one byte)
    siblings: {other.yaml: "..."}   # more profile files beside it (for extends)
    host:                           # steps applied to the seed host first, in order
      - {write: /p, text: "...", mode: "0644"}   # or latin1: "..." for raw bytes
      - {symlink: /p, target: "@OUTSIDE@/x"}
      - {mkdir: /p}
      - {remove: /p}
      - {apply: true}               # a clean `apply` first (for rollback/journal cases)
      - {tamper: manifest | blob | blob-delete | checksum-delete | entry-path | garbage}
      - {saved_plan: /p, edit: {dotted.key.0: value}, redigest: true}   # `plan --out /p` (a path
        outside the root, e.g. @OUTSIDE@/plan.json), then edit its JSON; with redigest the edit
        also recomputes the digest, as someone who knows the format would
      - {mkfifo: /p} | {socket: /p} | {mknod: /p}   # special files (mknod: /dev/null's 1:3, or
                                                    # major/minor; needs root; never in the machine's /dev)
      - {tamper: blob-fifo | manifest-zero | audit-fifo | last-verify-fifo}  # state files that are not files
      - {chown: /p, uid: 1000, gid: 1000}           # needs root
      - {hardlink: /p, target: "@OUTSIDE@/x"}       # a second name for the file at /p
      - {hold_lock: true}           # another process holds the run lock for the whole run
    profile_ref: /dev/zero          # instead of `profile`: the --profile argument itself (filled)
    stdin: /dev/zero                # what the command reads as its standard input
    signal: {after: 2, name: SIGTERM}   # sent while the command runs (a wait must end with 128+N)
    timeout: 60                     # seconds before the command is killed (then rc -9: a hang)
    needs_root: true                # skipped (with the reason) where not root
    mount: readonly | readonly-etc | full | full-etc | dev   # needs root; runs in a private mount
                                    # namespace (dev: a private /dev of fresh null, zero, full nodes and
                                    # the stdin/stdout/stderr links, checked after the run)
    expect:
      exit: 3
      error: 'regex'                # some stderr line must match (the one-line error naming the location)
      env: {NAME: value}            # exit 0 cases: effective environment after apply (fixer's probe)
      analyze: true                 # exit 0 cases: systemd-analyze verify prints nothing about our drop-in
      files: {/p: "latin1 text"}    # exit 0 cases: exact bytes after apply
      output: 'regex'               # some stdout or stderr line must match (warnings, notes)
      owner: {/p: [0, 0, "0644"]}   # exit 0 apply cases: uid, gid and mode after apply
      not_output: 'regex'           # no stdout or stderr line may match (a leak, a wrong name)
      json: {changed: true}         # keys of the --json document on stdout, with their values
      devices: {/dev/null: char}    # mount dev: what each node is after the run (char, symlink, file)
      file_lines: {/p: "line"}      # exit 0 apply cases: the file holds exactly this line
      analyze_unit: {unit: x.path, not: 'regex'}   # exit 0 apply cases: systemd-analyze verify of a unit

Placeholders in strings: @OUTSIDE@ (a directory beside the root that must never change), @ROOT@,
@LONG:N@ (N characters 'x').
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys

from fixer.demo import build_seed_host
from tests.reliability.harness import APPLY, REPO, RUNNERS, generation_statuses, temp_files, tree

SYSTEMD_STUBS = ("sysinit.target", "basic.target", "shutdown.target", "default.target", "multi-user.target",
                 "network-online.target", "network.target", "sockets.target", "paths.target", "timers.target",
                 "slices.target", "local-fs.target", "swap.target", "umount.target", "final.target")


def load_case(path: str) -> dict:
    from ruamel.yaml import YAML

    with open(path, encoding="utf-8") as fh:
        case = YAML(typ="safe").load(fh)
    case["name"] = os.path.splitext(os.path.basename(path))[0]
    return case


def _fill(text: str, root: str, outside: str) -> str:
    text = text.replace("@OUTSIDE@", outside).replace("@ROOT@", root)
    return re.sub(r"@LONG:(\d+)@", lambda m: "x" * int(m.group(1)), text)


def _bytes(step: dict, root: str, outside: str) -> bytes:
    if "latin1" in step:
        return _fill(step["latin1"], root, outside).encode("latin-1")
    return _fill(step.get("text", ""), root, outside).encode()


def _host_step(step: dict, root: str, outside: str, run) -> None:
    def real(path: str) -> str:
        if path.startswith("@OUTSIDE@"):  # set up beside the root (its bytes must not change either)
            return _fill(path, root, outside)
        return os.path.join(root, _fill(path, root, outside).lstrip("/"))

    if "write" in step:
        path = real(step["write"])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(_bytes(step, root, outside))
        os.chmod(path, int(str(step.get("mode", "0644")), 8))
    elif "symlink" in step:
        path = real(step["symlink"])
        if os.path.lexists(path):
            shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.unlink(path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.symlink(_fill(step["target"], root, outside), path)
    elif "mkdir" in step:
        os.makedirs(real(step["mkdir"]), exist_ok=True)
    elif "remove" in step:
        path = real(step["remove"])
        shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.unlink(path)
    elif "apply" in step:
        result = run("apply", "--root", root, *APPLY)
        assert result.returncode == 0, result.output
    elif "tamper" in step:
        _tamper(root, step["tamper"])
    elif "saved_plan" in step:
        path = _fill(step["saved_plan"], root, outside)
        result = run("plan", "--root", root, "--profile", "h100-vgpu", "--out", path)
        assert result.returncode == 4, result.output
        _edit_plan(path, step.get("edit") or {}, step.get("redigest", False))
    elif "mkfifo" in step:
        path = real(step["mkfifo"])
        if os.path.lexists(path):
            os.unlink(path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.mkfifo(path)
    elif "socket" in step:
        import socket

        sock = socket.socket(socket.AF_UNIX)
        sock.bind(real(step["socket"]))
        sock.close()  # the socket file stays
    elif "mknod" in step:
        import stat

        path = real(step["mknod"])
        if os.path.lexists(path):
            os.unlink(path)
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(step.get("major", 1), step.get("minor", 3)))
    elif "chown" in step:
        os.chown(real(step["chown"]), step["uid"], step["gid"], follow_symlinks=False)
    elif "hardlink" in step:
        os.link(real(step["hardlink"]), _fill(step["target"], root, outside))
    elif "hold_lock" in step:
        HOLDERS.append(_hold_lock(os.path.join(root, "var/lib/vgpu-fix/lock")))
    else:
        raise ValueError(f"unknown host step {step}")


HOLDERS: list[subprocess.Popen] = []  # lock holders of the case being observed; killed when it ends


def _hold_lock(path: str) -> subprocess.Popen:
    """A process that takes the run lock (flock, as a run does) and keeps it until it is killed."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    code = ("import fcntl, os, sys, time\n"
            f"fd = os.open({path!r}, os.O_RDWR | os.O_CREAT, 0o600)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(300)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def _tamper(root: str, how: str) -> None:
    import hashlib

    generation = os.path.join(root, "var/lib/vgpu-fix/generations/0001")
    manifest = os.path.join(generation, "manifest.json")
    blobs = sorted(os.listdir(os.path.join(generation, "blobs")))
    state = os.path.dirname(os.path.dirname(generation))
    special = {"blob-fifo": os.path.join(generation, "blobs", blobs[0]), "audit-fifo": os.path.join(state, "audit.log"),
               "last-verify-fifo": os.path.join(state, "last-verify.json")}
    if how in special:  # a FIFO where vgpu-fix keeps a state file: never waited on
        if os.path.lexists(special[how]):
            os.unlink(special[how])
        os.mkfifo(special[how], 0o600)
        return
    if how == "manifest-zero":  # the manifest a link to an endless device
        os.unlink(manifest)
        os.symlink("/dev/zero", manifest)
        return
    if how == "manifest":  # an edit without fixing the checksum
        data = json.load(open(manifest))
        data["entries"][0]["mode"] = 0o777
        open(manifest, "w").write(json.dumps(data, sort_keys=True, indent=1))
    elif how == "blob":
        with open(os.path.join(generation, "blobs", blobs[0]), "ab") as fh:
            fh.write(b"\n# sneaked in\n")
    elif how == "blob-delete":
        os.unlink(os.path.join(generation, "blobs", blobs[-1]))
    elif how == "checksum-delete":
        os.unlink(manifest + ".sha256")
    elif how in ("entry-path", "garbage"):  # consistent checksum, poisonous content
        if how == "entry-path":
            data = json.load(open(manifest))
            data["entries"][-1]["path"] = "/etc/../../../outside/evil"
            raw = json.dumps(data, sort_keys=True, indent=1).encode()
        else:
            raw = b'{"status": "applied", "entries": 7}'
        open(manifest, "wb").write(raw)
        open(manifest + ".sha256", "w").write(hashlib.sha256(raw).hexdigest())
    else:
        raise ValueError(how)


def _edit_plan(path: str, edits: dict, redigest: bool) -> None:
    from fixer.core import plan_digest

    with open(path, encoding="utf-8") as fh:
        document = json.load(fh)
    for dotted, value in edits.items():
        *parents, last = [int(k) if k.isdigit() else k for k in dotted.split(".")]
        node = document
        for key in parents:
            node = node[key]
        node[last] = value
    if redigest:
        document["digest"] = plan_digest(document["profile_data"], document["plan"])
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(document, fh, indent=1)


def _outside_tree(outside: str) -> dict:
    from fixer.demo import snapshot_tree

    return snapshot_tree(outside, exclude=())


def _mount(kind: str, root: str) -> None:
    def sh(*cmd: str) -> None:
        subprocess.run(cmd, check=True)

    if kind in ("full", "readonly"):
        sh("mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", root)
    elif kind == "dev":
        _private_dev()
    elif kind in ("full-etc", "readonly-etc"):
        pass  # the seed is built first, then /etc is replaced below
    else:
        raise ValueError(kind)


DEVICES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9)}


def _private_dev() -> None:
    """A fresh /dev (tmpfs) in this private mount namespace: what a run does to it never reaches the
    machine's own device nodes."""
    import stat

    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", "/dev"], check=True)
    for name, (major, minor) in DEVICES.items():
        os.mknod(f"/dev/{name}", 0o666 | stat.S_IFCHR, os.makedev(major, minor))
        os.chmod(f"/dev/{name}", 0o666)
    for name, target in (("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"),
                         ("fd", "/proc/self/fd")):
        os.symlink(target, f"/dev/{name}")


def _device_kind(path: str) -> str:
    import stat

    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return "absent"
    return ("char" if stat.S_ISCHR(mode) else "symlink" if stat.S_ISLNK(mode) else
            "file" if stat.S_ISREG(mode) else "other")


def _after_seed_mount(kind: str, root: str) -> None:
    def sh(*cmd: str) -> None:
        subprocess.run(cmd, check=True)

    etc = os.path.join(root, "etc")
    if kind == "readonly":
        sh("mount", "-o", "remount,ro", root)
    elif kind == "readonly-etc":
        sh("mount", "--bind", etc, etc)
        sh("mount", "-o", "remount,bind,ro", etc)
    elif kind == "full-etc":
        keep = os.path.join(os.path.dirname(root), "etc-copy")
        shutil.copytree(etc, keep, symlinks=True)
        sh("mount", "-t", "tmpfs", "-o", "size=512k,mode=0755", "tmpfs", etc)
        shutil.copytree(keep, etc, symlinks=True, dirs_exist_ok=True)
        _fill_up(etc)
    elif kind == "full":
        _fill_up(root)


def _fill_up(directory: str) -> None:
    """Fill the filesystem holding `directory` to the last byte with a file of its own."""
    try:
        fd = os.open(os.path.join(directory, ".filler"), os.O_WRONLY | os.O_CREAT, 0o600)
    except OSError:
        return  # already full
    try:
        for size in (1 << 16, 4096, 1):
            try:
                while os.write(fd, b"\0" * size) == size:
                    pass
            except OSError:
                pass
    finally:
        os.close(fd)


def observe(case: dict, workdir: str, runner: str = "fork") -> dict:
    """Set up the case, run the command once, and report what happened (JSON-able)."""
    try:
        return _observe(case, workdir, runner)
    finally:
        while HOLDERS:
            holder = HOLDERS.pop()
            holder.kill()
            holder.wait()


def _observe(case: dict, workdir: str, runner: str) -> dict:
    run = RUNNERS[runner]
    root = os.path.join(workdir, "root")
    outside = os.path.join(workdir, "outside")
    os.makedirs(outside)
    with open(os.path.join(outside, "precious.conf"), "w") as fh:
        fh.write("[Service]\nEnvironment=OUTSIDE=1\n")
    os.makedirs(root)
    if case.get("mount"):
        _mount(case["mount"], root)
    build_seed_host(root)
    for name in SYSTEMD_STUBS:
        stub = os.path.join(root, "usr/lib/systemd/system", name)
        os.makedirs(os.path.dirname(stub), exist_ok=True)
        with open(stub, "w") as fh:
            fh.write(f"[Unit]\nDescription=stub {name}\n")
    profile_args: tuple[str, ...] = ("--profile", "h100-vgpu")
    profiles = os.path.join(workdir, "profiles")
    os.makedirs(profiles)
    for name, text in (case.get("siblings") or {}).items():
        with open(os.path.join(profiles, name), "w", encoding="utf-8") as fh:
            fh.write(_fill(text, root, outside))
    if "profile_ref" in case:
        profile_args = ("--profile", _fill(case["profile_ref"], root, outside))
    elif "profile" in case or "profile_latin1" in case:
        path = os.path.join(profiles, case.get("profile_file", "case.yaml"))
        data = (_fill(case["profile"], root, outside).encode() if "profile" in case
                else _fill(case["profile_latin1"], root, outside).encode("latin-1"))
        with open(path, "wb") as fh:
            fh.write(data)
        profile_args = ("--profile", path)
    pristine = tree(root)  # the seed: what a successful rollback after `{apply: true}` must give back
    for step in case.get("host") or []:
        _host_step(step, root, outside, run)
    if case.get("mount"):
        _after_seed_mount(case["mount"], root)
    state_dir = os.path.join(root, "var/lib/vgpu-fix")
    before = {"tree": tree(root), "outside": _outside_tree(outside), "state_dir": os.path.isdir(state_dir),
              "generations": _safe_statuses(root)}
    command = case.get("command", "apply")
    args = [_fill(a, root, outside) for a in case.get("args") or []]
    if command == "apply":
        # a saved plan carries its own profile: --profile beside --plan is a usage error
        argv = ["apply", "--root", root, *(() if "--plan" in args else profile_args), "--no-verify", *args]
    elif command in ("plan", "verify"):
        argv = [command, "--root", root, *profile_args, *args]
    else:
        argv = [command, "--root", root, *args]
    signalled = case.get("signal")
    result = run(*argv, stdin=case.get("stdin"), timeout=case.get("timeout", 60),
                 signal_after=(signalled["after"], getattr(signal, signalled["name"])) if signalled else None)
    seen = {
        "argv": argv,
        "rc": result.returncode,
        "stdout": result.stdout[-40000:],
        "stderr": result.stderr[-40000:],
        "tree_unchanged": tree(root) == before["tree"],
        "seed_restored": tree(root) == pristine,
        "tree_diff": sorted(k for k in set(tree(root)) | set(before["tree"])
                            if tree(root).get(k) != before["tree"].get(k))[:20],
        "outside_unchanged": _outside_tree(outside) == before["outside"],
        "temp_files": temp_files(root),
        "state_dir_before": before["state_dir"],
        "state_dir_after": os.path.isdir(state_dir),
        "generations_before": before["generations"],
        "generations_after": _safe_statuses(root),
    }
    expect = case.get("expect") or {}
    seen["devices"] = {p: _device_kind(p) for p in expect.get("devices") or {}}
    if result.returncode == 0 and command == "apply":
        from fixer.facts.host import probe_unit

        unit = probe_unit(root, "ollama.service")
        seen["env"] = unit.environment.effective()
        seen["files"] = {p: _read_latin1(os.path.join(root, _fill(p, root, outside).lstrip("/")))
                         for p in expect.get("files") or {}}
        seen["owner"] = {p: _owner(os.path.join(root, p.lstrip("/"))) for p in expect.get("owner") or {}}
        if expect.get("analyze"):
            seen["analyze"] = _analyze(root)
        seen["file_lines"] = {p: _read_latin1(os.path.join(root, p.lstrip("/"))) for p in expect.get("file_lines") or {}}
        if expect.get("analyze_unit"):
            seen["analyze_unit"] = _analyze(root, expect["analyze_unit"]["unit"])
        back = run("rollback", "--root", root)
        seen["rollback_rc"] = back.returncode
        seen["rollback_restored"] = tree(root) == before["tree"]
    return seen


def _safe_statuses(root: str) -> list[str] | str:
    try:
        return generation_statuses(root)
    except Exception as exc:  # noqa: BLE001 - a tampered journal stays tampered
        return f"unreadable: {type(exc).__name__}"


def _owner(path: str) -> list:
    st = os.lstat(path)
    return [st.st_uid, st.st_gid, f"{st.st_mode & 0o7777:04o}"]


def _read_latin1(path: str) -> str | None:
    if not os.path.lexists(path) or os.path.islink(path):
        return None
    with open(path, "rb") as fh:
        return fh.read().decode("latin-1")


def _analyze(root: str, unit: str = "ollama.service") -> dict:
    proc = subprocess.run(["systemd-analyze", "verify", f"--root={root}", unit],
                          capture_output=True, text=True, timeout=60)
    ours = [line for line in (proc.stdout + proc.stderr).splitlines() if "zz-vgpu-fix.conf" in line]
    return {"rc": proc.returncode, "our_warnings": ours, "output": (proc.stdout + proc.stderr)[-2000:]}


def observe_in_namespace(case_path: str, workdir: str) -> dict:
    """Run `observe` inside a private mount namespace (mount cases); mounts vanish with it."""
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, "-m",
                           "tests.reliability.cases_runner", case_path, workdir],
                          capture_output=True, text=True, cwd=REPO, timeout=300,
                          env={**os.environ, "PYTHONPATH": REPO})
    if proc.returncode != 0:
        raise RuntimeError(f"case runner failed in the namespace: {proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    seen = observe(load_case(sys.argv[1]), sys.argv[2], runner="subprocess")
    print(json.dumps(seen))
