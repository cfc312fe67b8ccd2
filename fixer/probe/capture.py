"""Bounded reading of a probed program's output: its first and last bytes kept, the rest counted, a marker watched."""

from __future__ import annotations

import json
import os
import threading

HEAD = 1 << 20  # what a root's program may print before vgpu-fix stops keeping it (1 MiB)...
TAIL = 256 << 10  # ...and how much of its end is kept after that (the last lines tell how it ended)


class Capture:
    """Drain one pipe on a thread so the child never blocks, whatever it prints; memory stays under
    HEAD + TAIL. `seen` is set once `marker` has appeared anywhere in the stream, kept or not."""

    def __init__(self, stream, marker: str | None = None, head: int = HEAD, tail: int = TAIL):
        self.marker = marker.encode() if marker else None
        self.seen = threading.Event()
        self.head, self.tail = bytearray(), bytearray()
        self.total = 0
        self._limits = (head, tail)
        self._thread = threading.Thread(target=self._drain, args=(stream,), daemon=True)
        self._thread.start()

    def _drain(self, stream) -> None:
        head, tail = self._limits
        fd, carry = stream.fileno(), b""
        try:
            while chunk := os.read(fd, 1 << 16):
                self.total += len(chunk)
                if self.marker and not self.seen.is_set():
                    window = carry + chunk
                    if self.marker in window:
                        self.seen.set()
                    carry = window[-(len(self.marker) - 1):] if len(self.marker) > 1 else b""
                room = head - len(self.head)
                self.head += chunk[:room]
                if len(chunk) > room:
                    self.tail += chunk[room:]
                    del self.tail[:-tail]
        except OSError:
            pass
        finally:
            stream.close()

    def join(self, timeout: float = 5.0) -> None:
        """Wait for the end of the stream (a process that escaped its group may hold it open: give up then)."""
        self._thread.join(timeout)

    @property
    def dropped(self) -> int:
        return self.total - len(self.head) - len(self.tail)

    @property
    def text(self) -> str:
        """What was kept, as text; a gap names how many bytes were not kept."""
        head = self.head.decode("utf-8", errors="replace")
        if not self.tail:
            return head
        gap = f"\n[vgpu-fix: {self.dropped} bytes of output not kept]\n" if self.dropped else ""
        return head + gap + self.tail.decode("utf-8", errors="replace")


def json_objects(text: str) -> list[dict]:
    """The lines of `text` that are JSON objects, in order; any other line (a list, a number, noise) is skipped."""
    out = []
    for line in text.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            out.append(value)
    return out
