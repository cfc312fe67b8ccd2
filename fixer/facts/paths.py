"""Paths inside a root: the exact state of one path, and the rule that no parent may be a symlink."""

from __future__ import annotations

import os
import stat

from fixer.errors import Conflict
from fixer.model.owned import STATE_DIR  # noqa: F401  (re-exported: the journal's home)
# What a path's state is and the kernel's path rules are pure data: they live in the model (which must not
# import the facts layer); re-exported here for the readers that return them.
from fixer.model.path import ABSENT, NAME_MAX, PATH_MAX, Kind, PathState, check_path  # noqa: F401

MAX_READ = 16 * 1024 * 1024


def host_path(root: str, path: str) -> str:
    """The real location of absolute `path` inside `root` (the one helper that joins a path onto a root)."""
    if not root:
        raise ValueError("an empty root names no directory")
    return path if root == "/" else root.rstrip("/") + "/" + path.lstrip("/")


def read_state(root: str, path: str) -> PathState:
    real = host_path(root, path)
    try:
        st = os.lstat(real)
    except (FileNotFoundError, NotADirectoryError):
        return ABSENT
    except OSError as exc:  # ELOOP in a parent, ENAMETOOLONG, EACCES, EIO: the path cannot be used
        raise Conflict(f"{path}: cannot be read: {exc.strerror}") from None
    mode = stat.S_IMODE(st.st_mode)
    try:
        if stat.S_ISLNK(st.st_mode):
            return PathState("symlink", target=os.readlink(real))
        if stat.S_ISDIR(st.st_mode):
            return PathState("dir", mode=mode, uid=st.st_uid, gid=st.st_gid)
        if stat.S_ISREG(st.st_mode):
            return PathState("file", data=_read_nofollow(real), mode=mode, uid=st.st_uid, gid=st.st_gid,
                             links=st.st_nlink)
    except OSError as exc:
        raise Conflict(f"{path}: cannot be read: {exc.strerror}") from None
    return PathState("other", mode=mode, uid=st.st_uid, gid=st.st_gid)


def _read_nofollow(real: str) -> bytes:
    return read_capped(real, follow=False)


def read_capped(real: str, *, follow: bool = True, limit: int = MAX_READ, tail: bool = False) -> bytes:
    """Read a host file, never more than `limit` bytes: every host file vgpu-fix reads goes through here.

    A larger file is a Conflict naming it, except with `tail` (logs), where a regular file yields its
    last `limit` bytes; a device or FIFO that keeps producing stops at the limit either way.
    """
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | (0 if follow else os.O_NOFOLLOW)
    fd = os.open(real, flags)
    try:
        st = os.fstat(fd)
        if tail and stat.S_ISREG(st.st_mode) and st.st_size > limit:
            os.lseek(fd, st.st_size - limit, os.SEEK_SET)
        elif stat.S_ISREG(st.st_mode):
            pass
        else:
            os.set_blocking(fd, True)  # a pipe or device: read what it gives, up to the limit
        chunks, size = [], 0
        while size <= limit and (chunk := os.read(fd, min(1 << 20, limit + 1 - size))):
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise Conflict(f"{real}: larger than {limit} bytes; vgpu-fix reads files up to {limit // (1 << 20)} MiB only")
        return b"".join(chunks)
    finally:
        os.close(fd)


def parent_problem(root: str, path: str) -> str | None:
    """Why the parents of `path` are unsafe to write through, or None (missing parents are fine)."""
    current = root.rstrip("/") or "/"
    parts = [p for p in path.split("/") if p][:-1]
    for part in parts:
        current = os.path.join(current, part)
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            return None
        if stat.S_ISLNK(st.st_mode):
            shown = "/" + os.path.relpath(current, root) if root != "/" else current
            return (
                f"parent directory {shown} is a symlink (-> {os.readlink(current)}); "
                "vgpu-fix never writes through symlinks"
            )
        if not stat.S_ISDIR(st.st_mode):
            shown = "/" + os.path.relpath(current, root) if root != "/" else current
            return f"parent {shown} is not a directory"
    return None


def missing_parents(root: str, path: str) -> list[str]:
    """Absolute paths of the parent directories of `path` that do not exist yet, outermost first."""
    missing = []
    parent = os.path.dirname(path)
    while parent not in ("/", ""):
        if os.path.lexists(host_path(root, parent)):
            break
        missing.append(parent)
        parent = os.path.dirname(parent)
    return list(reversed(missing))


def list_dir(root: str, path: str) -> list[str]:
    """Names in a directory inside the root, sorted; empty when it is absent or not a directory."""
    real = host_path(root, path)
    if os.path.islink(real) or not os.path.isdir(real):
        return []
    return sorted(os.listdir(real))
