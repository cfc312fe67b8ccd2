"""Ollama v0.13–v0.24 discovery: the runner's library path, and `ollama runner --ollama-engine` started as
`ollama serve` starts it, its GET /info device list read back."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from typing import Mapping

from fixer.facts import paths
from fixer.facts.linker import LoadRequest, Resolution, resolve_backend
from fixer.ollama import layout
from fixer.probe import placement as sandbox
from fixer.probe.capture import Capture

# Fields of Ollama's ml.DeviceInfo as the runner's /info encodes them (v0.13-v0.22).
DEVICE_FIELDS = ("id", "backend", "name", "description", "filter_id", "integration", "pci_id", "total_memory",
                 "free_memory", "ComputeMajor", "ComputeMinor", "driver_major", "driver_minor", "LibraryPath")
GPU_BACKENDS = ("CUDA",)
# v0.24.0 discover/runner.go:86 (each folder's first pass) and :124 (the second pass, shared).
PASS_BUDGET = 30.0


def load_request(root: str, spec) -> LoadRequest:
    """How the runner dlopens `spec`'s backend (spec: a model.profile.Verify)."""
    backend = f"{spec.ollama_lib}/{spec.library}/{spec.backend}"
    return LoadRequest(backend, tuple(layout.runner_library_path(spec.ollama_lib, spec.library, {})),
                       layout.ggml_base_name(root, backend), f"{spec.ollama_lib}/{spec.library}", spec.library)


def resolve(root: str, spec, env: Mapping[str, str], lookup=()) -> Resolution:
    """ld.so's view of the backend load in a runner started with the service's environment `env`."""
    request = load_request(root, spec)
    path = tuple(layout.runner_library_path(spec.ollama_lib, spec.library, env))
    return resolve_backend(root, LoadRequest(request.backend, path, request.base, request.bundled, request.label),
                           env, lookup)


def runner_env(env: Mapping[str, str], spec) -> dict[str, str]:
    """The environment `ollama serve` gives a runner for spec.library: the service's environment,
    LD_LIBRARY_PATH prefixed with Ollama's two dirs, OLLAMA_LIBRARY_PATH overwritten with them."""
    out = {"PATH": sandbox.DEFAULT_PATH, **env}
    out["LD_LIBRARY_PATH"] = ":".join(layout.runner_library_path(spec.ollama_lib, spec.library, env))
    out["OLLAMA_LIBRARY_PATH"] = f"{spec.ollama_lib}:{spec.ollama_lib}/{spec.library}"
    return out


@dataclass
class RunnerDevice:
    id: str
    backend: str
    name: str = ""
    description: str = ""
    compute: str = ""
    driver: str = ""
    total_memory: int = 0
    free_memory: int = 0
    library_path: list[str] = field(default_factory=list)

    @classmethod
    def from_info(cls, raw: dict) -> "RunnerDevice":
        return cls(str(raw.get("id", "")), str(raw.get("backend", raw.get("library", ""))), raw.get("name", ""),
                   raw.get("description", ""), f"{raw.get('ComputeMajor', -1)}.{raw.get('ComputeMinor', -1)}",
                   f"{raw.get('driver_major', 0)}.{raw.get('driver_minor', 0)}", int(raw.get("total_memory", 0)),
                   int(raw.get("free_memory", 0)), list(raw.get("LibraryPath") or []))


@dataclass
class RunnerPass:
    """One runner start: `extra` is what this pass adds to the environment."""

    extra: dict[str, str]
    ok: bool = False
    devices: list[RunnerDevice] = field(default_factory=list)
    status: int | None = None
    error: str | None = None
    exited: int | None = None
    signal: str | None = None
    duration: float = 0.0
    output: str = ""


@dataclass
class RunnerProbeResult:
    ok: bool
    skipped: bool
    binary: str
    mode: str
    ran_for_real: list[str] = field(default_factory=list)
    not_honoured: list[str] = field(default_factory=list)
    passes: list[RunnerPass] = field(default_factory=list)
    cause: str | None = None
    fix: str | None = None
    transient: dict | None = None  # systemd mode: manager scope, properties carried, not carried

    @property
    def devices(self) -> list[RunnerDevice]:
        return self.passes[0].devices if self.passes else []

    @property
    def evidence(self) -> list[str]:
        lines = [f"runner {self.binary} ran in {self.mode} mode"] + (self.ran_for_real[:1] if self.transient else [])
        lines += [f"not honoured: {n}" for n in self.not_honoured]
        for p in self.passes:
            label = " ".join(f"{k}={v}" for k, v in p.extra.items()) or "first pass"
            if p.error:
                lines.append(f"{label}: {p.error}")
            else:
                lines.append(f"{label}: GET /info -> {len(p.devices)} device(s)" + "".join(
                    f"; {d.id} {d.backend} {d.description} compute={d.compute} driver={d.driver}" for d in p.devices))
            lines += [f"  runner: {line}" for line in p.output.splitlines()[-5:]]
        return lines

    def to_dict(self) -> dict:
        out = asdict(self)
        out.update(evidence=self.evidence)
        return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


INFO_LIMIT = 1 << 20  # bytes of the runner's /info answer read (a device list is a few KiB)


