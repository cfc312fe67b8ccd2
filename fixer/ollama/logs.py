"""Parse Ollama's log (journal JSON, journal text, its own slog text, and the captures of docker, docker
compose and kubectl around it) into typed events."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from fixer.ollama import versions as ollama_versions

BOOTSTRAP_TIMEOUT_S = 30.0  # hard-coded per discovery runner in Ollama (discover/runner.go)
SLOW_BOOTSTRAP_S = 28.0  # a bootstrap this long ran into (or nearly into) that timeout
SESSION_PAUSE_S = 600.0


# ---------------------------------------------------------------- records


@dataclass
class Record:
    """One logical log line: the slog fields when it has them, else the plain text."""

    line: int
    text: str
    time: datetime | None = None
    level: str | None = None
    source: str | None = None
    msg: str | None = None
    attrs: dict[str, str] = field(default_factory=dict)
    pid: str | None = None
    ident: str | None = None

    @property
    def is_slog(self) -> bool:
        return self.msg is not None


_JOURNAL_PREFIX = re.compile(
    r"^(?:(?P<mon>[A-Z][a-z]{2}) {1,2}(?P<day>\d{1,2}) (?P<hms>\d{2}:\d{2}:\d{2}(?:\.\d+)?)"
    r"|(?P<iso>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?))"
    r" (?P<host>\S+) (?P<ident>[^\s\[\]:]+)(?:\[(?P<pid>\d+)\])?: ?(?P<msg>.*)$"
)
# What container tools put before each of Ollama's lines, as logs are pasted into its issue tracker:
# `docker compose logs` (`llms-ollama-1  | `), `kubectl logs --prefix` (`[pod/NAME/CONTAINER] `), and the
# RFC 3339 time of `docker logs --timestamps` / `kubectl logs --timestamps` (also inside compose's prefix).
_CAPTURE_SERVICE = re.compile(r"^(?:\[(?P<pod>pod/[^\]\s]+)\]|(?P<svc>[A-Za-z0-9][\w.-]*) *\|)(?: ?(?P<msg>.*))?$")
_CAPTURE_TIME = re.compile(r"^(?P<iso>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})) (?P<msg>.*)$")
_SLOG_START = re.compile(r"^time=\S")
_LOGFMT_KEY_START = re.compile(r"^[A-Za-z_][\w.\-]*=")
_JOURNAL_META = re.compile(r"^-- (?:Boot|No entries|Logs begin|Journal begins|Reboot)")
_MONTHS = {m: i for i, m in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), 1)}


def parse_logfmt(text: str) -> dict[str, str]:
    """`key=value key="quoted \\"value\\""` pairs in order; an unterminated quote runs to the end."""
    out: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t":
            i += 1
        start = i
        while i < n and text[i] not in "= \t":
            i += 1
        key = text[start:i]
        if i >= n or text[i] != "=":
            if key:
                out.setdefault(key, "")
            continue
        i += 1
        if i < n and text[i] == '"':
            value, i = _quoted(text, i + 1)
        else:
            start = i
            while i < n and text[i] not in " \t":
                i += 1
            value = text[start:i]
        if key:
            out[key] = value
    return out


_GO_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "'": "'", "a": "\a", "b": "\b", "f": "\f", "v": "\v"}


def _quoted(text: str, i: int) -> tuple[str, int]:
    chars: list[str] = []
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n:
            nxt = text[i + 1]
            if nxt in "uU" or nxt == "x":
                width = {"u": 4, "U": 8, "x": 2}[nxt]
                digits = text[i + 2 : i + 2 + width]
                try:
                    chars.append(chr(int(digits, 16)))
                    i += 2 + width
                    continue
                except ValueError:
                    pass
            chars.append(_GO_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        if c == '"':
            return "".join(chars), i + 1
        chars.append(c)
        i += 1
    return "".join(chars), i


def _open_quote(text: str) -> bool:
    """True when `text` ends inside a double-quoted logfmt value."""
    inside = False
    i = 0
    while i < len(text):
        c = text[i]
        if inside and c == "\\":
            i += 2
            continue
        if c == '"' and (inside or i > 0 and text[i - 1] == "="):
            inside = not inside
        i += 1
    return inside


def _journal_json(raw: str) -> tuple[str, datetime | None, str | None, str | None, bool] | None:
    """(message, time, pid, identifier, is_ollama) of one `journalctl -o json` line, or None."""
    try:
        obj = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(obj, dict) or "MESSAGE" not in obj:
        return None
    message = obj.get("MESSAGE")
    if isinstance(message, list):
        message = bytes(b & 0xFF for b in message if isinstance(b, int)).decode("utf-8", errors="replace")
    if not isinstance(message, str):
        return None
    when = None
    stamp = obj.get("__REALTIME_TIMESTAMP")
    if isinstance(stamp, (str, int)) and str(stamp).isdigit():
        when = datetime.fromtimestamp(int(stamp) / 1e6).astimezone()
    ident = obj.get("SYSLOG_IDENTIFIER") or obj.get("_COMM")
    unit = str(obj.get("_SYSTEMD_UNIT") or obj.get("UNIT") or "")
    names = f"{ident or ''} {unit} {obj.get('_COMM') or ''}".lower()
    is_ollama = "ollama" in names or not (ident or unit)
    return message.rstrip("\n"), when, _str(obj.get("_PID")), _str(ident), is_ollama


def _str(value: object) -> str | None:
    return None if value is None else str(value)


def _journal_time(m: re.Match) -> datetime | None:
    try:
        if m.group("iso"):
            return datetime.fromisoformat(m.group("iso").replace(",", ".").replace(" ", "T"))
        hms = m.group("hms")
        fmt = "%H:%M:%S.%f" if "." in hms else "%H:%M:%S"
        clock = datetime.strptime(hms, fmt)
        return clock.replace(year=1900, month=_MONTHS[m.group("mon")], day=int(m.group("day")))
    except (ValueError, KeyError):
        return None


def _unwrap_capture(line: str) -> tuple[str, datetime | None, str | None] | None:
    """(Ollama's own line, the capture's time, the service/pod name) when a container tool's capture
    prefix wraps `line`; None when it carries none (a journal line, or Ollama's own)."""
    name = None
    if m := _CAPTURE_SERVICE.match(line):
        name, line = m.group("pod") or m.group("svc"), m.group("msg") or ""
    when = None
    if not _JOURNAL_PREFIX.match(line) and (t := _CAPTURE_TIME.match(line)):
        try:
            when = datetime.fromisoformat(_rfc3339(t.group("iso")))
        except ValueError:
            when = None
        line = t.group("msg")
    elif name is None:
        return None
    return line, when, name


def _rfc3339(stamp: str) -> str:
    """What datetime.fromisoformat reads (Python 3.11: at most 6 fraction digits; docker writes 9)."""
    head, dot, rest = stamp.partition(".")
    if not dot:
        return stamp.replace("Z", "+00:00")
    digits = re.match(r"\d*", rest).group(0)  # type: ignore[union-attr]
    return f"{head}.{digits[:6].ljust(6, '0')}{rest[len(digits):]}".replace("Z", "+00:00")


def _looks_like_ollama(message: str) -> bool:
    return bool(_SLOG_START.match(message)) or any(p.search(message) for p, _ in PLAIN_PATTERNS)


def records(text: str) -> list[Record]:
    """Logical records in order: journal prefixes stripped, wrapped lines joined, foreign lines dropped."""
    out: list[Record] = []
    current: Record | None = None
    foreign = False
    for number, raw in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), start=1):
        line = raw.rstrip()
        if not line.strip():
            current, foreign = None, False
            continue
        when = pid = ident = None
        prefixed = False
        if (captured := _unwrap_capture(line)) is not None:
            line, when, ident = captured
            prefixed = True
            if not line.strip():
                current, foreign = None, False
                continue
            if ident and "ollama" not in ident.lower() and not _looks_like_ollama(line) and not _continues_any(current, line):
                current, foreign = None, True  # another service of the same compose project or pod
                continue
        if line.lstrip().startswith("{"):
            parsed = _journal_json(line.strip())
            if parsed is not None:
                message, when, pid, ident, is_ollama = parsed
                if not is_ollama and not _looks_like_ollama(message) and not _systemd_about_ollama(ident, message):
                    current, foreign = None, True
                    continue
                line, prefixed = message, True
        elif _JOURNAL_META.match(line):
            current, foreign = None, False
            continue
        elif m := _JOURNAL_PREFIX.match(line):
            ident, pid, message = m.group("ident"), m.group("pid"), m.group("msg")
            when = _journal_time(m)
            if "ollama" not in ident.lower() and not _looks_like_ollama(message) and not _systemd_about_ollama(ident, message):
                current, foreign = None, True
                continue
            line, prefixed = message, True
        elif foreign:
            continue  # the wrapped tail of another service's line
        foreign = False
        if current is not None and _continues(current, line, prefixed, pid):
            current.text = current.text.rstrip() + " " + line.strip()
            continue
        current = Record(line=number, text=line, time=when, pid=pid, ident=ident)
        out.append(current)
    for record in out:
        _fill_slog(record)
    return out


