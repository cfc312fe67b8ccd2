"""Atomic, symlink-safe writes inside a root: files, symlinks, removals, directories.

Every operation opens the parent directory component by component from the root with
O_NOFOLLOW|O_DIRECTORY and then works relative to that directory descriptor, so a symlink planted
at any parent (even between the check and the write) is refused instead of followed, and the final
component is never followed either (O_NOFOLLOW, rename/unlink/rmdir act on the link itself).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat

from fixer.apply import crashpoints
from fixer.errors import Conflict
from fixer.facts.paths import NAME_MAX, host_path, parent_problem

TEMP_MARK = ".vgpu-fix-"  # temp files are named `.NAME.vgpu-fix-PID-TOKEN.tmp` beside NAME


def _guard(root: str, path: str) -> str:
    problem = parent_problem(root, path)
    if problem:
        raise Conflict(f"{path}: {problem}")
    return host_path(root, path)


def _open_dir(root: str, directory: str) -> int:
    """A descriptor of `directory` (absolute, inside root) reached without following any symlink."""
    fd = os.open(root if root else "/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    walked = ""
    try:
        for part in [p for p in directory.split("/") if p]:
            walked += "/" + part
            try:
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise Conflict(f"{walked}: is a symlink or not a directory; "
                                   "vgpu-fix never writes through symlinks") from None
                raise
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def _parent(root: str, path: str) -> tuple[int, str]:
    _guard(root, path)
    name = os.path.basename(path)
    if not name or name in (".", ".."):
        raise Conflict(f"{path}: not a path vgpu-fix can write")
    return _open_dir(root, os.path.dirname(path)), name


def _lstat_at(dfd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def fsync_dir(real_dir: str) -> None:
    fd = os.open(real_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# `TEMP_MARK PID-TOKEN.tmp`: a pid has at most 7 digits (pid_max is at most 2**22), the token 8.
TEMP_TAIL = len(TEMP_MARK) + 7 + 1 + 8 + len(".tmp")


def _temp_prefix(name: str) -> str:
    """`.NAME` before the temp mark; a NAME too long for the temp name to fit NAME_MAX (255 bytes) is
    cut and given a digest of the whole, so every name that can exist has a temp name that can too."""
    whole = f".{name}"
    if len(whole.encode("utf-8", "surrogateescape")) + TEMP_TAIL <= NAME_MAX:
        return whole
    import hashlib

    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    room = NAME_MAX - TEMP_TAIL - 1 - len(digest) - 1
    cut = name.encode("utf-8", "surrogateescape")[:room].decode("utf-8", "ignore")
    return f".{cut}~{digest}"


def _temp_name(name: str) -> str:
    return f"{_temp_prefix(name)}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}.tmp"


def temp_prefix_of(entry: str) -> str | None:
    """The `.NAME` part (as _temp_prefix made it) of a temp file `entry`, or None for any other entry."""
    if not (entry.startswith(".") and entry.endswith(".tmp")):
        return None
    cut = entry.rfind(TEMP_MARK)
    return entry[:cut] if cut > 1 else None


def _settle(dfd: int, path: str, dirty: set[str] | None) -> None:
    """Make a changed directory entry durable now, or note its directory for one `sync_dirs` later."""
    if dirty is None:
        os.fsync(dfd)
    else:
        dirty.add(os.path.dirname(path))


def sync_dirs(root: str, dirty: set[str]) -> None:
    """fsync each directory a batch of writes changed, once (deepest first); a directory since removed
    (a restore deleting a parent it had created) needs none."""
    for directory in sorted(dirty, key=lambda d: (-d.count("/"), d)):
        try:
            fd = _open_dir(root, directory)
        except (FileNotFoundError, NotADirectoryError, Conflict):
            continue
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    dirty.clear()


def write_file(root: str, path: str, data: bytes, mode: int, uid: int | None = None, gid: int | None = None,
               dirty: set[str] | None = None) -> None:
    """Write via a temp file in the same directory, fsync it, rename over `path`, fsync the directory
    (or, given `dirty`, note it there for `sync_dirs`)."""

    def make(dfd: int, tmp: str) -> None:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if uid is not None and os.geteuid() == 0:
                os.fchown(fd, uid, gid if gid is not None else -1)
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)

    _replace(root, path, make, dirty)


def write_symlink(root: str, path: str, target: str, dirty: set[str] | None = None) -> None:
    """Create a fresh link under a temp name and rename it over `path`; never touches a target."""
    _replace(root, path, lambda dfd, tmp: os.symlink(target, tmp, dir_fd=dfd), dirty)


def _replace(root: str, path: str, make, dirty: set[str] | None) -> None:
    """Build the new entry with `make(dir_fd, temp_name)`, then rename it over `path` atomically."""
    dfd, name = _parent(root, path)
    try:
        current = _lstat_at(dfd, name)
        if current is not None and stat.S_ISDIR(current.st_mode):
            raise Conflict(f"{path}: is a directory")
        tmp = _temp_name(name)
        try:
            make(dfd, tmp)
            crashpoints.hit("write:tempfile")
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except OSError as exc:  # named by the managed path: the temp name is ours, not the operator's
            _discard(dfd, tmp)
            raise OSError(exc.errno, exc.strerror, path) from None
        except BaseException:
            _discard(dfd, tmp)
            raise
        crashpoints.hit("write:renamed")
        _settle(dfd, path, dirty)
    finally:
        os.close(dfd)


@contextlib.contextmanager
def _named(path: str):
    """An OSError inside names `path` (the managed path), not the bare name used beside a dir_fd."""
    try:
        yield
    except OSError as exc:
        if exc.filename == path:
            raise
        raise OSError(exc.errno, exc.strerror, path) from None


def remove(root: str, path: str, dirty: set[str] | None = None) -> None:
    """Remove a file, symlink (never its target) or empty directory; absent is fine."""
    try:
        dfd, name = _parent(root, path)
    except FileNotFoundError:  # a missing parent: nothing to remove
        return
    with _named(path):
        _remove_at(dfd, name, path, dirty)


def _remove_at(dfd: int, name: str, path: str, dirty: set[str] | None) -> None:
    try:
        st = _lstat_at(dfd, name)
        if st is None:
            return
        if stat.S_ISDIR(st.st_mode):
            os.rmdir(name, dir_fd=dfd)
        else:
            os.unlink(name, dir_fd=dfd)
        crashpoints.hit("remove:done")
        _settle(dfd, path, dirty)
    finally:
        os.close(dfd)


def make_dir(root: str, path: str, mode: int = 0o755, dirty: set[str] | None = None) -> None:
    """Create one directory with exactly `mode` (whatever the umask); an existing directory is fine."""
    dfd, name = _parent(root, path)
    with _named(path):
        _make_dir_at(dfd, name, path, mode, dirty)


def _make_dir_at(dfd: int, name: str, path: str, mode: int, dirty: set[str] | None) -> None:
    try:
        try:
            os.mkdir(name, mode, dir_fd=dfd)
        except FileExistsError:
            st = _lstat_at(dfd, name)
            if st is None or not stat.S_ISDIR(st.st_mode):
                raise Conflict(f"{path}: exists and is not a directory") from None
            return
        set_dir_mode(dfd, name, mode)
        crashpoints.hit("mkdir:done")
        _settle(dfd, path, dirty)
    finally:
        os.close(dfd)


def set_dir_mode(dfd: int, name: str, mode: int) -> None:
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def chmod_dir(root: str, path: str, mode: int) -> None:
    """Set a directory's mode without following a symlink at or above it."""
    dfd, name = _parent(root, path)
    try:
        with _named(path):
            set_dir_mode(dfd, name, mode)
    finally:
        os.close(dfd)


