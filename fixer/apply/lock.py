"""The exclusive run lock: one vgpu-fix run changes a root at a time; the kernel frees it on death."""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass, field

from fixer.errors import Conflict, LockHeld
from fixer.facts.reading import open_typed


@dataclass
class RunLock:
    """Held while a run may change the root; `stale_holder` names a dead previous holder."""

    path: str
    timeout: float = 0.0
    fd: int | None = None
    stale_holder: dict | None = field(default=None)

    def __enter__(self) -> "RunLock":
        try:
            self.fd = open_typed(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, verb="lock")
        except OSError as exc:
            raise Conflict(f"{self.path}: cannot open the run lock: {exc.strerror}; nothing was changed") from None
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = self._live_holder()
                    os.close(self.fd)
                    self.fd = None
                    raise LockHeld(held_message(holder), facts={"holder": holder}) from None
                time.sleep(0.05)
        previous = self._holder()
        if previous and not _alive(previous.get("pid"), previous.get("ticks")):
            self.stale_holder = previous
        record = {"pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "ticks": _start_ticks(os.getpid())}
        raw = json.dumps(record).encode()
        # Overwrite, then cut to length: a concurrent reader never sees an empty holder record.
        try:
            os.pwrite(self.fd, raw.ljust(4096 if previous else len(raw)), 0)
            os.ftruncate(self.fd, len(raw))
            os.fsync(self.fd)
        except OSError:  # a full disk: the flock alone excludes others; never leave a dead holder named
            os.ftruncate(self.fd, 0)
        return self

    def _live_holder(self) -> dict | None:
        """The holder's record; the winner writes it just after taking the lock, so wait briefly."""
        holder = self._holder()
        for _ in range(40):
            if holder and _alive(holder.get("pid"), holder.get("ticks")):
                break
            time.sleep(0.025)
            holder = self._holder()
        return holder

    def _holder(self) -> dict | None:
        try:
            raw = os.pread(self.fd, 8192, 0).rstrip(b" ")
            record = json.loads(raw) if raw else None
            return record if isinstance(record, dict) else None
        except (OSError, ValueError):
            return None

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def holder_of(path: str) -> dict | None:
    """The live run holding the lock at `path`, read without taking it (a reader never blocks a run)."""
    try:
        fd = open_typed(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        raw = os.pread(fd, 8192, 0).rstrip(b" ")
        record = json.loads(raw) if raw else None
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)
    if isinstance(record, dict) and _alive(record.get("pid"), record.get("ticks")) and record.get("pid") != os.getpid():
        return record
    return None


def held_message(holder: dict | None) -> str:
    if not holder:
        return "another vgpu-fix run holds the lock"
    return f"another vgpu-fix run holds the lock: pid {holder.get('pid')}, started {holder.get('started')}"


def _start_ticks(pid: int) -> int | None:
    """The process start time in clock ticks since boot (/proc/PID/stat field 22): pid + ticks is unique."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return int(fh.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: object, ticks: object = None) -> bool:
    """Whether the recorded holder still runs (a reused pid with another start time does not count)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if isinstance(ticks, int):
        current = _start_ticks(pid)
        return current is None or current == ticks
    return True