def _continues_any(current: Record | None, line: str) -> bool:
    return current is not None and _continues(current, line, False, None)


def _systemd_about_ollama(ident: str | None, message: str) -> bool:
    return (ident or "").startswith("systemd") and "ollama" in message.lower()


def _continues(current: Record, line: str, prefixed: bool, pid: str | None) -> bool:
    if not _SLOG_START.match(current.text) or _SLOG_START.match(line.lstrip()):
        return False
    if prefixed and current.pid and pid and pid != current.pid:
        return False
    if _open_quote(current.text) or " msg=" not in f" {current.text}":
        return True
    return bool(_LOGFMT_KEY_START.match(line.lstrip()))


def _fill_slog(record: Record) -> None:
    if not _SLOG_START.match(record.text):
        return
    attrs = parse_logfmt(record.text)
    record.level = attrs.pop("level", None)
    record.source = attrs.pop("source", None)
    record.msg = attrs.pop("msg", "")
    stamp = attrs.pop("time", None)
    if stamp:
        try:
            record.time = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError:
            pass
    record.attrs = attrs


# ---------------------------------------------------------------- events


@dataclass
class Event:
    """Something Ollama did, with the record that says so."""

    kind: str
    line: int
    text: str
    time: datetime | None = None
    data: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "line": self.line,
            "time": self.time.isoformat() if self.time else None,
            "data": self.data,
            "text": self.text,
        }


