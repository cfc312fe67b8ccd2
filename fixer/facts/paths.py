"""Paths inside a root: the exact state of one path, and the rule that no parent may be a symlink."""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from typing import Literal

from fixer.errors import Conflict

Kind = Literal["absent", "file", "symlink", "dir", "other"]
MAX_READ = 16 * 1024 * 1024
from fixer.model.owned import STATE_DIR  # noqa: E402,F401  (re-exported: the journal's home)


def host_path(root: str, path: str) -> str:
    """The real location of absolute `path` inside `root` (the one helper that joins a path onto a root)."""
    if not root:
        raise ValueError("an empty root names no directory")
    return path if root == "/" else root.rstrip("/") + "/" + path.lstrip("/")


@dataclass(frozen=True)
class PathState:
    """What is at a path, read without following a final symlink."""

    kind: Kind
    target: str | None = None
    data: bytes | None = None
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None

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
        if self.kind in ("file", "dir"):
            out.update(mode=f"{self.mode:04o}", uid=self.uid, gid=self.gid)
        return out


ABSENT = PathState("absent")


def read_state(root: str, path: str) -> PathState:
    real = host_path(root, path)
    try:
        st = os.lstat(real)
    except FileNotFoundError:
        return ABSENT
    except NotADirectoryError:
        return ABSENT
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISLNK(st.st_mode):
        return PathState("symlink", target=os.readlink(real))
    if stat.S_ISDIR(st.st_mode):
        return PathState("dir", mode=mode, uid=st.st_uid, gid=st.st_gid)
    if stat.S_ISREG(st.st_mode):
        return PathState("file", data=_read_nofollow(real), mode=mode, uid=st.st_uid, gid=st.st_gid)
    return PathState("other", mode=mode, uid=st.st_uid, gid=st.st_gid)


def _read_nofollow(real: str) -> bytes:
    fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        chunks, size = [], 0
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_READ:
                raise Conflict(f"{real}: larger than {MAX_READ} bytes; vgpu-fix manages small files only")
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
