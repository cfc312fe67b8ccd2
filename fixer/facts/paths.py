"""Paths inside a root: the exact state of one path, and the rule that no parent may be a symlink."""

from __future__ import annotations

import os
import posixpath
import stat
from collections import deque

from fixer.errors import Conflict
from fixer.facts import reading
from fixer.facts.reading import MAX_READ, Refused
from fixer.model.owned import STATE_DIR  # noqa: F401  (re-exported: the journal's home)
# What a path's state is and the kernel's path rules are pure data: they live in the model (which must not
# import the facts layer); re-exported here for the readers that return them.
from fixer.model.path import ABSENT, NAME_MAX, PATH_MAX, Kind, PathState, check_path  # noqa: F401

MAX_SYMLINKS = 40  # the kernel's limit on links followed in one lookup


def host_path(root: str, path: str) -> str:
    """The real location of absolute `path` inside `root` (the one helper that joins a path onto a root)."""
    if not root:
        raise ValueError("an empty root names no directory")
    return path if root == "/" else root.rstrip("/") + "/" + path.lstrip("/")


def read_state(root: str, path: str) -> PathState:
    """The state of `path` itself (a final symlink is not followed); its parents resolve inside the root."""
    real = own_path(root, path)
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
    """A regular file of a root, never more than `limit` bytes (facts/reading.py); a FIFO, a device or a
    larger file is a Conflict naming it (with `tail`, a larger file gives its last `limit` bytes)."""
    try:
        return reading.read_file(real, follow=follow, limit=limit, tail=tail)
    except Refused as exc:
        raise Conflict(f"{real}: {exc.strerror}") from None


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


def resolve_in_root(root: str, path: str, strict: bool = True) -> str | None:
    """Canonical absolute path of `path` inside `root` with chroot semantics, or None if it is absent.
    With `strict=False` (like os.path.realpath) a missing component ends the resolution and the rest
    is kept as written, so a dangling link still names where it points. The one door to a root:
    every reader below resolves through here, so an absolute link never leads out of the root."""
    prefix = "" if root in ("/", "") else root.rstrip("/")
    parts: deque[str] = deque(path.split("/"))
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.popleft()
        if part in ("", "."):
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        here = prefix + "/" + "/".join(resolved + [part])
        try:
            st = os.lstat(here)
        except OSError:
            if strict:
                return None
            resolved += [part, *parts]
            break
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > MAX_SYMLINKS:
                return None
            target = os.readlink(here)
            if target.startswith("/"):
                resolved = []
            parts.extendleft(reversed(target.split("/")))
        else:
            if parts and not stat.S_ISDIR(st.st_mode) and strict:
                return None
            resolved.append(part)
    return os.path.normpath("/" + "/".join(resolved))


def real_path(root: str, path: str) -> str | None:
    """Where `path` of the root really is on this machine, every symlink resolved inside the root; None if absent."""
    inside = resolve_in_root(root, path)
    return None if inside is None else host_path(root, inside)


def own_path(root: str, path: str) -> str:
    """Where `path` itself is on this machine: its parents resolved inside the root, its last component
    as written (a final symlink stays a symlink). A missing parent leaves the rest as written."""
    parent = resolve_in_root(root, posixpath.dirname(path) or "/", strict=False) or "/"
    return host_path(root, posixpath.join(parent, posixpath.basename(path)))


def stat_in(root: str, path: str, follow: bool = True) -> os.stat_result | None:
    """The status of `path` (with `follow=False`, of a final symlink itself); parents resolve inside the root."""
    real = real_path(root, path) if follow else own_path(root, path)
    try:
        return None if real is None else os.lstat(real)
    except OSError:
        return None


def is_dir(root: str, path: str) -> bool:
    st = stat_in(root, path)
    return st is not None and stat.S_ISDIR(st.st_mode)


def is_file(root: str, path: str) -> bool:
    st = stat_in(root, path)
    return st is not None and stat.S_ISREG(st.st_mode)


def is_executable(root: str, path: str) -> bool:
    """A regular file whose mode lets someone execute it (what exec(2) asks of a program's file)."""
    st = stat_in(root, path)
    return st is not None and stat.S_ISREG(st.st_mode) and bool(st.st_mode & 0o111)


def link_target(root: str, path: str) -> str | None:
    """The text of symlink `path` (parents resolved inside the root), or None when it is no symlink."""
    try:
        return os.readlink(own_path(root, path))
    except OSError:  # absent, or no symlink
        return None


def names(root: str, path: str) -> list[str]:
    """Names in directory `path` (symlinks resolved inside the root), sorted; empty when absent or unreadable."""
    real = real_path(root, path)
    try:
        return sorted(os.listdir(real)) if real is not None and os.path.isdir(real) else []
    except OSError:
        return []


def matching(root: str, folder: str, pattern: str) -> list[str]:
    """Absolute paths of the entries of `folder` whose names match the shell `pattern` (no `/`), sorted."""
    import fnmatch

    return [f"{folder.rstrip('/')}/{n}" for n in names(root, folder) if fnmatch.fnmatchcase(n, pattern)]


def glob_in(root: str, pattern: str) -> list[str]:
    """Absolute paths inside the root matching the shell `pattern` (magic in any component), sorted; every
    directory on the way resolves inside the root. What glob(3) gives a process chrooted there."""
    import fnmatch
    import glob as globbing

    found = ["/"]
    for part in [p for p in pattern.split("/") if p]:
        if globbing.has_magic(part):
            found = [f"{d.rstrip('/')}/{n}" for d in found for n in names(root, d)
                     if fnmatch.fnmatchcase(n, part) and (part.startswith(".") or not n.startswith("."))]
        else:
            found = [f"{d.rstrip('/')}/{part}" for d in found]
    return sorted(f for f in found if f != "/" and stat_in(root, f, follow=False) is not None)


def entries(root: str, path: str) -> dict[str, tuple[os.stat_result, str | None]] | None:
    """Each entry of directory `path` with its own status (not followed) and link text; None when
    `path` is no directory. The directory itself resolves inside the root."""
    real = real_path(root, path)
    try:
        if real is None or not os.path.isdir(real):
            return None
        listed = sorted(os.listdir(real))
    except OSError:
        return None
    out = {}
    for name in listed:
        full = os.path.join(real, name)
        try:
            st = os.lstat(full)
            out[name] = (st, os.readlink(full) if stat.S_ISLNK(st.st_mode) else None)
        except OSError:
            continue
    return out


def read_small(root: str, path: str, limit: int = 4096) -> str:
    """The first `limit` bytes of a small text file of the root (sysfs, /proc), stripped; "" when unreadable."""
    real = real_path(root, path)
    try:
        return "" if real is None else read_capped(real, follow=False, limit=1 << 20)[:limit].decode(
            "ascii", errors="replace").strip()
    except (OSError, Conflict):
        return ""


def read_file(root: str, path: str, limit: int = MAX_READ) -> bytes:
    """A file of the root, symlinks resolved inside it, at most `limit` bytes (FileNotFoundError if absent)."""
    real = real_path(root, path)
    if real is None:
        raise FileNotFoundError(2, "No such file or directory", path)
    return read_capped(real, follow=False, limit=limit)


def list_dir(root: str, path: str) -> list[str]:
    """Names in a directory inside the root, sorted; empty when it is absent, not a directory or itself a symlink."""
    st = stat_in(root, path, follow=False)
    if st is None or not stat.S_ISDIR(st.st_mode):
        return []
    return names(root, path)
