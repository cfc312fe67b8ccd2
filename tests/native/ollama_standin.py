"""Stand-in for the ollama binary: `runner --ollama-engine --port N` (GET /info) and a minimal `serve`."""

import ctypes
import glob
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

RTLD_NOW, RTLD_LOCAL, RTLD_GLOBAL = 2, 0, 0x100
LIB_OLLAMA = os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(sys.argv[0]))), "lib", "ollama")


class Props(ctypes.Structure):
    """struct ggml_backend_dev_props of the fake libggml-base (tests/native/ggml_fake.h)."""

    _fields_ = [
        ("name", ctypes.c_char_p), ("description", ctypes.c_char_p),
        ("memory_free", ctypes.c_size_t), ("memory_total", ctypes.c_size_t),
        ("type", ctypes.c_int), ("id", ctypes.c_char_p), ("library", ctypes.c_char_p),
        ("compute_major", ctypes.c_int), ("compute_minor", ctypes.c_int),
        ("driver_major", ctypes.c_int), ("driver_minor", ctypes.c_int),
    ]


def log(level, msg, **attrs):
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    parts = [f"time={stamp}", f"level={level}", "source=standin.go:1", f"msg={json.dumps(msg)}"]
    for key, value in attrs.items():
        text = str(value)
        quote = not text or any(c in text for c in ' ="')
        parts.append(f"{key}={json.dumps(text) if quote else text}")
    print(" ".join(parts), file=sys.stderr, flush=True)


def debug():
    return os.environ.get("OLLAMA_DEBUG", "") not in ("", "0", "false")


def load_devices():
    """Load every ggml backend of OLLAMA_LIBRARY_PATH like ggml's dynamic loader; GPU devices only."""
    dirs = [d for d in os.environ.get("OLLAMA_LIBRARY_PATH", "").split(os.pathsep) if d]
    try:
        base = ctypes.CDLL("libggml-base.so.0", mode=RTLD_GLOBAL)
    except OSError as err:
        print(f"ollama: error while loading shared libraries: {err}", file=sys.stderr, flush=True)
        sys.exit(127)
    base.ggml_backend_reg_name.restype = ctypes.c_char_p
    base.ggml_backend_reg_name.argtypes = [ctypes.c_void_p]
    base.ggml_backend_reg_dev_count.restype = ctypes.c_size_t
    base.ggml_backend_reg_dev_count.argtypes = [ctypes.c_void_p]
    base.ggml_backend_reg_dev_get.restype = ctypes.c_void_p
    base.ggml_backend_reg_dev_get.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    base.ggml_backend_dev_get_props.argtypes = [ctypes.c_void_p, ctypes.POINTER(Props)]
    devices = []
    for d in dirs:
        for path in sorted(glob.glob(os.path.join(d, "libggml-*.so"))):
            if os.path.basename(path).startswith("libggml-base"):
                continue
            try:
                lib = ctypes.CDLL(path, mode=RTLD_NOW | RTLD_LOCAL)
            except OSError as err:
                print(f"load_backend: failed to load {path}: {err}", file=sys.stderr, flush=True)
                continue
            try:
                init = lib.ggml_backend_init
            except AttributeError:
                continue
            init.restype = ctypes.c_void_p
            reg = init()
            if not reg:
                continue
            name = base.ggml_backend_reg_name(reg).decode()
            print(f"load_backend: loaded {name} backend from {path}", file=sys.stderr, flush=True)
            for i in range(base.ggml_backend_reg_dev_count(reg)):
                props = Props()
                base.ggml_backend_dev_get_props(base.ggml_backend_reg_dev_get(reg, i), ctypes.byref(props))
                devices.append({
                    "id": props.id.decode(), "backend": props.library.decode(),
                    "name": props.name.decode(), "description": props.description.decode(),
                    "total_memory": props.memory_total, "free_memory": props.memory_free,
                    "ComputeMajor": props.compute_major, "ComputeMinor": props.compute_minor,
                    "driver_major": props.driver_major, "driver_minor": props.driver_minor,
                    "LibraryPath": dirs,
                })
    return devices


