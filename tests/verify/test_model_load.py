"""`verify --service --model`: load a model through Ollama's API and require it in GPU memory.

No ollama binary can be had here (see DESIGN.md), so `OllamaStandIn` is a stand-in for Ollama's HTTP API
on 127.0.0.1, answering the two calls verify makes in the shapes of Ollama v0.32.15:
POST /api/generate with an empty prompt loads the model and answers done_reason "load"
(server/routes.go:478-485); an unknown model is a 404 {"error": ...}; GET /api/ps lists
{"models": [{"name", "model", "size", "size_vram", ...}]} (server/routes.go:2271-2300, api/types.go:817-844).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fixer.verify.layers import Check
from fixer.verify.model_load import Address, check_after_service, check_model, ollama_address


class OllamaStandIn(ThreadingHTTPServer):
    """Ollama's /api/generate and /api/ps over real HTTP; `models` maps a pullable name to (size, size_vram)."""

    def __init__(self, models: dict[str, tuple[int, int]]):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.models, self.loaded, self.requests = models, {}, []


class _Handler(BaseHTTPRequestHandler):
    server: OllamaStandIn

    def _reply(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(("POST", self.path, body))
        name = body["model"] if ":" in body["model"] else body["model"] + ":latest"
        if self.path != "/api/generate" or name not in self.server.models:
            self._reply(404, {"error": f"model '{body['model']}' not found"})
            return
        self.server.loaded[name] = self.server.models[name]
        self._reply(200, {"model": body["model"], "created_at": "2026-08-20T09:00:00Z", "response": "", "done": True,
                          "done_reason": "load"})

    def do_GET(self) -> None:  # noqa: N802
        self.server.requests.append(("GET", self.path, None))
        shown = lambda n: n.removesuffix(":latest")  # noqa: E731 - DisplayShortest drops the default tag
        self._reply(200, {"models": [{"name": shown(n), "model": shown(n), "size": size, "size_vram": vram,
                                      "digest": "0" * 64, "expires_at": "2026-08-20T09:10:00Z", "context_length": 4096}
                                     for n, (size, vram) in self.server.loaded.items()]})

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def ollama():
    servers = []

    def start(models: dict[str, tuple[int, int]]) -> dict[str, str]:
        """Serve `models`; returns the unit environment that points verify at it."""
        server = OllamaStandIn(models)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return {"OLLAMA_HOST": f"127.0.0.1:{server.server_address[1]}"}

    start.servers = servers  # type: ignore[attr-defined]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_model_in_gpu_memory_passes(ollama):
    env = ollama({"llama3.2:latest": (3_000_000_000, 2_900_000_000)})
    check = check_model(env, "llama3.2")
    assert check.status == "pass" and check.details["size_vram"] == 2_900_000_000
    assert "size_vram=2900000000" in check.evidence[-1]


def test_the_load_request_is_an_empty_prompt_with_keep_alive(ollama):
    check_model(ollama({"qwen3:0.6b": (500, 500)}), "qwen3:0.6b")
    (method, path, body), (method2, path2, _) = ollama.servers[0].requests
    assert (method, path, method2, path2) == ("POST", "/api/generate", "GET", "/api/ps")
    assert body == {"model": "qwen3:0.6b", "prompt": "", "keep_alive": "10m", "stream": False}


def test_model_in_system_memory_fails(ollama):
    check = check_model(ollama({"llama3.2:latest": (3_000_000_000, 0)}), "llama3.2:latest")
    assert check.status == "fail" and "size_vram=0" in check.summary and "doctor" in check.fix


def test_unknown_model_fails_with_the_api_error(ollama):
    check = check_model(ollama({}), "nosuch")
    assert check.status == "fail" and "HTTP 404" in check.summary and "model 'nosuch' not found" in check.cause


def test_no_listener_fails_within_the_timeout(ollama):
    env = ollama({})
    port = env["OLLAMA_HOST"].rsplit(":", 1)[1]
    check = check_model({"OLLAMA_HOST": f"127.0.0.1:{int(port) + 1 if int(port) < 65535 else 1}"}, "m", load_timeout=5)
    assert check.status == "fail" and "no answer" in check.summary


def test_no_model_is_a_clear_skip():
    check = check_model({}, None)
    assert check.status == "skip" and check.summary.startswith("skipped: no --model given")


def test_model_is_not_loaded_when_the_service_check_failed():
    failed = Check("service", "fail", "ollama.service fell back to the CPU")
    check = check_after_service(failed, {}, "llama3.2")
    assert check.status == "skip" and "fell back to the CPU" in check.summary


@pytest.mark.parametrize(
    "value, address",
    [
        (None, Address("http", "127.0.0.1", 11434)),
        ("", Address("http", "127.0.0.1", 11434)),
        ("0.0.0.0", Address("http", "127.0.0.1", 11434)),
        ("0.0.0.0:8080", Address("http", "127.0.0.1", 8080)),
        ("[::]:11434", Address("http", "::1", 11434)),
        ("http://10.0.0.5", Address("http", "10.0.0.5", 80)),
        ("https://ollama.local:8443/api", Address("https", "ollama.local", 8443)),
        ('"127.0.0.1:9999"', Address("http", "127.0.0.1", 9999)),
        ("example.com:99999", Address("http", "example.com", 11434)),
    ],
)
def test_ollama_host_is_read_as_ollamas_client_reads_it(value, address):
    """envconfig.Host + ConnectableHost, v0.32.15 envconfig/config.go:22-82."""
    assert ollama_address({} if value is None else {"OLLAMA_HOST": value}) == address


def test_model_without_service_is_invalid_input(cli, tmp_path):
    done = cli("verify", "--profile", "h100-vgpu", "--root", str(tmp_path), "--model", "llama3.2")
    assert done.returncode == 3 and "--model" in done.stderr and "Traceback" not in done.stderr


def test_a_non_numeric_size_vram_is_a_failure_not_a_traceback(ollama):
    check = check_model(ollama({"llama3.2:latest": (3_000_000_000, "lots")}), "llama3.2")
    assert check.status == "fail" and "gave no number" in check.summary
    assert "size_vram='lots'" in check.evidence[-1]
