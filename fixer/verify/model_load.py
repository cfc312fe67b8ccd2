"""Proof past discovery: load a model through Ollama's HTTP API and require part of it in GPU memory."""

from __future__ import annotations

import ipaddress
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Mapping

from fixer.model.verify import Check

# Loading a model through a shim can take minutes (the profiles set OLLAMA_LOAD_TIMEOUT=15m); /api/ps is instant.
LOAD_TIMEOUT_S, PS_TIMEOUT_S = 900.0, 10.0
KEEP_ALIVE = "10m"  # keep it loaded long enough to be read back from /api/ps


@dataclass(frozen=True)
class Address:
    scheme: str
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def ollama_address(env: Mapping[str, str]) -> Address:
    """Where the service listens, read from OLLAMA_HOST as Ollama's client reads it.

    Follows envconfig.Host and ConnectableHost (v0.32.15 envconfig/config.go:22-82): no scheme means http
    with port 11434; an explicit http:// or https:// without a port means 80 or 443; an unspecified
    bind address (0.0.0.0, ::) is reached on the loopback of the same family.
    """
    raw = env.get("OLLAMA_HOST", "").strip().strip("\"'")
    scheme, sep, hostport = raw.partition("://")
    default_port = 11434
    if not sep:
        scheme, hostport = "http", raw
    elif scheme in ("http", "https"):
        default_port = 80 if scheme == "http" else 443
    hostport = hostport.split("/", 1)[0]
    host, port = _split_host_port(hostport)
    if host is None:
        host, port = (hostport.strip("[]") or "127.0.0.1"), default_port
    if port is None or not 0 <= port <= 65535:
        port = default_port
    try:
        ip = ipaddress.ip_address(host)
        if ip.is_unspecified:
            host = "127.0.0.1" if ip.version == 4 else "::1"
    except ValueError:
        pass
    return Address(scheme, host, port)


def _split_host_port(text: str) -> tuple[str | None, int | None]:
    """Go's net.SplitHostPort for the forms OLLAMA_HOST takes: `h:p`, `[v6]:p`; (None, None) without a port."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or not text[end + 1:].startswith(":"):
            return None, None
        host, port = text[1:end], text[end + 2:]
    else:
        if text.count(":") != 1:
            return None, None
        host, port = text.split(":")
    return host, int(port) if port.isdigit() else None


ANSWER_LIMIT = 4 << 20  # bytes of one answer of the service's API read (/api/ps of many models: a few KiB)


def _call(address: Address, method: str, path: str, body: dict | None, timeout: float) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(address.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - a local http(s) URL
        raw = response.read(ANSWER_LIMIT + 1)
    if len(raw) > ANSWER_LIMIT:
        raise ValueError(f"{path}: the service's answer is larger than {ANSWER_LIMIT} bytes")
    answer = json.loads(raw.decode("utf-8") or "{}")
    if not isinstance(answer, dict):
        raise ValueError(f"{path}: the service answered {type(answer).__name__}, not a JSON object")
    return answer


def _names(model: str) -> set[str]:
    """The names /api/ps may list the model under (it shows the shortest display name)."""
    return {model, model.removesuffix(":latest"), model if ":" in model else f"{model}:latest"}


def check_model(env: Mapping[str, str], model: str | None, load_timeout: float = LOAD_TIMEOUT_S) -> Check:
    """POST /api/generate with an empty prompt (Ollama loads the model and answers done_reason "load",
    v0.32.15 server/routes.go:478-485), then GET /api/ps (:2271-2300): the model must have size_vram > 0."""
    if not model:
        return Check("model", "skip", "skipped: no --model given (a model load proves the GPU past discovery)")
    address = ollama_address(env)
    evidence = [f"Ollama API at {address.url} (OLLAMA_HOST={env.get('OLLAMA_HOST', '(unset)')})"]
    try:
        loaded = _call(address, "POST", "/api/generate", {"model": model, "prompt": "", "keep_alive": KEEP_ALIVE,
                                                          "stream": False}, load_timeout)
        evidence.append(f"POST /api/generate: done_reason={loaded.get('done_reason')!r}")
        ps = _call(address, "GET", "/api/ps", None, PS_TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        detail = _error_text(exc)
        return Check("model", "fail", f"Ollama refused to load {model}: HTTP {exc.code}", evidence + [detail],
                     f"the API answered {exc.code}: {detail}",
                     f"check the model name (`ollama list`) or pull it: `ollama pull {model}`")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return Check("model", "fail", f"no answer from Ollama's API at {address.url}", evidence + [str(reason)],
                     f"the request failed: {reason}",
                     "check the service is running and OLLAMA_HOST in its unit names where it listens")
    entries = [m for m in ps.get("models") or [] if isinstance(m, dict)]
    entry = next((m for m in entries if {m.get("name"), m.get("model")} & _names(model)), None)
    if entry is None:
        listed = ", ".join(str(m.get("name")) for m in entries) or "none"
        return Check("model", "fail", f"{model} is not among the loaded models after the load", evidence +
                     [f"GET /api/ps: {listed}"], "the model unloaded at once or loaded under another name",
                     "run `ollama ps` right after `ollama run MODEL ''` and compare")
    try:
        vram, size = int(entry.get("size_vram") or 0), int(entry.get("size") or 0)
    except (TypeError, ValueError):
        return Check("model", "fail", f"Ollama's /api/ps gave no number for {model}'s memory", evidence +
                     [f"GET /api/ps: size={entry.get('size')!r} size_vram={entry.get('size_vram')!r}"],
                     "the API answered something that is not Ollama's /api/ps", "check what listens at OLLAMA_HOST")
    evidence.append(f"GET /api/ps: {entry.get('name')} size={size} size_vram={vram}")
    if vram > 0:
        share = f" ({100 * vram // size}% of {size} bytes)" if size else ""
        return Check("model", "pass", f"{model} loaded with {vram} bytes in GPU memory{share}", evidence,
                     details={"name": entry.get("name"), "size": size, "size_vram": vram})
    return Check("model", "fail", f"{model} loaded entirely into system memory (size_vram=0)", evidence,
                 "the service found no usable GPU, or the scheduler placed no layer on it",
                 "run `vgpu-fix doctor --journal` for why the GPU was not used",
                 {"name": entry.get("name"), "size": size, "size_vram": vram})


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        body = exc.read(ANSWER_LIMIT).decode("utf-8", "replace")
        return str(json.loads(body).get("error") or body)[:300]
    except (ValueError, OSError, AttributeError):
        return str(exc.reason)


def check_after_service(service: Check, env: Mapping[str, str], model: str | None) -> Check:
    """The model layer of `verify --service`: run only when the service reported the GPU."""
    if model and service.status != "pass":
        return Check("model", "skip", f"skipped: the service check did not pass ({service.summary})")
    return check_model(env, model)
