"""Load the backend for real in a fresh process with the runner's environment; report what happened."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Mapping

from fixer.ollama import runner_engine
from fixer.ollama.layout import GGML_BASE, ggml_base_name
from fixer.probe import placement as sandbox
from fixer.probe.capture import json_objects

CUDA_ERRORS = {35: "insufficient driver", 100: "no CUDA-capable device", 3: "initialization error",
               34: "CUDA driver is a stub library", 999: "unknown error"}


@dataclass
class LoadProbeResult:
    ok: bool
    mode: str
    ran_for_real: list[str]
    not_honoured: list[str]
    backend: str
    env: dict[str, str]
    user: str | None = None
    base: str = GGML_BASE  # the libggml-base name the backend NEEDs (.so.0 since Ollama v0.13.2)
    base_loaded: bool = False
    backend_loaded: bool = False
    dlerror: str | None = None
    dlopen_provider: str | None = None
    score: int | None = None  # ggml_backend_score(), where the backend exports it; 0 = ggml skips it
    api_version: int | None = None  # ggml_backend_reg.api_version (ggml's loader compares it)
    registry: str | None = None
    devices: list[dict] = field(default_factory=list)
    cuda: dict | None = None
    loaded_objects: list[str] = field(default_factory=list)
    last_step: str | None = None
    returncode: int | None = None
    signal: str | None = None
    timed_out: bool = False
    duration: float = 0.0
    stderr: str = ""
    cause: str | None = None
    fix: str | None = None
    events: list[dict] = field(default_factory=list)
    transient: dict | None = None  # systemd mode: manager scope, properties carried, not carried, result

    @property
    def device_count(self) -> int:
        return len(self.devices)

    @property
    def evidence(self) -> list[str]:
        lines = [f"probe ran in {self.mode} mode" + (f" as {self.user}" if self.user else "")]
        if self.transient:
            lines += self.ran_for_real[:1]
        lines += [f"not honoured: {n}" for n in self.not_honoured]
        if self.dlopen_provider and "libc.so" not in self.dlopen_provider:
            lines.append(f"dlopen resolves to {self.dlopen_provider} (interposed)")
        if not self.base_loaded:
            lines.append(f"{self.base} did not load" + (f": {self.dlerror}" if self.dlerror else ""))
        elif not self.backend_loaded and not self.timed_out and self.signal is None:
            lines.append(f"dlopen({self.backend}, RTLD_NOW|RTLD_LOCAL) failed: {self.dlerror or '(no dlerror text)'}")
        elif self.backend_loaded and self.score == 0:
            lines.append(f"{self.backend} loaded; ggml_backend_score() = 0, so ggml's loader skips it")
        elif self.backend_loaded:
            lines.append(f"{self.backend} loaded" + (f" (score {self.score})" if self.score is not None else "")
                         + (f", API version {self.api_version}" if self.api_version is not None else "")
                         + f"; registry {self.registry!r} reports {self.device_count} device(s)"
                         + "".join(f"; {d.get('name')}: {d.get('description')}" for d in self.devices))
        if self.cuda:
            lines.append(_cuda_line(self.cuda))
        if self.timed_out:
            lines.append(f"probe killed after {self.duration:.1f}s, hung in step {self.last_step!r}")
        if self.signal:
            lines.append(f"probe died of {self.signal} in step {self.last_step!r}")
        lines += [f"stderr: {line}" for line in self.stderr.splitlines()[-8:]]
        return lines

    def to_dict(self) -> dict:
        out = asdict(self)
        out.update(device_count=self.device_count, evidence=self.evidence)
        return out


def _cuda_line(cuda: dict) -> str:
    status = cuda.get("status")
    text = f"cudaGetDeviceCount -> {status}"
    if status:
        text += f" ({cuda.get('error') or CUDA_ERRORS.get(status, '?')})"
    text += f", {cuda.get('device_count', 0)} device(s); runtime {cuda.get('runtime')}"
    text += f"; libcuda.so.1 {'loaded from ' + cuda['libcuda'] if cuda.get('libcuda') else 'not loaded'}"
    if cuda.get("cudaDriverGetVersion"):
        text += f"; driver version {cuda['cudaDriverGetVersion']}"
    return text


def run_load_probe(root: str, env: Mapping[str, str], spec, user: str | None = None,
                   timeout: float | None = None, mode: str | None = None, unit=None,
                   child_env: Mapping[str, str] | None = None, process: str = "ollama") -> LoadProbeResult:
    """Probe `spec` (models.Verify) under `root` with the service's effective environment `env`.
    With `unit` (host.UnitState) on a live root whose manager runs, the probe is a transient unit of
    that manager with the unit's User= and sandbox; as root, a non-/ root is shown through a private
    mount namespace; `mode="translated"` forces the degraded path-translation mode (also the fallback
    when no namespace can be made). `child_env`: the probe's whole environment, when the generation's
    (fixer.ollama.llama_server.server_env) differs from the runner engine's (runner_engine.runner_env).
    `process`: the name of the Ollama process that loads the backend (see sandbox.start)."""
    timeout = timeout if timeout is not None else spec.timeout
    full_env = dict(child_env) if child_env is not None else runner_engine.runner_env(env, spec)
    placement = sandbox.place(root, full_env, spec, mode=mode, unit=unit)
    base = ggml_base_name(root, f"{spec.ollama_lib}/{spec.library}/{spec.backend}")
    result, error = _run(placement, full_env, spec, user, timeout, base, process)
    while result is None:
        placement = sandbox.fallback(placement, root, full_env, spec, why=str((error or {}).get("error")))
        result, error = _run(placement, full_env, spec, user, timeout, base, process)
    _classify(result, spec)
    return result


def _run(placement: sandbox.Placement, env: dict, spec, user: str | None,
         timeout: float, base: str = GGML_BASE, process: str = "ollama") -> tuple[LoadProbeResult | None, dict | None]:
    """(the result, None), or (None, the launch error) when `placement` could not start the probe."""
    account, note = sandbox.account_for(placement, user)
    backend = f"{spec.ollama_lib}/{spec.library}/{spec.backend}"
    config = {"base": base, "backend": placement.path(backend)}
    child_env = placement.env(env)
    launched = sandbox.start(placement, ["probe", json.dumps(config)], child_env, user=account, python_child=True,
                             process=process, limit=timeout)
    done = sandbox.finish(launched, timeout)
    error = done.launch_error
    if error is not None and placement.mode in ("systemd", "namespace", "user-namespace"):
        return None, error
    shown_user = user if account or placement.mode == "systemd" else None
    result = LoadProbeResult(False, placement.mode, placement.for_real, list(placement.not_honoured), backend,
                             child_env, shown_user, base=base, returncode=done.returncode,
                             signal=done.signal, timed_out=done.timed_out, duration=done.duration,
                             stderr=done.stderr[-4000:])
    if placement.transient:
        result.transient = {**placement.transient, **(done.transient or {})}
    if note:
        result.not_honoured.append(note)
    if error is not None:
        result.cause = f"the probe could not start: {error.get('step')}: {error.get('error')}"
        return result, None
    for event in json_objects(done.stdout):
        result.events.append(event)
        _apply(result, event)
    return result, None


def _apply(result: LoadProbeResult, event: dict) -> None:
    kind = event.get("event")
    if kind == "step":
        result.last_step = event["step"]
    elif kind == "start":
        result.dlopen_provider = event.get("dlopen_provider")
        result.loaded_objects = event.get("loaded", [])
    elif kind == "base":
        result.base_loaded = event["ok"]
        result.dlerror = event.get("dlerror")
    elif kind == "backend":
        result.backend_loaded = event["ok"]
        result.dlerror = event.get("dlerror")
    elif kind == "score":
        result.score = event.get("score")
    elif kind == "init":
        result.api_version = event.get("api_version")
    elif kind == "registry" and event.get("ok"):
        result.registry = event.get("name")
        result.devices = event.get("devices", [])
    elif kind == "cuda":
        result.cuda = event.get("report")
    elif kind == "done":
        result.loaded_objects = event.get("loaded", result.loaded_objects)
        result.last_step = "done"


def _classify(r: LoadProbeResult, spec) -> None:
    if r.cause:
        return
    need = spec.min_devices
    setup = sandbox.setup_failure(r.transient, r.returncode) if r.last_step is None else None
    if setup:
        r.cause = (f"systemd could not start the probe with the unit's settings (status {setup}): the service "
                   "meets the same settings" + _setup_hint(r))
        r.fix = "correct the unit's sandbox settings (`service.directives`) so that its process can start"
    elif r.timed_out:
        r.cause = (f"the probe hung in {r.last_step!r} and was killed after {r.duration:.0f}s: a shim that blocks "
                   "(e.g. in cuInit) or a host-side mediator that does not answer")
        r.fix = "check the vGPU mediator on the hypervisor and the shim's logs; nothing in the profile can fix a hang"
    elif r.signal or (r.returncode not in (0, None) and r.last_step != "done"):
        how = r.signal or f"exit status {r.returncode}"
        r.cause = f"the probe crashed ({how}) in {r.last_step!r}: a broken shim kills Ollama's runner the same way"
        r.fix = "use a shim build that survives initialisation; compare driver versions (cuda_v12 vs cuda_v13)"
    elif not r.base_loaded:
        r.cause = f"{r.base} (NEEDED by the backend) does not load: {r.dlerror}"
        r.fix = "check verify.ollama_lib and the Ollama installation"
    elif not r.backend_loaded:
        _classify_dlopen(r)
    elif r.score == 0:
        r.cause = ("the backend loaded but its ggml_backend_score() is 0: ggml's loader skips it as "
                   "\"not supported on this system\" without calling ggml_backend_init()")
        r.fix = ("use the backend build for this machine (a CPU variant whose instruction set this CPU has; "
                 "Ollama picks the best-scoring libggml-<name>-*.so) or point verify.backend at it")
    elif r.registry is None:
        r.cause = "ggml_backend_init() of the backend returned NULL or the registry could not be read"
        r.fix = "the backend could not initialise; see stderr"
    elif r.device_count < need:
        r.cause = f"the backend loaded but reports {r.device_count} device(s), fewer than verify.min_devices={need}"
        hijacked = _hijacked_driver_symbols(r.cuda or {})
        if hijacked:
            names = ", ".join(s for s, _ in hijacked)
            r.cause += (f"; the driver entry points {names} resolve to {hijacked[0][1]}, not to libcuda.so.1 "
                        f"({r.cuda.get('libcuda')}): for a symbol defined twice the first preload wins")
            r.fix = f"list {r.cuda.get('libcuda')} before {hijacked[0][1]} in `preload`"
        elif r.cuda and r.cuda.get("status"):
            status = r.cuda["status"]
            r.cause += f"; the CUDA runtime says {status} ({r.cuda.get('error') or CUDA_ERRORS.get(status, '?')})"
            if status == 35 and not r.cuda.get("libcuda"):
                r.cause += " and no libcuda.so.1 was loaded"
                r.fix = ("make libcuda.so.1 reachable (a `symlinks` entry to the driver shim in a `library_path` "
                         "directory); without a driver the runtime reports 35")
            elif status == 35:
                r.fix = "the driver (shim) is older than the runtime: pin `OLLAMA_LLM_LIBRARY=cuda_v12` or update it"
        r.fix = r.fix or ("check the shim's device visibility (para-virtual PCI device present, mediator running, "
                          "CUDA_VISIBLE_DEVICES)")
    else:
        r.ok = True


def _setup_hint(r: LoadProbeResult) -> str:
    carried = ", ".join((r.transient or {}).get("properties", [])) or "none"
    return f" (carried: {carried}; stderr: {r.stderr.strip()[-200:] or 'none'})"


def _hijacked_driver_symbols(cuda: dict) -> list[tuple[str, str]]:
    driver = cuda.get("libcuda")
    symbols = cuda.get("driver_symbols") or {}
    return [(s, p) for s, p in symbols.items() if driver and p and p != driver]


def _classify_dlopen(r: LoadProbeResult) -> None:
    text = r.dlerror or ""
    interposed = r.dlopen_provider and "libc.so" not in r.dlopen_provider
    if interposed and not text:
        r.cause = (f"dlopen is interposed by {r.dlopen_provider}, which refused the backend without a dlerror "
                   "(the failure Ollama swallows)")
        r.fix = f"remove {r.dlopen_provider} from `preload`; reach it as libcuda.so.1 through `library_path`"
        return
    missing = re.search(r"([^\s:]+): cannot open shared object file", text)
    symbol = re.search(r"undefined symbol: ([^\s,]+)", text)
    version = re.search(r"version `([^']+)' not found", text)
    if missing:
        r.cause = f"the backend does not load: {missing.group(1)} cannot be found ({text})"
        r.fix = (f"make {missing.group(1)} resolvable for the runner (a `symlinks` entry in a `library_path` "
                 "directory, or preload a shim whose SONAME is that name)")
    elif symbol:
        r.cause = f"the backend does not load: undefined symbol {symbol.group(1)} ({text})"
        r.fix = "a library that wins the search lacks this symbol: a stray copy shadowing Ollama's, or an incomplete shim"
    elif version:
        r.cause = f"the backend does not load: version {version.group(1)} not found ({text})"
        r.fix = "a library without the required symbol version wins the search; keep Ollama's bundled copy first"
    else:
        r.cause = f"the backend does not load: {text or 'dlopen returned NULL without an error text'}"
        r.fix = "see the dlerror text"