def _poll(port: int, launched: sandbox.Launched, deadline: float) -> tuple[int | None, str | None, list | None]:
    """(HTTP status, error, device list) from GET /info, retrying until the runner answers or dies."""
    import http.client

    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=max(0.1, deadline - time.monotonic()))
            connection.sock = sandbox.connect(launched, port, max(0.1, deadline - time.monotonic()))
            try:
                connection.request("GET", "/info")
                response = connection.getresponse()
                body = response.read(INFO_LIMIT + 1)
            finally:
                connection.close()
            if len(body) > INFO_LIMIT:
                return response.status, f"runner error: its /info answer is larger than {INFO_LIMIT} bytes", None
            if response.status >= 400:
                return response.status, f"runner error: HTTP {response.status} {body[:300].decode(errors='replace')}", None
            return response.status, None, json.loads(body or b"null")
        except (OSError, ValueError, http.client.HTTPException):
            if launched.process.poll() is not None:
                return None, "runner crashed", None
            time.sleep(0.05)
    return None, "failed to finish discovery before timeout", None


def _run_pass(placement: sandbox.Placement, binary: str, env: dict, extra: dict, user, timeout: float,
              cwd: str) -> RunnerPass:
    port = _free_port()
    result = RunnerPass(extra)
    argv = [binary, "runner", "--ollama-engine", "--port", str(port)]
    launched = sandbox.start(placement, argv, {**env, **extra}, user=user, cwd=cwd,
                             executable=placement.path(binary), stderr=subprocess.STDOUT, limit=timeout + 10)
    log = Capture(launched.process.stdout)  # drained as it comes: a full pipe would block the runner
    try:
        result.status, result.error, raw = _poll(port, launched, time.monotonic() + timeout)
    finally:
        sandbox.stop(launched)
        sandbox.cleanup(launched)
    log.join()
    code, out, said = sandbox.outcome(launched, log.text)
    result.duration = time.monotonic() - launched.started
    result.output = out[-4000:]
    setup = sandbox.setup_failure(said, code)
    if said is not None and not said["started"]:
        result.error = f"the runner could not be started: systemd-run: {out.strip()[:300]}"
    elif setup and result.error == "runner crashed":
        result.error = f"systemd could not start the runner with the unit's settings (status {setup})"
    elif result.error == "runner crashed":
        result.exited = code
        if code is not None and code < 0:
            import signal

            result.signal = signal.Signals(-code).name
            result.error += f" ({result.signal})"
        elif code == sandbox.LAUNCH_FAILED:
            result.error = f"the runner could not be started: {out.strip()[:300]}"
        else:
            result.error += f" (exit status {code})"
    if isinstance(raw, list):
        result.devices = [RunnerDevice.from_info(d) for d in raw if isinstance(d, dict)]
    result.ok = any(d.backend in GPU_BACKENDS for d in result.devices)
    return result


def run_runner_probe(root: str, env: Mapping[str, str], spec, user: str | None = None,
                     timeout: float | None = None, second_pass: bool = True, unit=None) -> RunnerProbeResult:
    """Both discovery passes of `ollama serve` for spec.library: require a CUDA device, then require it
    to survive CUDA_VISIBLE_DEVICES=<id> GGML_CUDA_INIT=1. Skipped when the root has no ollama binary.
    With `unit` on a live root whose manager runs, the runner is a transient unit with its settings.
    Each pass gets Ollama's budget (PASS_BUDGET; the second pass shares one among every device), not the
    profile's verify.timeout; `timeout` only shortens it (tests)."""
    root = os.fspath(root)
    timeout = timeout if timeout is not None else PASS_BUDGET
    binary = spec.ollama_bin
    if not paths.is_executable(root, binary):
        return RunnerProbeResult(False, True, binary, "none", cause=f"{binary} not found in the root: runner probe skipped")
    full_env = sandbox.with_home(runner_env(env, spec))  # `ollama runner` inherits serve's HOME
    placement = sandbox.place(root, full_env, spec, files=(binary,), unit=unit)
    cwd = os.path.dirname(binary)
    while True:
        account, note = sandbox.account_for(placement, user)
        child_env = placement.env(full_env)
        first = _run_pass(placement, binary, child_env, {}, account, timeout, cwd)
        could_not_start = (first.error or "").startswith("the runner could not be started")
        if placement.mode not in ("systemd", "namespace", "user-namespace") or not could_not_start:
            break
        placement = sandbox.fallback(placement, root, full_env, spec, files=(binary,), why=first.error)
    result = RunnerProbeResult(False, False, binary, placement.mode, placement.for_real,
                               list(placement.not_honoured) + ([note] if note else []), transient=placement.transient)
    result.passes.append(first)
    gpus = [d for d in first.devices if d.backend in GPU_BACKENDS]
    if not gpus:
        result.cause = (f"the runner for {spec.library} reports no CUDA device"
                        + (f" ({first.error})" if first.error else
                           f" (devices: {', '.join(d.backend + ':' + d.id for d in first.devices) or 'none'})"))
        result.fix = "see the load probe: the backend does not load or finds no device in the runner's environment"
        return result
    if second_pass:
        deadline = time.monotonic() + timeout
        for device in gpus:
            extra = {"CUDA_VISIBLE_DEVICES": device.id, "GGML_CUDA_INIT": "1"}
            check = _run_pass(placement, binary, child_env, extra, account, max(deadline - time.monotonic(), 0.1), cwd)
            result.passes.append(check)
            if not check.ok:
                result.cause = (f"device {device.id} fails Ollama's second discovery pass (GGML_CUDA_INIT=1): "
                                f"{check.error or 'no CUDA device reported'}; Ollama filters it and falls back to CPU")
                result.fix = ("the shim does not survive deep CUDA initialisation; use a shim build that does, "
                              "and pin `OLLAMA_LLM_LIBRARY=cuda_v12` if it reports driver 13.0")
                return result
    result.ok = True
    return result