def discard_temps(root: str, paths: list[str]) -> list[str]:
    """Remove temp files an interrupted run left beside any of `paths`; returns the absolute paths removed.

    Each directory is listed once, however many of `paths` it holds (a generation of 10,000 links in one
    directory must not list it 10,000 times)."""
    by_dir: dict[str, set[str]] = {}
    for path in paths:
        by_dir.setdefault(os.path.dirname(path), set()).add(_temp_prefix(os.path.basename(path)))
    removed = []
    for directory, prefixes in by_dir.items():
        if parent_problem(root, directory + "/x") is not None or not os.path.isdir(host_path(root, directory)):
            continue
        try:
            dfd = _open_dir(root, directory)
        except (Conflict, OSError):
            continue
        try:
            found = [entry for entry in os.listdir(dfd) if temp_prefix_of(entry) in prefixes]
            for entry in found:
                _discard(dfd, entry)
                removed.append(os.path.join(directory, entry))
            if found:
                os.fsync(dfd)
        finally:
            os.close(dfd)
    return removed


def _discard(dfd: int, tmp: str) -> None:
    """Remove a temp file, best effort: where it could not be made (a read-only or full filesystem) the
    unlink fails too, and that must not replace the error that says why; a temp left over is removed by
    the next run (discard_temps)."""
    try:
        os.unlink(tmp, dir_fd=dfd)
    except OSError:
        pass