def runner(args):
    port = int(args[args.index("--port") + 1])
    cache = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path != "/info":
                self.send_error(404)
                return
            if not cache:
                cache.append(load_devices())
            body = json.dumps(cache[0]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    log("INFO", "starting ollama engine")
    http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bootstrap(dirs, extra, timeout):
    port = free_port()
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(dirs + [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p])
    env["OLLAMA_LIBRARY_PATH"] = os.pathsep.join(dirs)
    env.update(extra)
    start = time.monotonic()
    out = None if debug() else subprocess.DEVNULL
    child = subprocess.Popen([sys.argv[0], "runner", "--ollama-engine", "--port", str(port)], env=env,
                             stdout=out, stderr=out)
    devices = []
    try:
        while time.monotonic() - start < timeout:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/info", timeout=timeout) as resp:
                    devices = json.load(resp)
                    break
            except OSError:
                if child.poll() is not None:
                    log("INFO", "failure during GPU discovery", OLLAMA_LIBRARY_PATH=dirs, error="runner crashed")
                    break
                time.sleep(0.01)
    finally:
        child.kill()
        child.wait()
    if debug():
        log("DEBUG", "bootstrap discovery took", duration=f"{time.monotonic() - start:.3f}s",
            OLLAMA_LIBRARY_PATH=dirs, extra_envs=extra)
    return devices


def human(n):
    return f"{n / 2**30:.1f} GiB"


def serve():
    timeout = float(os.environ.get("STANDIN_DISCOVERY_TIMEOUT", "30"))
    requested = os.environ.get("OLLAMA_LLM_LIBRARY", "")
    # Like Ollama's routes.Serve: listen (and say so) first, then discover the GPUs.
    host, _, port = os.environ.get("OLLAMA_HOST", "127.0.0.1:11434").rpartition(":")

    class Api(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"models": []}).encode() if self.path == "/api/ps" else b"Ollama is running"
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    server = http.server.HTTPServer((host or "127.0.0.1", int(port)), Api)
    log("INFO", f"Listening on {host or '127.0.0.1'}:{port} (version 0.0.0-standin)")
    log("INFO", "discovering available GPUs...")
    devices = []
    for d in sorted({os.path.dirname(f) for f in glob.glob(os.path.join(LIB_OLLAMA, "*", "*ggml-*"))}):
        if requested and os.path.basename(d) != requested:
            if debug():
                log("DEBUG", "skipping available library at user's request", requested=requested, libDir=d)
            continue
        devices += bootstrap([LIB_OLLAMA, d], {}, timeout)
    if debug():
        log("DEBUG", "evaluating which, if any, devices to filter out", initial_count=len(devices))
    kept = []
    for dev in devices:
        if dev["backend"] == "CUDA":
            if debug():
                log("DEBUG", "verifying if device is supported", library=dev["LibraryPath"][-1],
                    description=dev["description"], compute=f"{dev['ComputeMajor']}.{dev['ComputeMinor']}", id=dev["id"])
            if not bootstrap(dev["LibraryPath"], {"CUDA_VISIBLE_DEVICES": dev["id"], "GGML_CUDA_INIT": "1"}, timeout):
                if debug():
                    log("DEBUG", "filtering device which didn't fully initialize", id=dev["id"],
                        libdir=dev["LibraryPath"][-1], library=dev["backend"])
                continue
        kept.append(dev)
    for dev in kept:
        libdirs = ",".join(os.path.basename(p) for p in dev["LibraryPath"] if os.path.join("lib", "ollama") in p)
        log("INFO", "inference compute", id=dev["id"], library=dev["backend"],
            compute=f"{dev['ComputeMajor']}.{dev['ComputeMinor']}", name=dev["name"], description=dev["description"],
            libdirs=libdirs, driver=f"{dev['driver_major']}.{dev['driver_minor']}", pci_id="", type="discrete",
            total=human(dev["total_memory"]), available=human(dev["free_memory"]))
    if not kept:
        log("INFO", "inference compute", id="cpu", library="cpu", compute="", name="cpu", description="cpu",
            libdirs="ollama", driver="", pci_id="", type="", total="1.0 GiB", available="1.0 GiB")
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    server.serve_forever()


if __name__ == "__main__":
    if sys.argv[1:2] == ["runner"]:
        runner(sys.argv[2:])
    elif sys.argv[1:2] == ["serve"]:
        serve()
    else:
        print("usage: ollama serve | ollama runner --ollama-engine --port N", file=sys.stderr)
        sys.exit(2)
