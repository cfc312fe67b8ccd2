"""Ollama v0.30+ discovery: the bundled llama-server started as `ollama serve` starts it, its output parsed
and Ollama's filters applied in Ollama's order; the NVIDIA driver gate read through the service's NVML."""

# Every rule here follows Ollama's source; citations are `tag file:line` (see docs/troubleshooting.md
# "Supported Ollama releases"). v0.32.15 lines hold for v0.33.0-rc0..rc2 (same blobs).

from __future__ import annotations

import json
import os
import re
import signal
import time
from dataclasses import asdict, dataclass, field
from typing import Mapping

from fixer.facts import paths
from fixer.facts.linker import LoadRequest, Resolution, resolve_backend, resolve_in_root, split_path_list
from fixer.ollama import layout
from fixer.ollama.layout import find_llama_server  # noqa: F401  (part of this generation's contract)
from fixer.probe import placement as sandbox
from fixer.probe.capture import Capture, json_objects

# v0.32.15 discover/llama_server.go:178-180, :185-187, :192-194
DEVICE_LINE = re.compile(r"^\s+(.+?):\s+(.+?)\s+\((\d+)\s+MiB,\s+(\d+)\s+MiB\s+free\)")
CUDA_CC = re.compile(r"Device\s+(\d+):.*compute capability\s+(\d+)\.(\d+)")
CUDA_ARCHS = re.compile(r"CUDA\s*:\s*ARCHS\s*=\s*([\d,]+)")
# v0.32.15 discover/llama_server.go:196-200 (cudaRuntimeVersion from file and folder names)
CUDART_FILE = re.compile(r"^libcudart\.so\.(\d+)(?:\.(\d+))?")
CUDA_DIR = re.compile(r"^cuda_v(\d+)$")
# v0.32.15 llm/llama_server.go:524-559: the first sorted match that is not a base or CPU library
BACKEND_GLOBS = ("libggml-*.so*", "libggml-*.dylib", "libggml-*.dll", "ggml-*.dll")
NOT_BACKEND = ("libggml-base", "ggml-base", "libggml-cpu", "ggml-cpu")
# v0.32.15 discover/cuda_compat.go:10-19
COMPRESSED_FATBIN_MINOR, COMPRESSED_FATBIN_DRIVER = 4, 550
LEGACY_JIT_MINOR, LEGACY_JIT_DRIVER = 8, 570
GATE_SINCE = (0, 30, 11)  # the 550 rule; v0.30.0-v0.30.10 only the compute<7/570 rule
# One budget per folder for the start-up run, --list-devices and the native probe together (v0.32.15
# discover/runner.go:89,116, discover/llama_server.go:59,143,157); the native probe capped inside it
# (native_probe.go:23,79); the second pass: one budget shared by every device's check (runner.go:132).
FOLDER_BUDGET = 30.0
NATIVE_PROBE_CAP = 15.0
SECOND_PASS_BUDGET = 30.0
FILTERS = ("zero-memory", "compute-capability", "driver-gate", "integrated-gpu", "second-pass")


def backend_file(root: str, folder: str) -> str | None:
    """GGML_BACKEND_PATH for a GPU folder (v0.32.15 llm/llama_server.go:524-559)."""
    names = sorted({os.path.basename(p) for g in BACKEND_GLOBS for p in paths.matching(root, folder, g)})
    return next((f"{folder}/{n}" for n in names if not n.startswith(NOT_BACKEND)), None)


def library_path(server: str, gpu_dirs: list[str], ollama_lib: str, inherited: str | None) -> list[str]:
    """LD_LIBRARY_PATH of every llama-server Ollama starts (v0.32.15 llm/llama_server.go:488-522): the
    server's own folder, each GPU folder except lib/ollama itself, then the inherited entries; empty
    and repeated entries dropped."""
    own = os.path.dirname(server)
    entries = [own] + [d for d in gpu_dirs if d not in (ollama_lib, own)] + split_path_list(inherited)
    return list(dict.fromkeys(e for e in entries if e))


