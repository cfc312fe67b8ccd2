"""The exclusive run lock: one vgpu-fix run changes a root at a time; the kernel frees it on death."""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass, field

from fixer.errors import LockHeld


@dataclass
class RunLock:
    """Held while a run may change the root; `stale_holder` names a dead previous holder."""

    path: str
    timeout: float = 0.0
    fd: int | None = None
    stale_holder: dict | None = field(default=None)

    def __enter__(self) -> "RunLock":
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = self._holder()
                    os.close(self.fd)
                    self.fd = None
                    raise LockHeld(_held_message(holder), payload={"holder": holder}) from None
                time.sleep(0.05)
        previous = self._holder()
        if previous and not _alive(previous.get("pid")):
            self.stale_holder = previous
        record = {"pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, json.dumps(record).encode(), 0)
        return self

    def _holder(self) -> dict | None:
        try:
            raw = os.pread(self.fd, 4096, 0)
            return json.loads(raw) if raw else None
        except (OSError, ValueError):
            return None

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def _held_message(holder: dict | None) -> str:
    if not holder:
        return "another vgpu-fix run holds the lock"
    return f"another vgpu-fix run holds the lock: pid {holder.get('pid')}, started {holder.get('started')}"


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
