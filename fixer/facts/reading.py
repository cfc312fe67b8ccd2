"""Bounded, type-checked reads: a FIFO or a device is never a file, and nothing is read past its cap."""

# Every file vgpu-fix reads goes through here. A file of a root (untrusted data) must be a regular file:
# it is opened with O_NONBLOCK, so a FIFO never blocks the open, and refused after fstat unless regular.
# A file the operator names (--log, --profile FILE, --plan FILE) may also be a pipe (`<(journalctl …)`),
# read up to the same cap; a character or block device, a socket or a directory is refused by name.

from __future__ import annotations

import errno
import os
import stat

MAX_READ = 16 * 1024 * 1024  # the cap of every host file (unit files, logs, saved plans, journal records)
MAX_BINARY = 1024 * 1024 * 1024  # the cap of a program read whole (the `ollama` binary's embedded version)


class Refused(OSError):
    """A path vgpu-fix will not read: not a regular file, or larger than its cap. `strerror` says why."""

    def __init__(self, path: str, why: str):
        super().__init__(errno.EINVAL, why, path)


def kind_of(mode: int) -> str:
    """What a file of this st_mode is, as a noun phrase for messages."""
    for test, name in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symlink"),
                       (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a special file"


def _size(limit: int) -> str:
    return f"{limit // (1 << 20)} MiB" if limit >= 1 << 20 else f"{limit} bytes"


def open_typed(path: str, flags: int, mode: int = 0o600, *, pipes: bool = False, verb: str = "read") -> int:
    """A descriptor of the regular file at `path` (or, with `pipes`, of a pipe), opened with `flags`;
    anything else is Refused, naming what it is. The one opener of files vgpu-fix reads, and of the
    state files it writes.

    A device is refused before it is opened (opening some, a watchdog or a tape, acts); the open adds
    O_NONBLOCK, so a FIFO swapped in after that check cannot block it, and fstat catches the swap."""
    follow = not flags & os.O_NOFOLLOW
    try:
        before = os.stat(path, follow_symlinks=follow).st_mode
    except (FileNotFoundError, NotADirectoryError):
        before = None  # absent: the open below says so, or creates it
    if before is not None:
        _check_kind(path, before, pipes, verb)
    # The operator's own FIFO waits for its writer in the open (SIGINT and SIGTERM end that wait); a
    # root's FIFO is refused above, and a swap to one after the check cannot block (O_NONBLOCK).
    waits = pipes and before is not None and stat.S_ISFIFO(before)
    try:
        fd = os.open(path, flags | os.O_CLOEXEC | (0 if waits else os.O_NONBLOCK), mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP and flags & os.O_NOFOLLOW:
            raise Refused(path, f"is a symlink; vgpu-fix does not {verb} through it") from None
        if exc.errno in (errno.ENXIO, errno.ENODEV, errno.EISDIR):  # a FIFO without a reader, a socket, ...
            try:
                found = kind_of(os.lstat(path).st_mode)
            except OSError:
                raise exc from None
            raise Refused(path, f"is {found}, not a regular file; vgpu-fix does not {verb} it") from None
        raise
    try:
        found = os.fstat(fd).st_mode
        _check_kind(path, found, pipes, verb)
        if stat.S_ISFIFO(found):
            os.set_blocking(fd, True)  # the operator's own pipe: read as it comes (SIGINT still stops it)
        return fd
    except BaseException:
        os.close(fd)
        raise


def _check_kind(path: str, mode: int, pipes: bool, verb: str) -> None:
    """Refused unless `mode` is a regular file's (or, with `pipes`, a FIFO's)."""
    if stat.S_ISREG(mode) or pipes and stat.S_ISFIFO(mode):
        return
    if stat.S_ISLNK(mode):
        raise Refused(path, f"is a symlink; vgpu-fix does not {verb} through it")
    allowed = "a regular file or a pipe" if pipes else "a regular file"
    raise Refused(path, f"is {kind_of(mode)}, not {allowed}; vgpu-fix does not {verb} it")


def open_regular(path: str, *, follow: bool = True, pipes: bool = False) -> int:
    """A read-only descriptor of the regular file (or, with `pipes`, the pipe) at `path`; see open_typed."""
    return open_typed(path, os.O_RDONLY | (0 if follow else os.O_NOFOLLOW), pipes=pipes)


def read_fd(fd: int, path: str, limit: int, *, tail: bool = False) -> bytes:
    """At most `limit` bytes of an open descriptor; more is Refused (with `tail`, a regular file gives
    its last `limit` bytes instead)."""
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode) and st.st_size > limit:
        if not tail:
            raise Refused(path, f"larger than {limit} bytes; vgpu-fix reads files up to {_size(limit)} only")
        os.lseek(fd, st.st_size - limit, os.SEEK_SET)
    chunks, size = [], 0
    while size <= limit and (chunk := os.read(fd, min(1 << 20, limit + 1 - size))):
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise Refused(path, f"larger than {limit} bytes; vgpu-fix reads files up to {_size(limit)} only")
    return b"".join(chunks)


def read_file(path: str, *, limit: int = MAX_READ, follow: bool = True, tail: bool = False,
              pipes: bool = False) -> bytes:
    """The bytes of the regular file at `path` (never more than `limit`); see open_regular and read_fd."""
    fd = open_regular(path, follow=follow, pipes=pipes)
    try:
        return read_fd(fd, path, limit, tail=tail)
    finally:
        os.close(fd)


def read_small(path: str, limit: int = 4096) -> str:
    """A short text file of the root or of /sys and /proc (version files, PCI ids): its first `limit`
    bytes as text, or "" when it is missing, unreadable or not a regular file."""
    try:
        fd = open_regular(path)
    except OSError:
        return ""
    try:
        return os.read(fd, limit).decode("ascii", errors="replace").strip()
    except OSError:
        return ""
    finally:
        os.close(fd)


def read_stdin(label: str, limit: int) -> bytes:
    """What the operator piped in, at most `limit` bytes (`--profile - </dev/zero` stops at the cap)."""
    return read_fd(0, label, limit)