def parse_go_duration(text: str) -> float | None:
    """Seconds in a Go duration string (`228.959725ms`, `1m0.5s`, `850µs`)."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ns": 1e-9}
    parts = re.findall(r"([0-9.]+)(h|ms|m|s|us|µs|μs|ns)", text or "")
    if not parts or "".join(a + b for a, b in parts) != text.strip().lstrip("-"):
        return None
    return sum(float(value) * units[unit] for value, unit in parts)


def parse_go_list(text: str) -> list[str]:
    """`[/a /b]` (Go's %v of a slice) → ['/a', '/b']."""
    inner = (text or "").strip()
    if inner.startswith("[") and inner.endswith("]"):
        inner = inner[1:-1]
    return [p for p in inner.split() if p]


def parse_go_map(text: str) -> dict[str, str]:
    """`map[K:V K2:V 2]` (Go's %v of a map with upper-case keys) → dict."""
    inner = (text or "").strip()
    if inner.startswith("map[") and inner.endswith("]"):
        inner = inner[4:-1]
    chunks: list[str] = []
    depth, start = 0, 0
    for i, c in enumerate(inner):
        depth += (c == "[") - (c == "]")
        if c == " " and depth == 0 and re.match(r"[A-Za-z_][A-Za-z0-9_]*:", inner[i + 1 :]):
            chunks.append(inner[start:i])
            start = i + 1
    chunks.append(inner[start:])
    out: dict[str, str] = {}
    for chunk in chunks:
        key, sep, value = chunk.partition(":")
        if sep and key:
            out[key] = value
    return out


# Plain (non-slog) lines: ggml/llama.cpp stderr, the dynamic loader, Go runtime, systemd.
PLAIN_PATTERNS: list[tuple[re.Pattern, str]] = [
    (re.compile(r"load_backend: loaded (?P<name>\S+) backend from (?P<path>\S+)"), "backend_loaded"),
    (re.compile(r"load_backend: failed to load (?P<path>\S+?): (?P<error>.*)"), "backend_load_failed"),
    (re.compile(r"load_backend: failed to initialize backend from (?P<path>\S+?): (?P<error>.*)"), "backend_load_failed"),
    (re.compile(r"load_backend: failed to find ggml_backend_init in (?P<path>\S+)"), "backend_load_failed"),
    (re.compile(r"load_backend: backend (?P<path>\S+) is not supported on this system"), "backend_load_failed"),
    (re.compile(r"ggml_backend_load_best: failed to load (?P<path>\S+?): (?P<error>.*)"), "backend_load_failed"),
    (re.compile(r"ggml_cuda_init: found (?P<count>\d+) (?P<api>CUDA|ROCm|MUSA) devices"), "cuda_init"),
    (re.compile(r"ggml_cuda_init: failed to initialize (?P<api>\S+): (?P<error>.*)"), "cuda_init_failed"),
    (
        re.compile(r"^\s*Device (?P<index>\d+): (?P<name>.+?), compute capability (?P<compute>[\d.]+), VMM: (?P<vmm>\w+)(?:, ID: (?P<id>\S+))?"),
        "cuda_device",
    ),
    (
        re.compile(r"ld\.so: object '(?P<path>[^']+)' from (?P<origin>\S+) cannot be preloaded \((?P<error>[^)]*)\): ignored"),
        "preload_ignored",
    ),
    (re.compile(r"symbol lookup error: (?P<lib>\S+?): undefined symbol: (?P<symbol>\S+)"), "symbol_error"),
    (re.compile(r"error while loading shared libraries: (?P<lib>\S+?): (?P<error>.*)"), "library_missing"),
    (re.compile(r"load_tensors: offloaded (?P<layers>\d+)/(?P<total>\d+) layers to GPU"), "layers_offloaded"),
    (re.compile(r"(?:^|\s)(?:CUDA error: (?P<error>.*)|SIGSEGV: segmentation violation|SIGABRT: abort|fatal error: (?P<fatal>.*)|^panic: (?P<panic>.*))"), "runner_crash"),
    (re.compile(r"ollama\.service: Main process exited, code=(?P<code>\w+), status=(?P<status>\S+)"), "service_exit"),
    (re.compile(r"ollama\.service: Failed with result '(?P<result>[^']+)'"), "service_failed"),
]

# Long v0.30+ warnings, exactly as slog prints them (the source concatenates them across lines).
SYSTEM_INFO_MISSING = ("llama-server discovery: system_info line not found in output - CUDA architecture filtering "
                       "will be disabled. If GPU inference fails, this may indicate an incompatible llama-server version.")
CC_UNKNOWN = ("llama-server discovery: could not determine compute capability for CUDA device — architecture "
              "filtering disabled for this device. If inference crashes, check that the CUDA backend supports this GPU.")
ARCHS_UNKNOWN = ("llama-server discovery: could not determine compiled CUDA architectures — architecture filtering "
                 "disabled. If inference crashes on older GPUs, check llama-server system_info output for ARCHS.")

# slog messages → event kind.
SLOG_KINDS = {
    "discovering available GPUs...": "discovery_start",
    "bootstrap discovery took": "bootstrap",
    "GPU bootstrap discovery took": "discovery_end",
    "overall device VRAM discovery took": "vram_refresh",
    "evaluating which, if any, devices to filter out": "filter_evaluation",
    "verifying if device is supported": "device_verifying",
    "filtering device which didn't fully initialize": "device_filtered",
    "filtering device with overlapping libraries": "device_overlap_dropped",
    "dropping duplicate device": "device_duplicate_dropped",
    "skipping available library at user's request": "library_skipped",
    "failure during GPU discovery": "discovery_failure",
    "failed to start runner to discovery GPUs": "runner_start_failed",
    "user overrode visible devices": "visible_devices_override",
    "inference compute": "inference_compute",
    "server config": "server_config",
    "starting runner": "runner_start",
    "runner exited": "runner_exit",
    "llama runner terminated": "runner_exit",
    "waiting for llama runner to start responding": "runner_waiting",
    "experimental Vulkan support disabled.  To enable, set OLLAMA_VULKAN=1": "vulkan_disabled",
    # The llama-server generation (v0.30+): discover/runner.go, llama_server.go, cuda_compat.go, native_probe.go.
    "failure during llama-server GPU discovery": "discovery_failure",
    "llama-server GPU discovery watchdog timed out": "discovery_watchdog",
    "llama-server discovery: timed out waiting for server startup": "server_startup_timeout",
    SYSTEM_INFO_MISSING: "system_info_missing",
    "llama-server --list-devices failed": "list_devices_failed",
    "llama-server not available for device discovery": "llama_server_missing",
    "llama-server discovery: failed to start": "llama_server_start_failed",
    "llama-server discovery: server startup exited": "llama_server_exited",
    "llama-server device discovery took": "llama_server_discovery",
    "skipping pseudo-device with zero memory": "device_zero_memory",
    "skipping CUDA device — compute capability not in compiled architectures": "device_arch_dropped",
    CC_UNKNOWN: "arch_filter_disabled",
    ARCHS_UNKNOWN: "arch_filter_disabled",
    "could not verify NVIDIA driver compatibility for CUDA": "driver_unverified",
    "could not verify NVIDIA driver compatibility for an older NVIDIA GPU": "driver_unverified",
    "NVIDIA driver too old": "driver_too_old",
    "dropping integrated GPU; to enable, set OLLAMA_IGPU_ENABLE=1": "igpu_dropped",
    "native GPU discovery failed": "native_probe_failed",
    "starting llama-server": "runner_start",
    "llama-server terminated": "runner_exit",
}

# Kinds only the llama-server generation logs, and those only the runner-engine generation logs.
LLAMA_SERVER_KINDS = {
    "discovery_watchdog", "server_startup_timeout", "system_info_missing", "list_devices_failed",
    "llama_server_missing", "llama_server_start_failed", "llama_server_exited", "llama_server_discovery",
    "device_zero_memory", "device_arch_dropped", "arch_filter_disabled", "driver_unverified", "driver_too_old",
    "igpu_dropped", "native_probe_failed",
}
RUNNER_ENGINE_MESSAGES = {"failure during GPU discovery", "failed to start runner to discovery GPUs", "starting runner",
                          "llama runner terminated", "waiting for llama runner to start responding"}
LLAMA_SERVER_MESSAGES = {"failure during llama-server GPU discovery", "starting llama-server", "llama-server terminated"}
_RUNNER_DIED = re.compile(r"llama runner process (?:has terminated|no longer running)")
_LOAD_TIMEOUT = re.compile(r"timed out waiting for llama runner to start")
_LISTENING = re.compile(r"^Listening on (?P<addr>\S+) \(version (?P<version>[^)]+)\)")
_RUNNER_READY = re.compile(r"^llama runner started in (?P<seconds>[\d.]+) seconds")


def events(text: str) -> list[Event]:
    return events_from(records(text))


def events_from(recs: list[Record]) -> list[Event]:
    out: list[Event] = []
    for rec in recs:
        out.extend(_classify(rec))
    return out


def _classify(rec: Record) -> list[Event]:
    found: list[Event] = []

    def add(kind: str, **data: object) -> None:
        found.append(Event(kind, rec.line, rec.text, rec.time, {k: v for k, v in data.items() if v is not None}))

    if rec.is_slog:
        msg, a = rec.msg or "", rec.attrs
        base = {"source": rec.source, "level": rec.level}
        kind = SLOG_KINDS.get(msg)
        if m := _LISTENING.match(msg):
            add("server_start", address=m.group("addr"), version=m.group("version"), **base)
        elif m := _RUNNER_READY.match(msg):
            add("runner_ready", seconds=float(m.group("seconds")), **base)
        elif kind == "bootstrap":
            add(
                kind,
                seconds=parse_go_duration(a.get("duration", "")),
                libdirs=parse_go_list(a.get("OLLAMA_LIBRARY_PATH", "")),
                extra_envs=parse_go_map(a.get("extra_envs", "")),
                **base,
            )
        elif kind in ("discovery_end", "vram_refresh"):
            add(kind, seconds=parse_go_duration(a.get("duration", "")), **base)
        elif kind == "filter_evaluation":
            count = a.get("initial_count", "")
            add(kind, initial_count=int(count) if count.isdigit() else None, **base)
        elif kind == "server_config":
            add(kind, env=parse_go_map(a.get("env", "")), **base)
        elif kind == "discovery_failure":
            error = a.get("error", "")
            add(
                kind,
                error=error,
                detail=a.get("detail"),
                generation=ollama_versions.LLAMA_SERVER if msg in LLAMA_SERVER_MESSAGES else ollama_versions.RUNNER_ENGINE,
                timeout="before timeout" in error or "deadline exceeded" in error,
                crashed="runner crashed" in error or "signal:" in error,
                libdirs=parse_go_list(a.get("OLLAMA_LIBRARY_PATH", "")),
                extra_envs=parse_go_map(a.get("extra_envs", "")),
                **base,
            )
        elif kind in ("discovery_watchdog", "server_startup_timeout", "system_info_missing", "llama_server_discovery",
                      "device_arch_dropped", "arch_filter_disabled", "llama_server_exited"):
            dirs = a.get("OLLAMA_LIBRARY_PATH", a.get("libDirs", ""))
            rest = {k: v for k, v in a.items() if k not in ("OLLAMA_LIBRARY_PATH", "libDirs", "archs", "duration")}
            add(kind, libdirs=parse_go_list(dirs), archs=parse_go_list(a["archs"]) if "archs" in a else None,
                seconds=parse_go_duration(a["duration"]) if "duration" in a else None,
                **({"extra_envs": parse_go_map(rest.pop("extra_envs"))} if "extra_envs" in rest else {}), **rest, **base)
        elif kind == "driver_too_old":
            driver = a.get("driver", "")
            add(kind, device=a.get("device"), compute=a.get("compute"), driver=driver,
                driver_major=int(driver) if driver.isdigit() else None, required_driver=a.get("required_driver"), **base)
        elif kind == "visible_devices_override":
            overridden = {k: v for k, v in a.items() if k.endswith(("VISIBLE_DEVICES", "DEVICE_ORDINAL", "GFX_VERSION"))}
            add(kind, variables=overridden, **base)
        elif kind == "inference_compute":
            keys = ("id", "filter_id", "library", "variant", "compute", "name", "description", "libdirs", "driver", "pci_id", "type", "total", "available")
            add(kind, **{k: a[k] for k in keys if k in a}, **base)
        elif kind is not None:
            add(kind, **a, **base)
        joined = " ".join([msg, *a.values()])
        if _LOAD_TIMEOUT.search(joined):
            add("load_timeout", error=a.get("error", msg), **base)
        elif _RUNNER_DIED.search(joined) and kind != "runner_exit":
            add("runner_exit", error=a.get("error", msg), **base)
        return found
    for pattern, kind in PLAIN_PATTERNS:
        if m := pattern.search(rec.text):
            add(kind, **{k: v for k, v in m.groupdict().items() if v is not None})
            break
    return found


# ---------------------------------------------------------------- summary


@dataclass
class LogSummary:
    """What the log says about the latest server start."""

    sessions: int = 0
    recognised: int = 0  # lines that are Ollama's own (slog records or known plain messages), whatever wraps them
    lines: int = 0  # non-empty lines read
    first_line: str = ""  # the first non-empty line, to show what a log without Ollama lines holds
    debug: bool = False
    version: ollama_versions.VersionGuess = field(default_factory=ollama_versions.VersionGuess)
    server_env: dict[str, str] = field(default_factory=dict)
    bootstraps: list[Event] = field(default_factory=list)
    discovery_seconds: float | None = None
    initial_count: int | None = None
    verifying: list[Event] = field(default_factory=list)
    filtered: list[Event] = field(default_factory=list)
    failures: list[Event] = field(default_factory=list)
    compute: list[Event] = field(default_factory=list)
    backend_loaded: list[Event] = field(default_factory=list)
    backend_failed: list[Event] = field(default_factory=list)
    cuda_init: list[Event] = field(default_factory=list)
    crashes: list[Event] = field(default_factory=list)
    load_timeouts: list[Event] = field(default_factory=list)
    preload_ignored: list[Event] = field(default_factory=list)
    loader_errors: list[Event] = field(default_factory=list)
    skipped_libraries: list[Event] = field(default_factory=list)
    overrides: list[Event] = field(default_factory=list)
    # llama-server generation (v0.30+)
    generation: str | None = None
    generation_evidence: str | None = None
    watchdog: list[Event] = field(default_factory=list)
    startup_timeouts: list[Event] = field(default_factory=list)
    system_info_missing: list[Event] = field(default_factory=list)
    server_errors: list[Event] = field(default_factory=list)
    zero_memory: list[Event] = field(default_factory=list)
    arch_dropped: list[Event] = field(default_factory=list)
    arch_unchecked: list[Event] = field(default_factory=list)
    driver_too_old: list[Event] = field(default_factory=list)
    driver_unverified: list[Event] = field(default_factory=list)
    igpu_dropped: list[Event] = field(default_factory=list)
    native_failed: list[Event] = field(default_factory=list)
    gaps: list[tuple[Event, Event, float]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    @property
    def has_discovery(self) -> bool:
        return bool(self.compute or self.bootstraps)

    @property
    def gpu_devices(self) -> list[Event]:
        return [e for e in self.compute if e.data.get("library", "").lower() not in ("cpu", "")]

    @property
    def cpu_fallback(self) -> bool:
        return bool(self.compute) and not self.gpu_devices

    @property
    def driver(self) -> str | None:
        for event in self.compute + self.verifying:
            if event.data.get("driver"):
                return event.data["driver"]
        return None

    def gpu_bootstraps(self) -> list[Event]:
        """Bootstrap runs that were given a GPU library folder (not just lib/ollama)."""
        return [e for e in self.bootstraps if len(e.data.get("libdirs", [])) > 1 and not e.data.get("extra_envs")]

    def to_dict(self) -> dict:
        return {
            "sessions": self.sessions,
            "debug": self.debug,
            "version": self.version.to_dict(),
            "cpu_fallback": self.cpu_fallback,
            "gpu_devices": [e.data for e in self.gpu_devices],
            "compute": [e.data for e in self.compute],
            "discovery_seconds": self.discovery_seconds,
            "bootstraps": [
                {"libdirs": e.data.get("libdirs"), "seconds": e.data.get("seconds"), "extra_envs": e.data.get("extra_envs")}
                for e in self.bootstraps
            ],
            "initial_count": self.initial_count,
            "verifying": [e.data for e in self.verifying],
            "filtered": [e.data for e in self.filtered],
            "failures": [e.data for e in self.failures],
            "backend_loaded": [e.data for e in self.backend_loaded],
            "backend_failed": [e.data for e in self.backend_failed],
            "crashes": [e.text for e in self.crashes],
            "load_timeouts": [e.text for e in self.load_timeouts],
            "preload_ignored": [e.data for e in self.preload_ignored],
            "gaps": [{"after_line": a.line, "before_line": b.line, "seconds": s} for a, b, s in self.gaps],
            "generation": self.generation,
            "generation_evidence": self.generation_evidence,
            "dropped": {
                "zero_memory": [e.data for e in self.zero_memory],
                "compute_capability": [e.data for e in self.arch_dropped],
                "nvidia_driver": [e.data for e in self.driver_too_old],
                "integrated": [e.data for e in self.igpu_dropped],
            },
            "driver_unverified": bool(self.driver_unverified),
            "watchdog": [e.data for e in self.watchdog + self.startup_timeouts],
            "system_info_missing": bool(self.system_info_missing),
            "server_errors": [e.data for e in self.server_errors],
            "events": len(self.events),
            "recognised_lines": self.recognised,
        }


_STARTS = ("server_start", "server_config")
_PRESTART_KINDS = {"preload_ignored", "library_missing", "symbol_error"}


def latest_session(evts: list[Event]) -> tuple[list[Event], int]:
    """Events since the last server start, and how many starts the log shows.

    Without a start line, the last discovery start or, failing that, the last pause of more than
    ten minutes separates runs (pasted excerpts from several days).
    """
    starts = [i for i, e in enumerate(evts) if e.kind in _STARTS]
    # `server config` and `Listening on` come together; count a start once.
    distinct = [i for n, i in enumerate(starts) if n == 0 or i - starts[n - 1] > 3 or evts[i].kind == evts[starts[n - 1]].kind]
    if distinct:
        start = distinct[-1]
        # The loader's own complaints (a bad preload) come before the server's first line.
        while start > 0 and evts[start - 1].kind in _PRESTART_KINDS:
            start -= 1
        return evts[start:], len(distinct)
    boundaries = [i for i, e in enumerate(evts) if e.kind == "discovery_start"]
    if not boundaries:
        timed = [(i, e.time) for i, e in enumerate(evts) if e.time is not None]
        for (_, t1), (j, t2) in zip(timed, timed[1:]):
            try:
                if (t2 - t1) / timedelta(seconds=1) > SESSION_PAUSE_S:  # type: ignore[operator]
                    boundaries.append(j)
            except TypeError:
                continue
    return (evts[boundaries[-1] :] if boundaries else evts), 0


def summarize(text: str) -> LogSummary:
    recs = records(text)
    evts = events_from(recs)
    session, starts = latest_session(evts)
    first_line = session[0].line if session and len(session) < len(evts) else 0
    s = LogSummary(sessions=starts, events=session)
    s.recognised = sum(1 for r in recs if r.is_slog or _looks_like_ollama(r.text))
    read = [line for line in text.splitlines() if line.strip()]
    s.lines, s.first_line = len(read), (read[0][:200] if read else "")
    s.debug = any(r.level == "DEBUG" for r in recs if r.line >= first_line)
    exact = next((e.data["version"] for e in reversed(evts) if e.kind == "server_start"), None)
    observations = [(r.msg or "", r.source) for r in recs if r.is_slog and r.source and r.line >= first_line]
    s.version = ollama_versions.infer(observations, exact)  # type: ignore[arg-type]
    buckets = {
        "bootstrap": s.bootstraps,
        "device_verifying": s.verifying,
        "device_filtered": s.filtered,
        "discovery_failure": s.failures,
        "backend_loaded": s.backend_loaded,
        "backend_load_failed": s.backend_failed,
        "cuda_init": s.cuda_init,
        "cuda_init_failed": s.cuda_init,
        "runner_crash": s.crashes,
        "runner_exit": s.crashes,
        "load_timeout": s.load_timeouts,
        "preload_ignored": s.preload_ignored,
        "symbol_error": s.loader_errors,
        "library_missing": s.loader_errors,
        "library_skipped": s.skipped_libraries,
        "visible_devices_override": s.overrides,
        "discovery_watchdog": s.watchdog,
        "server_startup_timeout": s.startup_timeouts,
        "system_info_missing": s.system_info_missing,
        "list_devices_failed": s.server_errors,
        "llama_server_missing": s.server_errors,
        "llama_server_start_failed": s.server_errors,
        "device_zero_memory": s.zero_memory,
        "device_arch_dropped": s.arch_dropped,
        "arch_filter_disabled": s.arch_unchecked,
        "driver_too_old": s.driver_too_old,
        "driver_unverified": s.driver_unverified,
        "igpu_dropped": s.igpu_dropped,
        "native_probe_failed": s.native_failed,
    }
    for event in session:
        if event.kind in buckets:
            buckets[event.kind].append(event)
        elif event.kind == "server_config":
            s.server_env = event.data.get("env", {})
        elif event.kind == "discovery_end":
            s.discovery_seconds = event.data.get("seconds")
        elif event.kind == "filter_evaluation":
            s.initial_count = event.data.get("initial_count")
    s.compute = _last_compute_group(session)
    s.gaps = _gaps(session)
    s.generation, s.generation_evidence = _generation(s, [r.msg for r in recs if r.is_slog and r.line >= first_line])
    return s


# `server config` keys that appear (or disappear) exactly at v0.30.0 (envconfig/config.go, checked per tag).
_LLAMA_SERVER_ENV = ("LLAMA_ARG_FIT", "LLAMA_ARG_FIT_TARGET", "OLLAMA_IGPU_ENABLE", "OLLAMA_GO_TEMPLATE")
_RUNNER_ENGINE_ENV = ("OLLAMA_NEW_ENGINE", "OLLAMA_MULTIUSER_CACHE")


def _generation(s: LogSummary, messages: list[str | None]) -> tuple[str | None, str | None]:
    """The discovery generation this log comes from, and why: version, then `server config` keys, then messages."""
    if generation := s.version.generation:
        return generation, f"version: {s.version.describe()}"
    if key := next((k for k in _LLAMA_SERVER_ENV if k in s.server_env), None):
        return ollama_versions.LLAMA_SERVER, f"server config has {key} (v0.30.0+)"
    if key := next((k for k in _RUNNER_ENGINE_ENV if k in s.server_env), None):
        return ollama_versions.RUNNER_ENGINE, f"server config has {key} (before v0.30.0)"
    if event := next((e for e in s.events if e.kind in LLAMA_SERVER_KINDS), None):
        return ollama_versions.LLAMA_SERVER, f"log line {event.line} is only logged by v0.30.0+"
    if msg := next((m for m in messages if m in LLAMA_SERVER_MESSAGES), None):
        return ollama_versions.LLAMA_SERVER, f"{msg!r} is only logged by v0.30.0+"
    if msg := next((m for m in messages if m in RUNNER_ENGINE_MESSAGES), None):
        return ollama_versions.RUNNER_ENGINE, f"{msg!r} is only logged before v0.30.0"
    return None, None


def _last_compute_group(session: list[Event]) -> list[Event]:
    group: list[Event] = []
    previous = None
    for index, event in enumerate(session):
        if event.kind != "inference_compute":
            continue
        if previous is None or index - previous > 1:
            group = []
        group.append(event)
        previous = index
    return group


def _gaps(session: list[Event], threshold: float = SLOW_BOOTSTRAP_S) -> list[tuple[Event, Event, float]]:
    """Pauses of about the discovery timeout between consecutive discovery events."""
    discovery = [e for e in session if e.time is not None and e.kind in _DISCOVERY_KINDS]
    out = []
    for a, b in zip(discovery, discovery[1:]):
        try:
            delta = (b.time - a.time) / timedelta(seconds=1)  # type: ignore[operator]
        except TypeError:
            continue
        if delta >= threshold:
            out.append((a, b, delta))
    return out


_DISCOVERY_KINDS = {
    "discovery_start",
    "bootstrap",
    "filter_evaluation",
    "device_verifying",
    "device_filtered",
    "discovery_failure",
    "discovery_end",
    "inference_compute",
}
