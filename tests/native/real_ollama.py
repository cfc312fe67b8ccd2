"""Run a REAL `ollama serve` (VGPU_FIX_REAL_OLLAMA) on a test root and read what its discovery decided."""

# The binary runs exactly as verify runs a root's programs (fixer.probe.placement, "isolated"): the root's
# folders bound at their real paths in new mount, PID and network namespaces (loopback only), every
# mount read-only, as `nobody`. What `ollama serve` itself needs to start there: a HOME holding
# .ollama/id_ed25519 (v0.32.15 cmd/cmd.go:2039-2043 only stats it) and a models folder it need not prune.

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Mapping

from fixer.probe import placement as sandbox

VARIABLE = "VGPU_FIX_REAL_OLLAMA"
# v0.32.15 discover/types.go:32-45 (a GPU) and :50-62 (the CPU), as slog's text handler writes them.
COMPUTE = re.compile(r'msg="inference compute"(?P<rest>.*)$', re.MULTILINE)
FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


@dataclass
class RealVerdict:
    """The "inference compute" lines of one `ollama serve` start: one per device it kept, or the CPU."""

    computes: list[dict[str, str]]
    log: str
    seconds: float

    @property
    def library(self) -> str:
        """CUDA when any CUDA device survived discovery, else what the first line names (cpu, Vulkan)."""
        libraries = [c.get("library", "") for c in self.computes]
        return "CUDA" if "CUDA" in libraries else (libraries[0] if libraries else "none")

    @property
    def libdirs(self) -> str:
        return next((c.get("libdirs", "") for c in self.computes if c.get("library") == "CUDA"), "")


def compute_lines(log: str) -> list[dict[str, str]]:
    return [{k: v.strip('"') for k, v in FIELD.findall(m.group("rest"))} for m in COMPUTE.finditer(log)]


def serve(root: Path, binary: str, ollama_lib: str, env: Mapping[str, str], timeout: float = 150.0) -> RealVerdict:
    """Start `binary serve` (the real ollama, placed at `binary` inside `root`) with the unit's `env`, wait
    until it logs its "inference compute" lines, stop it."""
    home = tempfile.mkdtemp(prefix="vgpu-fix-real-ollama-")
    try:
        os.chmod(home, 0o755)
        os.makedirs(f"{home}/.ollama")
        Path(f"{home}/.ollama/id_ed25519").write_text("")
        for folder in ("models/blobs", "models/manifests"):  # server/routes.go: made at start-up
            os.makedirs(f"{home}/{folder}")
        run_env = {"PATH": sandbox.DEFAULT_PATH, **env, "HOME": home, "OLLAMA_HOST": "127.0.0.1:11434",
                   "OLLAMA_MODELS": f"{home}/models", "OLLAMA_NOPRUNE": "1", "OLLAMA_DEBUG": "1",
                   "OLLAMA_NO_CLOUD": "1"}
        placement = sandbox.place(str(root), run_env, SimpleNamespace(ollama_lib=ollama_lib), files=(binary,))
        account, _ = sandbox.account_for(placement, None)
        with tempfile.TemporaryFile("w+", errors="replace") as log:
            launched = sandbox.start(placement, [binary, "serve"], placement.env(run_env), user=account,
                                     executable=binary, stdout=log, stderr=subprocess.STDOUT)
            try:
                _until_computed(launched, log, timeout)
            finally:
                sandbox.stop(launched)
                sandbox.cleanup(launched)
            log.seek(0)
            text = log.read()
        return RealVerdict(compute_lines(text), text, time.monotonic() - launched.started)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _until_computed(launched, log, timeout: float) -> None:
    """Wait until "inference compute" lines have appeared (LogDetails writes them in one loop, so a short
    pause collects them all), the process exited, or `timeout` passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and launched.process.poll() is None:
        log.seek(0)
        if COMPUTE.search(log.read()):
            time.sleep(1.0)
            return
        time.sleep(0.2)
