"""Run vgpu-fix on a real pseudo-terminal (Python's pty): what an operator at a terminal sees and answers."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class Session:
    returncode: int
    terminal: str  # everything written to the pty (stdin's echo, the prompt, stderr and, if on the pty, stdout)
    piped: str  # what went to the streams that were pipes (stdout and/or stderr), else ""


def run(args: list[str], answers: dict[str, str] | None = None, stdin_tty: bool = True, stdout_tty: bool = True,
        stderr_tty: bool = True, env: dict | None = None, timeout: float = 120, stdin_data: bytes | None = None) -> Session:
    """`python -m fixer ARGS` with the chosen streams on a pty; each time the terminal output ends with a
    key of `answers` (a prompt), its value is typed."""
    master, slave = pty.openpty()
    os.set_blocking(master, False)
    pipe = subprocess.PIPE
    proc = subprocess.Popen(
        [sys.executable, "-m", "fixer", *args], cwd=REPO,
        stdin=slave if stdin_tty else (pipe if stdin_data is not None else subprocess.DEVNULL),
        stdout=slave if stdout_tty else pipe, stderr=slave if stderr_tty else pipe,
        env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", **(env or {})}, start_new_session=True)
    os.close(slave)
    collected: list[bytes] = []
    readers = [threading.Thread(target=lambda s=s: collected.append(s.read())) for s in (proc.stdout, proc.stderr) if s]
    for reader in readers:
        reader.start()
    if stdin_data is not None and not stdin_tty:
        proc.stdin.write(stdin_data)
        proc.stdin.close()
    seen, pending = b"", dict(answers or {})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the pty
                chunk = b""
            if not chunk:
                if proc.poll() is not None:
                    break
                time.sleep(0.05)
                continue
            seen += chunk
            text = seen.decode(errors="replace")
            for prompt in list(pending):
                if text.rstrip().endswith(prompt.rstrip()):
                    os.write(master, (pending.pop(prompt) + "\n").encode())
        elif proc.poll() is not None:
            break
    else:
        proc.kill()
        raise AssertionError(f"vgpu-fix {' '.join(args)} did not finish in {timeout} s; terminal so far:\n{seen!r}")
    proc.wait()
    for reader in readers:
        reader.join()
    os.close(master)
    return Session(proc.returncode, seen.decode(errors="replace").replace("\r\n", "\n"),
                   b"".join(collected).decode(errors="replace"))
