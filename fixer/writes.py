"""Atomic, symlink-safe writes inside a root: files, symlinks, removals, directories."""

from __future__ import annotations

import os
import stat

from fixer import crashpoints
from fixer.errors import Conflict
from fixer.rootfs import host_path, parent_problem


def _guard(root: str, path: str) -> str:
    problem = parent_problem(root, path)
    if problem:
        raise Conflict(f"{path}: {problem}")
    return host_path(root, path)


def fsync_dir(real_dir: str) -> None:
    fd = os.open(real_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_name(real: str) -> str:
    return os.path.join(os.path.dirname(real), f".{os.path.basename(real)}.vgpu-fix-{os.getpid()}.tmp")


def write_file(root: str, path: str, data: bytes, mode: int, uid: int | None = None, gid: int | None = None) -> None:
    """Write via a temp file in the same directory, fsync it, rename over `path`, fsync the directory."""
    real = _guard(root, path)
    current = os.lstat(real) if os.path.lexists(real) else None
    if current is not None and stat.S_ISDIR(current.st_mode):
        raise Conflict(f"{path}: is a directory")
    tmp = _temp_name(real)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if uid is not None and os.geteuid() == 0:
                os.fchown(fd, uid, gid if gid is not None else -1)
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        crashpoints.hit("write:tempfile")
        os.rename(tmp, real)
    except BaseException:
        _discard(tmp)
        raise
    fsync_dir(os.path.dirname(real))


def write_symlink(root: str, path: str, target: str) -> None:
    real = _guard(root, path)
    if os.path.isdir(real) and not os.path.islink(real):
        raise Conflict(f"{path}: is a directory")
    tmp = _temp_name(real)
    try:
        os.symlink(target, tmp)
        crashpoints.hit("write:tempfile")
        os.rename(tmp, real)
    except BaseException:
        _discard(tmp)
        raise
    fsync_dir(os.path.dirname(real))


def remove(root: str, path: str) -> None:
    """Remove a file, symlink (never its target) or empty directory; absent is fine."""
    real = _guard(root, path)
    try:
        st = os.lstat(real)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        os.rmdir(real)
    else:
        os.unlink(real)
    fsync_dir(os.path.dirname(real))


def make_dir(root: str, path: str, mode: int = 0o755) -> None:
    real = _guard(root, path)
    try:
        os.mkdir(real, mode)
    except FileExistsError:
        if not os.path.isdir(real) or os.path.islink(real):
            raise Conflict(f"{path}: exists and is not a directory") from None
        return
    fsync_dir(os.path.dirname(real))


def _discard(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