def server_env(env: Mapping[str, str], server: str, ollama_lib: str, variant_dir: str, backend: str | None,
               extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """SetupLlamaServerCommandEnv (v0.32.15 llm/llama_server.go:445-475): the service's whole environment
    (nothing unset), LD_LIBRARY_PATH composed as above, GGML_BACKEND_PATH = the folder's backend file
    unless the extra variables carry one; the extra variables last."""
    out = {"PATH": sandbox.DEFAULT_PATH, **env}
    out["LD_LIBRARY_PATH"] = ":".join(library_path(server, [ollama_lib, variant_dir], ollama_lib,
                                                   env.get("LD_LIBRARY_PATH")))
    if backend and "GGML_BACKEND_PATH" not in (extra or {}):
        out["GGML_BACKEND_PATH"] = backend
    out.update(extra or {})
    return out


def cuda_runtime(root: str, dirs: list[str]) -> tuple[int, int] | None:
    """cudaRuntimeVersion (v0.32.15 discover/llama_server.go:400-435): the highest libcudart.so.N[.M]
    file name in the folders, or cuda_vN folder name (minor 0)."""
    best: tuple[int, int] | None = None
    for folder in dirs:
        match = CUDA_DIR.match(os.path.basename(folder))
        found = [(int(match.group(1)), 0)] if match else []
        for name in paths.names(root, folder):
            m = CUDART_FILE.match(name)
            if m:
                found.append((int(m.group(1)), int(m.group(2) or 0)))
        for version in found:
            best = version if best is None or version > best else best
    return best


def load_request(root: str, spec, env: Mapping[str, str], server: str) -> LoadRequest:
    """How llama-server's ggml dlopens spec's backend: GGML_BACKEND_PATH, with the library path above."""
    variant = f"{spec.ollama_lib}/{spec.library}"
    backend = backend_file(root, variant) or f"{variant}/{spec.backend}"  # the profile's name where none is there
    path = library_path(server, [spec.ollama_lib, variant], spec.ollama_lib, env.get("LD_LIBRARY_PATH"))
    return LoadRequest(backend, tuple(path), layout.ggml_base_name(root, backend), variant, spec.library,
                       "llama-server")


def resolve(root: str, spec, env: Mapping[str, str], server: str) -> list[Resolution]:
    """ld.so's view of llama-server itself (its NEEDED: libllama, libggml, libggml-base, ...) and of the
    backend it then loads, both with the library path Ollama gives it."""
    request = load_request(root, spec, env, server)
    own = LoadRequest(server, request.library_path, request.base, os.path.dirname(server), "llama-server",
                      "llama-server")
    return [resolve_backend(root, own, env), resolve_backend(root, request, env)]


# ---------------------------------------------------------------- parsing and filters


@dataclass
class Device:
    index: str  # Ollama's device ID: the running index of matched lines (llama_server.go:270-271, :325-327)
    name: str
    description: str
    total_mib: int
    free_mib: int
    library: str
    compute: str = ""  # "9.0"; Ollama's arch string is f"{major}{minor}0"
    integrated: bool = False
    dropped_by: str | None = None  # one of FILTERS
    detail: str = ""

    @property
    def arch(self) -> str:
        major, _, minor = self.compute.partition(".")
        return f"{major}{minor}0" if self.compute else ""


@dataclass
class Parsed:
    devices: list[Device]
    archs: list[str]
    system_info: bool


def infer_library(name: str, description: str) -> str:
    """v0.32.15 discover/llama_server.go:468-482."""
    text = f"{name} {description}".lower()
    for needle, library in (("cuda", "CUDA"), ("rocm", "ROCm"), ("hip", "ROCm"), ("metal", "Metal"),
                            ("apple", "Metal"), ("vulkan", "Vulkan")):
        if needle in text:
            return library
    return description


def parse(list_output: str, startup_stderr: str) -> Parsed:
    """Device lines from the --list-devices output only; compute capability and ARCHS from any line of
    both (v0.32.15 discover/llama_server.go:239-276). The zero-memory and ARCHS filters happen here, as
    in Ollama (:288-316): a dropped device keeps its index and carries the filter's name."""
    both = f"{list_output}\n{startup_stderr}"
    cc = {m.group(1): f"{m.group(2)}.{m.group(3)}" for m in map(CUDA_CC.search, both.splitlines()) if m}
    archs: list[str] = []
    for line in both.splitlines():
        m = CUDA_ARCHS.search(line)
        if m:
            archs = [a.strip() for a in m.group(1).split(",") if a.strip()]  # the last line wins (:263-266)
    devices = []
    for line in list_output.splitlines():
        m = DEVICE_LINE.match(line)
        if not m:
            continue
        index = str(len(devices))
        device = Device(index, m.group(1), m.group(2), int(m.group(3)), int(m.group(4)),
                        infer_library(m.group(1), m.group(2)), cc.get(index, ""))
        if device.total_mib == 0:
            device.dropped_by, device.detail = "zero-memory", "skipping pseudo-device with zero memory"
        devices.append(device)
    archs_filter(devices, archs)
    return Parsed(devices, archs, "system_info:" in startup_stderr)


def archs_filter(devices: list[Device], archs: list[str], native: dict[str, str] | None = None) -> None:
    """The compiled-ARCHS filter (v0.32.15 discover/llama_server.go:294-316), after the native probe's
    compute capability has replaced llama-server's for every CUDA device it read with a major above 0
    (:249-260; index order matches, native_probe_linux.go:232). `native`: index -> "major.minor"."""
    for device in devices:
        if device.library != "CUDA" or device.dropped_by not in (None, "compute-capability"):
            continue
        device.compute = (native or {}).get(device.index) or device.compute
        device.dropped_by, device.detail = None, ""
        if device.compute and archs and device.arch not in archs:
            device.dropped_by = "compute-capability"
            device.detail = (f"skipping CUDA device — compute capability not in compiled architectures "
                             f"cc={device.arch} archs=[{' '.join(archs)}]")


def native_compute(reading: "NativeReading | None") -> dict[str, str]:
    """index -> "major.minor" of each CUDA device the native probe read with a major above 0."""
    out = {}
    for d in ((reading.cuda or {}).get("devices") or []) if reading else []:
        if isinstance(d, dict) and int(d.get("compute_major") or 0) > 0:
            out[str(d.get("index"))] = f"{int(d['compute_major'])}.{int(d.get('compute_minor') or 0)}"
    return out


def driver_gate(devices: list[Device], folder: str, driver_major: int, runtime: tuple[int, int] | None,
                version: tuple[int, int, int] | None) -> str | None:
    """filterOldCUDADriver, only for the folder named cuda_v12 (v0.32.15 discover/runner.go:119-121).
    v0.30.11+ (cuda_compat.go:20-77): driver 0 (no NVML reading) only warns; runtime 12.4+ may use
    compressed fatbins, so driver < 550 drops every CUDA device; runtime 12.8+ drops compute < 7 below
    570. v0.30.0-v0.30.10 (cuda_compat.go:10-54): only compute < 7 below 570. Returns Ollama's warning."""
    cuda = [d for d in devices if d.library == "CUDA" and d.dropped_by is None]
    if os.path.basename(folder) != "cuda_v12" or not cuda:
        return None
    def major(d: Device) -> int:
        return int(d.compute.partition(".")[0] or 0)
    if version is not None and version < GATE_SINCE:
        old = [d for d in cuda if 0 < major(d) < 7]
        if not old:
            return None
        if driver_major == 0:
            return "could not verify NVIDIA driver compatibility for an older NVIDIA GPU"
        if driver_major >= LEGACY_JIT_DRIVER:
            return None
        for d in old:
            d.dropped_by = "driver-gate"
            d.detail = f'NVIDIA driver too old driver={driver_major} required_driver="{LEGACY_JIT_DRIVER} or newer"'
        return None
    if driver_major == 0:
        return "could not verify NVIDIA driver compatibility for CUDA"
    rt_major, rt_minor = runtime or (0, 0)
    compressed = rt_major == 12 and rt_minor >= COMPRESSED_FATBIN_MINOR
    jit = rt_major == 12 and rt_minor >= LEGACY_JIT_MINOR
    if driver_major >= LEGACY_JIT_DRIVER or not (compressed or jit):
        return None
    for d in cuda:
        if compressed and driver_major < COMPRESSED_FATBIN_DRIVER:
            required = f"{COMPRESSED_FATBIN_DRIVER} or newer"
        elif jit and 0 < major(d) < 7:
            required = f"{LEGACY_JIT_DRIVER} or newer"
        else:
            continue
        d.dropped_by = "driver-gate"
        d.detail = f'NVIDIA driver too old driver={driver_major} required_driver="{required}"'
    return None


def igpu_filter(devices: list[Device], env: Mapping[str, str]) -> None:
    """filterIntegratedGPUs (v0.32.15 discover/runner.go:382-436): OLLAMA_IGPU_ENABLE explicit true keeps,
    explicit false drops; unset keeps CUDA iGPUs (envconfig BoolWithDefault, config.go:177-190)."""
    value = env.get("OLLAMA_IGPU_ENABLE", "").strip().strip("\"'")
    explicit = None if value == "" else value not in ("0", "f", "F", "false", "FALSE", "False")
    for d in devices:
        if d.dropped_by is None and d.integrated:
            keep = explicit if explicit is not None else d.library == "CUDA"
            if not keep:
                d.dropped_by = "integrated-gpu"
                d.detail = "dropping integrated GPU; to enable, set OLLAMA_IGPU_ENABLE=1"


# ---------------------------------------------------------------- running the root's programs


@dataclass
class ServerRun:
    """One llama-server invocation: argv, extra variables, exit, output."""

    argv: list[str]
    extra: dict[str, str]
    returncode: int | None = None
    timed_out: bool = False
    saw_system_info: bool = False
    output: str = ""
    launch_error: str | None = None
    duration: float = 0.0


@dataclass
class NativeReading:
    """What the native probe reads (driver via libcuda.so.1, driver version via libnvidia-ml.so.1)."""

    ok: bool
    mode: str = ""
    cuda: dict | None = None
    nvml: dict | None = None
    driver_major: int = 0  # NVIDIADriverMajor as Ollama parses it; 0 = could not read
    error: str | None = None
    source: str = "probe"  # probe: vgpu-fix's own reading; gpu-discover: the root's `ollama gpu-discover`

    @property
    def line(self) -> str:
        if self.source == "gpu-discover":
            found = len((self.cuda or {}).get("devices", []))
            return (f"native probe: {self.error}: driver major 0" if self.error else
                    f"native probe: ollama gpu-discover: {found} CUDA device(s), nvidia_driver_major {self.driver_major}")
        nvml = self.nvml or {}
        if not (self.cuda or {}).get("ok"):
            return f"native probe: libcuda.so.1 {(self.cuda or {}).get('error') or 'cuInit failed'}: driver major 0"
        if not nvml.get("ok"):
            return f"native probe: NVML {nvml.get('error') or 'not readable'} ({nvml.get('path') or 'no library'}): driver major 0"
        return (f"native probe: {nvml.get('path')} nvmlSystemGetDriverVersion = {nvml.get('driver_version')!r} "
                f"-> driver major {self.driver_major}")


def parse_driver_major(text: str | None) -> int:
    """parseNVIDIADriverMajor (v0.30.0 discover/native_probe_platform.go:121-132): the text before the
    first '.', as an integer; "12.9.00" -> 12, "580.65.06" -> 580; anything unreadable -> 0."""
    head = (text or "").strip().split(".", 1)[0]
    return int(head) if head.isdigit() else 0


@dataclass
class DiscoveryResult:
    ok: bool
    server: str
    mode: str = ""
    folder: str = ""
    runtime: str | None = None
    archs: list[str] = field(default_factory=list)
    native: NativeReading | None = None
    runs: list[ServerRun] = field(default_factory=list)
    devices: list[Device] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    not_honoured: list[str] = field(default_factory=list)
    failure: str | None = None  # the first pass got no device at all: Ollama's reason
    out_of_time: bool = False  # ... because the folder's budget ran out
    cause: str | None = None
    fix: str | None = None

    @property
    def survivors(self) -> list[Device]:
        return [d for d in self.devices if d.dropped_by is None and d.library == "CUDA"]

    @property
    def evidence(self) -> list[str]:
        if not self.mode:
            return [f"{self.server} was not run"]
        lines = [f"ran {self.server} in {self.mode} mode for {self.folder} (CUDA runtime "
                 f"{self.runtime or 'unknown'}, ARCHS {','.join(self.archs) or 'unknown'})"]
        lines += [f"not honoured: {n}" for n in self.not_honoured]
        for run in self.runs:
            label = " ".join(f"{k}={v}" for k, v in run.extra.items()) or "first pass"
            end = ("timed out" if run.timed_out else f"exit {run.returncode}") + (
                ", system_info seen" if run.saw_system_info else "")
            lines.append(f"{label}: {' '.join(run.argv[1:])} -> {run.launch_error or end}")
        if self.native:
            lines.append(self.native.line)
        lines += [f"Ollama would log: {w}" for w in self.warnings]
        for d in self.devices:
            where = f"dropped by {d.dropped_by}: {d.detail}" if d.dropped_by else "survived " + ", ".join(FILTERS)
            lines.append(f"device {d.index} {d.name} {d.description!r} {d.total_mib} MiB cc {d.compute or '?'}"
                         f"{' iGPU' if d.integrated else ''}: {where}")
        return lines

    def to_dict(self) -> dict:
        out = asdict(self)
        out.update(evidence=self.evidence, survivors=[d.index for d in self.survivors])
        return out


def _run_startup(placement, server: str, env: dict, account, timeout: float, port: int) -> ServerRun:
    """The startup run (v0.32.15 discover/llama_server.go:58-139): stderr read until a line contains
    `system_info:`, then the process is killed; stdout is not parsed (only the launcher reports there)."""
    argv = [server, "--port", str(port), "--host", "127.0.0.1", "--no-webui", "--offline", "--verbose"]
    run = ServerRun(argv, {})
    launched = sandbox.start(placement, argv, env, user=account, executable=placement.path(server),
                             limit=timeout + 10)
    out, err = Capture(launched.process.stdout, head=1 << 16), Capture(launched.process.stderr, marker="system_info:")
    deadline = time.monotonic() + timeout
    try:
        while not err.seen.wait(0.05):
            if launched.process.poll() is not None:
                break
            if time.monotonic() >= deadline:
                run.timed_out = True
                break
    finally:
        sandbox.stop(launched)
        sandbox.cleanup(launched)
    out.join()
    err.join()
    code, text, said = sandbox.outcome(launched, err.text)
    run.returncode, run.output, run.duration = code, text, time.monotonic() - launched.started
    run.saw_system_info = err.seen.is_set()
    run.launch_error = _launch_error(said, code, text if said else f"{out.text}\n{text}")
    return run


def _run_list(placement, server: str, env: dict, account, timeout: float) -> ServerRun:
    """`llama-server --list-devices --offline --verbose`, stdout and stderr together (:143-155)."""
    argv = [server, "--list-devices", "--offline", "--verbose"]
    run = ServerRun(argv, {})
    launched = sandbox.start(placement, argv, env, user=account, executable=placement.path(server),
                             limit=timeout)
    done = sandbox.finish(launched, timeout)
    run.returncode, run.timed_out, run.duration = done.returncode, done.timed_out, done.duration
    run.output = f"{done.stdout}\n{done.stderr}"
    error = done.launch_error
    setup = sandbox.setup_failure(done.transient, done.returncode)
    run.launch_error = (f"{error.get('step')}: {error.get('error')}" if error else
                        f"systemd could not start it (status {setup})" if setup else None)
    return run


def _launch_error(said: dict | None, code: int | None, text: str) -> str | None:
    """Why the program never ran: the launcher's own report (`exec PATH: [Errno 13] Permission denied`),
    systemd-run's refusal, or systemd's exec-setup status (203/EXEC)."""
    if said is not None and not said["started"]:
        return f"systemd-run: {text.strip()[:300]}"
    if said is None and code == sandbox.LAUNCH_FAILED:
        event = next((e for e in json_objects(text) if e.get("event") == "launch-error"), None)
        return f"{event.get('step')}: {event.get('error')}" if event else text.strip()[:300] or "the launcher failed"
    setup = sandbox.setup_failure(said, code)
    return f"systemd could not start it (status {setup})" if setup else None


def run_failure(run: ServerRun, timeout: float) -> str | None:
    """What ended `run` other than its own exit: never started, a hang killed at the deadline, a signal."""
    what = "llama-server " + ("--list-devices" if "--list-devices" in run.argv else "start-up run")
    if run.launch_error:
        return f"{what} could not be executed: {run.launch_error}"
    if run.timed_out:
        return f"{what} hung: no end within {timeout:.0f} s, killed"
    if run.returncode is not None and run.returncode < 0 and not run.saw_system_info:  # else: killed by design
        try:
            name = signal.Signals(-run.returncode).name
        except ValueError:
            name = f"signal {-run.returncode}"
        return f"{what} crashed ({name})"
    return None


@dataclass
class Pass:
    """One llamaServerDiscoverDevices call (v0.32.15 discover/llama_server.go:42-165) within its budget."""

    runs: list[ServerRun]
    parsed: Parsed
    native: NativeReading | None = None
    failure: str | None = None  # why Ollama got no device from this call at all
    out_of_time: bool = False  # the failure is the budget running out


def _discover_once(placement, server: str, env: dict, account, deadline: float, extra: dict,
                   native) -> Pass:
    """Start-up run, --list-devices and the native probe, all before `deadline` (one context in Ollama):
    a start-up that never reaches system_info before it fails the call (:129-132), a non-zero exit of
    --list-devices yields no devices (:146-155), and a native probe still running at the deadline trips
    the discovery watchdog (runner.go:580-586), which drops whatever the call found. `native(extra,
    seconds)` runs the native probe."""
    child = placement.env({**env, **extra})
    if "GGML_BACKEND_PATH" in child:
        child["GGML_BACKEND_PATH"] = placement.path(child["GGML_BACKEND_PATH"])
    port = 49152 + time.time_ns() % 16383  # v0.32.15 discover/llama_server.go:58
    startup = _run_startup(placement, server, child, account, _left(deadline), port)
    startup.extra = dict(extra)
    empty = Parsed([], [], startup.saw_system_info)
    if startup.timed_out:  # llama_server.go:129-132: "timed out waiting for server startup"
        return Pass([startup], empty, failure=run_failure(startup, startup.duration), out_of_time=True)
    listing = _run_list(placement, server, child, account, _left(deadline))
    listing.extra = dict(extra)
    if listing.timed_out:
        return Pass([startup, listing], empty, failure="llama-server GPU discovery watchdog timed out "
                    "(in --list-devices)", out_of_time=True)
    if listing.launch_error is None and listing.returncode != 0:
        failed = next(filter(None, (run_failure(r, FOLDER_BUDGET) for r in (startup, listing))), None)
        return Pass([startup, listing], empty,
                    failure=failed or f"llama-server --list-devices exited with status {listing.returncode}")
    reading = native(extra, min(NATIVE_PROBE_CAP, _left(deadline)))
    done = Pass([startup, listing], parse(listing.output, startup.output), reading)
    archs_filter(done.parsed.devices, done.parsed.archs, native_compute(reading))  # llama_server.go:249-260
    if time.monotonic() >= deadline:
        done.parsed, done.out_of_time = empty, True
        done.failure = "llama-server GPU discovery watchdog timed out (in the native probe)"
    return done


def _left(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.1)


def read_native(root: str, env: Mapping[str, str], spec, user: str | None, timeout: float, unit=None) -> NativeReading:
    """The native probe's driver reading, in a fresh process with the service's environment, user and
    sandbox (the same placement as the load probe)."""
    placement = sandbox.place(root, env, spec, unit=unit)
    while True:
        account, _ = sandbox.account_for(placement, user)
        launched = sandbox.start(placement, ["probe", json.dumps({"probe": "native"})], placement.env(env),
                                 user=account, python_child=True, limit=timeout)
        done = sandbox.finish(launched, timeout)
        if done.launch_error is None or placement.mode not in ("systemd", "namespace", "user-namespace"):
            break
        placement = sandbox.fallback(placement, root, env, spec, why=str(done.launch_error.get("error")))
    reading = NativeReading(False, placement.mode)
    for event in json_objects(done.stdout):
        if event.get("event") == "native":
            reading.cuda, reading.nvml = event["report"]["cuda"], event["report"]["nvml"]
    if reading.cuda is None:
        reading.error = (f"the native probe died ({done.signal or done.returncode}"
                         f"{', timed out' if done.timed_out else ''}): {done.stderr.strip()[-200:]}")
        return reading
    reading.ok = True
    if (reading.cuda or {}).get("ok") and (reading.nvml or {}).get("ok"):
        reading.driver_major = parse_driver_major(reading.nvml.get("driver_version"))
    return reading


def gate_fix(reading: NativeReading) -> str:
    """What makes the gate keep the device, decided from what NVML said: a CUDA-style version (a shim) or a
    real driver branch below the floor (on a vGPU guest the host's vGPU manager decides that branch)."""
    path = (reading.nvml or {}).get("path") or "libnvidia-ml.so.1"
    before = f"v0.{GATE_SINCE[1]}.{GATE_SINCE[2] - 1}"
    if reading.driver_major >= 100:  # a driver branch (R535, R550, ...), not a CUDA version
        return (f"NVML ({path}) reports the NVIDIA driver {(reading.nvml or {}).get('driver_version')!r}, below "
                f"the gate's {COMPRESSED_FATBIN_DRIVER}: a driver of that branch or newer, or an Ollama release "
                f"before the gate ({before} or older; it arrived in v0.{GATE_SINCE[1]}.{GATE_SINCE[2]}, "
                "discover/cuda_compat.go:14,60-68). On an NVIDIA vGPU guest the branch is the host's vGPU "
                "manager's: no fix from inside the guest but the older release")
    return (f"the NVML the service loads ({path}) reports {(reading.nvml or {}).get('driver_version')!r}, which "
            f"Ollama reads as driver {reading.driver_major}: remove the libnvidia-ml.so.1 link the service finds "
            "(h100-vgpu: `--set nvml_link=absent`); without NVML Ollama only warns and keeps the GPU. "
            f"Alternatively a shim that reports its real driver (>= {COMPRESSED_FATBIN_DRIVER}), or cuda_v13 "
            "(`--profile h100-vgpu-cuda13`) when the shim can JIT PTX: the gate never applies to cuda_v13")


def run_discovery(root: str, env: Mapping[str, str], spec, installation, user: str | None = None,
                  unit=None) -> DiscoveryResult:
    """Both passes of v0.30+ discovery for spec.library, Ollama's filters in Ollama's order (ollama.md
    section 2): zero memory and ARCHS (parse), the driver gate (cuda_v12 only), integrated GPUs, then the
    second pass with CUDA_VISIBLE_DEVICES=<index> GGML_CUDA_INIT=1 (v0.32.15 discover/runner.go:131-180),
    every device's check in parallel within one shared budget. The budgets are Ollama's, not the
    profile's verify.timeout: a slower device is a device Ollama drops."""
    from concurrent.futures import ThreadPoolExecutor

    from fixer.ollama.generations import parse_version

    root = os.fspath(root)
    server = installation.llama_server or f"{spec.ollama_lib}/llama-server"
    folder = f"{spec.ollama_lib}/{spec.library}"
    result = DiscoveryResult(False, server, folder=folder)
    if resolve_in_root(root, server) is None:
        result.cause = f"{server} not found: Ollama {installation.version or ''} cannot discover any GPU".replace("  ", " ")
        result.fix = "reinstall Ollama (install.sh puts llama-server into lib/ollama)"
        return result
    runtime = cuda_runtime(root, [spec.ollama_lib, folder])
    result.runtime = f"{runtime[0]}.{runtime[1]}" if runtime else None
    backend = backend_file(root, folder)
    full_env = server_env(env, server, spec.ollama_lib, folder, backend)

    def native(extra: dict, seconds: float) -> NativeReading:
        return gpu_discover(root, {**full_env, **extra}, spec, user, seconds, unit)

    placement = sandbox.place(root, full_env, spec, files=(server,), unit=unit)
    while True:
        account, note = sandbox.account_for(placement, user)
        first = _discover_once(placement, server, full_env, account, time.monotonic() + FOLDER_BUDGET, {}, native)
        error = next((r.launch_error for r in first.runs if r.launch_error), None)
        if error is None or placement.mode not in ("systemd", "namespace", "user-namespace"):
            break
        placement = sandbox.fallback(placement, root, full_env, spec, files=(server,), why=error)
    parsed = first.parsed
    result.mode, result.runs, result.archs = placement.mode, first.runs, parsed.archs
    result.not_honoured = list(placement.not_honoured) + ([note] if note else [])
    result.devices, result.native, result.failure = parsed.devices, first.native, first.failure
    result.out_of_time = first.out_of_time
    if first.failure:
        result.warnings.append(first.failure)
    elif not parsed.system_info:
        result.warnings.append("llama-server discovery: system_info line not found in output - CUDA architecture "
                               "filtering will be disabled.")
    cuda = [d for d in parsed.devices if d.library == "CUDA"]
    if cuda and not parsed.archs:
        result.warnings.append("llama-server discovery: could not determine compiled CUDA architectures")
    reading = result.native or NativeReading(False)
    for d in cuda:
        probed = next((x for x in (reading.cuda or {}).get("devices", []) if str(x["index"]) == d.index), {})
        d.integrated = bool(probed.get("integrated"))
    warning = driver_gate(parsed.devices, folder, reading.driver_major, runtime, parse_version(installation.version))
    if warning:
        result.warnings.append(warning)
    igpu_filter(parsed.devices, env)
    checked = [d for d in parsed.devices if d.library == "CUDA" and d.dropped_by is None]
    deadline = time.monotonic() + SECOND_PASS_BUDGET
    with ThreadPoolExecutor(max_workers=max(len(checked), 1)) as pool:
        passes = list(pool.map(lambda d: _discover_once(
            placement, server, full_env, account, deadline,
            {"CUDA_VISIBLE_DEVICES": d.index, "GGML_CUDA_INIT": "1"}, native), checked))  # ml/device.go:631-673
    for d, again in zip(checked, passes):
        result.runs += again.runs
        if not any(x.dropped_by is None for x in again.parsed.devices):
            d.dropped_by = "second-pass"
            d.detail = ("filtering device which didn't fully initialize: no device with "
                        f"CUDA_VISIBLE_DEVICES={d.index} GGML_CUDA_INIT=1" + (f" ({again.failure})" if again.failure else ""))
    _classify(result, cuda)
    return result


def kept_folder(results: list[DiscoveryResult]) -> DiscoveryResult:
    """Which folder's CUDA devices unpinned Ollama keeps (filterOverlapByLibrary, v0.32.15
    discover/runner.go:438-486): among the folders whose devices survived, the newest by reverse name
    order when every such folder saw the same devices; once any differs, the loop runs out on the oldest.
    With no survivor anywhere, the first folder's result (its cause explains the CPU fallback). Vulkan
    folders, CUDA's fallback (:209-251, ml/device.go:678-686), are not modelled."""
    seen = sorted((r for r in results if r.survivors), key=lambda r: os.path.basename(r.folder), reverse=True)
    if not seen:
        return results[0]
    ids = [{d.index for d in r.survivors} for r in seen]
    return seen[0] if all(i == ids[0] for i in ids) else seen[-1]


def _classify(result: DiscoveryResult, cuda: list[Device]) -> None:
    if result.survivors:
        result.ok = True
        return
    first = result.runs[0] if result.runs else None
    if first is not None and first.launch_error:
        result.cause = f"{run_failure(first, FOLDER_BUDGET)}: Ollama cannot discover any GPU"
        result.fix = ("llama-server must be an executable program for the service's user (mode, a noexec "
                      "mount, the machine's architecture): reinstall Ollama; if it was started, see the static "
                      "check for its own libraries")
        return
    if result.out_of_time:
        spent = " + ".join(f"{r.duration:.1f} s" for r in result.runs)
        result.cause = (f"{result.failure}: Ollama gives {os.path.basename(result.folder)} {FOLDER_BUDGET:.0f} s for "
                        f"the start-up run, --list-devices and the native probe together (here {spent}), then uses "
                        "the CPU")
        result.fix = ("the shim's CUDA initialisation must finish well within Ollama's budget (each of the three "
                      "processes initialises CUDA); no Ollama setting lengthens it")
        return
    if not cuda:
        listing = result.runs[1] if len(result.runs) > 1 else None
        failed = result.failure or next(filter(None, (run_failure(r, FOLDER_BUDGET) for r in result.runs[:2])), None)
        if failed is None and listing is not None and listing.returncode:
            failed = f"llama-server --list-devices exited with status {listing.returncode}"
        tail = " | ".join((listing.output if listing else "").strip().splitlines()[-3:])
        where = os.path.basename(result.folder)
        result.cause = (f"{failed} for {where}: Ollama counts no device there and uses the CPU" if failed else
                        f"llama-server lists no CUDA device for {where} ({tail or 'it printed nothing'}): "
                        "Ollama uses the CPU")
        result.fix = ("a shim that hangs or crashes in CUDA initialisation must be fixed or replaced; "
                      if failed and "could not be executed" not in failed else "") + \
            "see the load check: the backend must load and find a device with this environment"
        return
    dropped = cuda[0]
    result.cause = f"Ollama drops CUDA device {dropped.index} ({dropped.description}): {dropped.detail}"
    result.fix = {
        "driver-gate": gate_fix(result.native) if result.native else "",
        "compute-capability": "pin a library folder whose ARCHS include this compute capability "
                              "(OLLAMA_LLM_LIBRARY=cuda_v13 carries PTX for newer GPUs)",
        "zero-memory": "the shim reports 0 MiB: check the mediator and the shim's memory query",
        "integrated-gpu": "set OLLAMA_IGPU_ENABLE=1 in service.environment",
        "second-pass": "the shim does not survive deep CUDA initialisation (GGML_CUDA_INIT=1); use a shim build "
                       "that does",
    }.get(dropped.dropped_by or "", "")


def gpu_discover(root: str, env: Mapping[str, str], spec, user: str | None, seconds: float, unit=None) -> NativeReading:
    """The native probe as Ollama runs it (v0.32.15 discover/native_probe.go:69-106): the root's own
    `ollama gpu-discover --lib-dir LIB --lib-dir FOLDER`, with llama-server's environment `env`, under the
    process name `ollama`, for at most `seconds`. It loads libggml-base/libggml and the CUDA backend,
    then cuInit and NVML (native_probe_linux.go:144-149,170-247,391-418); its nvidia_driver_major feeds
    the driver gate. A crash, a timeout or output that is not JSON leaves the major 0 (:93-103), which
    the gate only warns about (cuda_compat.go:37-41)."""
    folder = f"{spec.ollama_lib}/{spec.library}"
    placement = sandbox.place(root, env, spec, files=(spec.ollama_bin,), unit=unit)
    account, _ = sandbox.account_for(placement, user)
    argv = [spec.ollama_bin, "gpu-discover", "--lib-dir", spec.ollama_lib, "--lib-dir", folder]
    done = sandbox.finish(sandbox.start(placement, argv, placement.env(sandbox.with_home(env)), user=account,
                                        executable=placement.path(spec.ollama_bin), limit=seconds), seconds)
    reading = NativeReading(False, placement.mode, source="gpu-discover")
    try:
        parsed = json.loads(done.stdout) if done.returncode == 0 else None
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("devices"), list):
        how = "timed out" if done.timed_out else (done.signal or f"exit {done.returncode}")
        reading.error = f"ollama gpu-discover {how}: {(done.stderr.strip().splitlines() or ['no output'])[-1][:200]}"
        return reading
    devices = [d for d in parsed["devices"] if isinstance(d, dict) and str(d.get("library", "")).upper() == "CUDA"]
    reading.ok, reading.cuda = True, {"ok": True, "devices": devices}
    # nvidiaDriverMajorFromDevices (cuda_compat.go:79-86): the first CUDA device that carries one.
    reading.driver_major = next((int(d["nvidia_driver_major"]) for d in devices
                                 if isinstance(d.get("nvidia_driver_major"), int) and d["nvidia_driver_major"] > 0), 0)
    return reading
