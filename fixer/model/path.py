"""What is at a path (PathState) and the kernel's rules for a path (check_path): pure data, no I/O."""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["absent", "file", "symlink", "dir", "other"]


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
