"""Paths inside a root: the exact state of one path, and the rule that no parent may be a symlink."""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
from dataclasses import dataclass, field
from typing import Literal

from fixer.errors import Conflict
from fixer.facts.reading import MAX_READ, Refused, read_file

Kind = Literal["absent", "file", "symlink", "dir", "other"]
from fixer.model.owned import STATE_DIR  # noqa: E402,F401  (re-exported: the journal's home)


def host_path(root: str, path: str) -> str:
    """The real location of absolute `path` inside `root` (the one helper that joins a path onto a root)."""
    if not root:
        raise ValueError("an empty root names no directory")
    return path if root == "/" else root.rstrip("/") + "/" + path.lstrip("/")


PATH_MAX = 4096  # bytes, with the terminating NUL (linux/limits.h)
NAME_MAX = 255  # bytes per path component


def check_path(value: str) -> str:
    """An absolute path exactly as the kernel will resolve it (profile paths and journal entries alike): no trailing slash, no `.`, `..` or
    empty components, each component at most NAME_MAX bytes and the whole below PATH_MAX."""
    if not isinstance(value, str) or not value:
        raise ValueError("must be a non-empty path")
    if "\x00" in value or "\n" in value:
        raise ValueError("must not contain NUL or newline characters")
    if not value.startswith("/"):
        raise ValueError(f"must be an absolute path, got {value!r}")
    if value == "/":
        raise ValueError("must name something below the root, not the root itself")
    parts = value[1:].split("/")
    if ".." in parts:
        raise ValueError(f"must not contain '..' components: {value!r}")
    if value.endswith("/"):
        raise ValueError(f"must not end in '/' (the kernel would require a directory there): {value!r}")
    if "" in parts or "." in parts:
        raise ValueError(f"must be in normal form ({posixpath.normpath(value)!r}), got {value!r}")
    encoded = value.encode("utf-8", "surrogateescape")
    if len(encoded) >= PATH_MAX:
        raise ValueError(f"is {len(encoded)} bytes long; the kernel's limit (PATH_MAX) is {PATH_MAX - 1}")
    for part in parts:
        if len(part.encode("utf-8", "surrogateescape")) > NAME_MAX:
            raise ValueError(f"has a component of {len(part.encode('utf-8', 'surrogateescape'))} bytes; "
                             f"the kernel's limit (NAME_MAX) is {NAME_MAX}: {part[:40]!r}...")
    return value


@dataclass(frozen=True)
class PathState:
    """What is at a path, read without following a final symlink."""

    kind: Kind
    target: str | None = None
    data: bytes | None = None
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    links: int = field(default=1, compare=False)  # hard links of a file: not part of its state

    @property
    def sha256(self) -> str | None:
        return None if self.data is None else hashlib.sha256(self.data).hexdigest()

    def fingerprint(self) -> str:
        """A digest of everything that identifies this state; equal states give equal digests."""
        parts = [self.kind, self.target or "", self.sha256 or "", oct(self.mode or 0), str(self.uid), str(self.gid)]
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()

    def text(self) -> str:
        """Content as text for diffs (undecodable bytes shown as escapes)."""
        return "" if self.data is None else self.data.decode("utf-8", errors="backslashreplace")

    def describe(self) -> str:
        if self.kind == "absent":
            return "absent"
        if self.kind == "symlink":
            return f"symlink -> {self.target}"
        if self.kind == "file":
            return f"file ({len(self.data or b'')} bytes, mode {self.mode:04o})"
        if self.kind == "dir":
            return "directory"
        return "special file"

    def to_dict(self) -> dict:
        out: dict = {"kind": self.kind}
        if self.kind == "symlink":
            out["target"] = self.target
        if self.kind == "file":
            out.update(sha256=self.sha256, size=len(self.data or b""))
            if self.links > 1:
                out["links"] = self.links
        if self.kind in ("file", "dir"):
            out.update(mode=f"{self.mode:04o}", uid=self.uid, gid=self.gid)
        return out


ABSENT = PathState("absent")


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
    """A regular file of a root, never more than `limit` bytes (facts/reading.py); a FIFO, a device or a
    larger file is a Conflict naming it (with `tail`, a larger file gives its last `limit` bytes)."""
    try:
        return read_file(real, follow=follow, limit=limit, tail=tail)
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


def list_dir(root: str, path: str) -> list[str]:
    """Names in a directory inside the root, sorted; empty when it is absent or not a directory."""
    real = host_path(root, path)
    if os.path.islink(real) or not os.path.isdir(real):
        return []
    return sorted(os.listdir(real))
