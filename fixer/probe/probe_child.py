"""Load a ggml backend like Ollama's runner does and report each step as a JSON line (stdlib only)."""

# Run as `python -I probe_child.py CONFIG_JSON` in a fresh process whose environment is the one to
# test (glibc reads LD_PRELOAD only at exec). CONFIG: base (name or path of libggml-base), backend
# (path). Events go to the original stdout, one JSON object per line, flushed before each risky
# step so that a crash or hang is attributed to the step that caused it; anything the libraries
# print goes to stderr.

from __future__ import annotations

import ctypes
import json
import os
import sys

RTLD_NOW, RTLD_GLOBAL, RTLD_LOCAL, RTLD_NOLOAD = 0x2, 0x100, 0x0, 0x4
RTLD_DI_LINKMAP = 2
DRIVER_SYMBOLS = ("cuInit", "cuDriverGetVersion", "cuDeviceGetCount")
OUT = os.dup(1)
os.dup2(2, 1)


def emit(event: str, **data) -> None:
    os.write(OUT, (json.dumps({"event": event, **data}) + "\n").encode())


class DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


class PhdrInfo(ctypes.Structure):
    _fields_ = [("dlpi_addr", ctypes.c_void_p), ("dlpi_name", ctypes.c_char_p)]


class LinkMap(ctypes.Structure):
    _fields_ = [("l_addr", ctypes.c_void_p), ("l_name", ctypes.c_char_p)]


# The process's own global scope: lookups here find a preloaded interposer first, as ggml's would.
GLOBAL = ctypes.CDLL(None)
GLOBAL.dlopen.restype = ctypes.c_void_p
GLOBAL.dlopen.argtypes = [ctypes.c_char_p, ctypes.c_int]
GLOBAL.dlerror.restype = ctypes.c_char_p
GLOBAL.dlsym.restype = ctypes.c_void_p
GLOBAL.dlsym.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
GLOBAL.dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(DlInfo)]
GLOBAL.dlinfo.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]


def text(value) -> str | None:
    return None if value is None else value.decode("utf-8", "replace")


def loaded_objects() -> list[str]:
    names: list[str] = []
    callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(PhdrInfo), ctypes.c_size_t, ctypes.c_void_p)

    def visit(info, size, data):
        name = text(info.contents.dlpi_name)
        if name:
            names.append(name)
        return 0

    GLOBAL.dl_iterate_phdr(callback_type(visit), None)
    return names


def provider(symbol: str) -> str | None:
    """The file whose definition of `symbol` the global scope resolves to."""
    address = GLOBAL.dlsym(None, symbol.encode())
    info = DlInfo()
    if address and GLOBAL.dladdr(address, ctypes.byref(info)):
        return text(info.dli_fname)
    return None


def path_of(handle: int) -> str | None:
    link = ctypes.POINTER(LinkMap)()
    if GLOBAL.dlinfo(handle, RTLD_DI_LINKMAP, ctypes.byref(link)) == 0 and link:
        return text(link.contents.l_name)
    return None


def dlopen(name: str, mode: int) -> tuple[int | None, str | None]:
    GLOBAL.dlerror()
    handle = GLOBAL.dlopen(name.encode(), mode)
    return handle, None if handle else text(GLOBAL.dlerror())


def function(handle: int, name: str, restype, argtypes):
    address = GLOBAL.dlsym(handle, name.encode())
    if not address:
        return None
    return ctypes.CFUNCTYPE(restype, *argtypes)(address)


def bound_provider(backend: int, symbol: str) -> str | None:
    """The file a reference of the backend to `symbol` binds to: global scope first, then its own."""
    address = GLOBAL.dlsym(None, symbol.encode()) or GLOBAL.dlsym(backend, symbol.encode())
    info = DlInfo()
    if address and GLOBAL.dladdr(address, ctypes.byref(info)):
        return text(info.dli_fname)
    return None


def cuda_report(backend: int) -> dict | None:
    """What the CUDA runtime the backend binds to says, and which libcuda.so.1 (if any) it reached."""
    runtime = bound_provider(backend, "cudaGetDeviceCount")
    if runtime is None:
        return None
    handle, _ = dlopen(runtime, RTLD_NOW | RTLD_NOLOAD)
    report: dict = {"runtime": runtime,
                    "driver_symbols": {s: bound_provider(backend, s) for s in DRIVER_SYMBOLS}}
    count, version = ctypes.c_int(0), ctypes.c_int(0)
    get_count = function(handle, "cudaGetDeviceCount", ctypes.c_int, [ctypes.POINTER(ctypes.c_int)])
    error_string = function(handle, "cudaGetErrorString", ctypes.c_char_p, [ctypes.c_int])
    if get_count is not None:
        emit("step", step="cudaGetDeviceCount")
        status = get_count(ctypes.byref(count))
        report.update(status=status, device_count=count.value,
                      error=text(error_string(status)) if error_string else None)
    for name in ("cudaDriverGetVersion", "cudaRuntimeGetVersion"):
        call = function(handle, name, ctypes.c_int, [ctypes.POINTER(ctypes.c_int)])
        if call is not None and call(ctypes.byref(version)) == 0:
            report[name] = version.value
    driver, _ = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD)
    report["libcuda"] = path_of(driver) if driver else None
    return report


def native_probe() -> None:
    """What `ollama gpu-discover` learns from the driver and NVML (v0.32.15 discover/native_probe_linux.go:
    249-351 probeCUDADriverLinux, :391-418 probeNVIDIADriverMajorLinux): libcuda.so.1 (then libcuda.so),
    cuInit(0), cuDriverGetVersion, per device compute capability and CU_DEVICE_ATTRIBUTE_INTEGRATED (18);
    only then libnvidia-ml.so.1 (then libnvidia-ml.so), nvmlInit_v2, nvmlSystemGetDriverVersion (80 bytes)."""
    report: dict = {"cuda": None, "nvml": None}
    emit("step", step="dlopen libcuda.so.1")
    cuda = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL)[0] or dlopen("libcuda.so", RTLD_NOW | RTLD_LOCAL)[0]
    if not cuda:
        report["cuda"] = {"ok": False, "error": "libcuda.so.1 not found"}
        emit("native", report=report)
        return
    intp = ctypes.POINTER(ctypes.c_int)
    init = function(cuda, "cuInit", ctypes.c_int, [ctypes.c_uint])
    emit("step", step="cuInit")
    status = init(0) if init else -1
    entry: dict = {"ok": status == 0, "path": path_of(cuda), "cuInit": status, "devices": []}
    report["cuda"] = entry
    if status != 0:
        emit("native", report=report)
        return
    value = ctypes.c_int(0)
    version = function(cuda, "cuDriverGetVersion", ctypes.c_int, [intp])
    if version and version(ctypes.byref(value)) == 0:
        entry["driver_version"] = value.value
    count = function(cuda, "cuDeviceGetCount", ctypes.c_int, [intp])
    attribute = function(cuda, "cuDeviceGetAttribute", ctypes.c_int, [intp, ctypes.c_int, ctypes.c_int])
    if count and count(ctypes.byref(value)) == 0 and attribute:
        for index in range(value.value):
            device = {"index": index}
            for name, code in (("compute_major", 75), ("compute_minor", 76), ("integrated", 18)):
                out = ctypes.c_int(0)
                if attribute(ctypes.byref(out), code, index) == 0:
                    device[name] = out.value
            entry["devices"].append(device)
    emit("step", step="dlopen libnvidia-ml.so.1")
    nvml = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL)[0] or dlopen("libnvidia-ml.so", RTLD_NOW | RTLD_LOCAL)[0]
    if not nvml:
        report["nvml"] = {"ok": False, "error": "libnvidia-ml.so.1 not found"}
        emit("native", report=report)
        return
    nvml_init = function(nvml, "nvmlInit_v2", ctypes.c_int, [])
    shutdown = function(nvml, "nvmlShutdown", ctypes.c_int, [])
    get_version = function(nvml, "nvmlSystemGetDriverVersion", ctypes.c_int, [ctypes.c_char_p, ctypes.c_uint])
    found = {"ok": False, "path": path_of(nvml)}
    report["nvml"] = found
    if not (nvml_init and shutdown and get_version):
        found["error"] = "nvmlInit_v2, nvmlShutdown or nvmlSystemGetDriverVersion missing"
    else:
        emit("step", step="nvmlInit_v2")
        found["nvmlInit_v2"] = nvml_init()
        if found["nvmlInit_v2"] == 0:
            buffer = ctypes.create_string_buffer(80)
            emit("step", step="nvmlSystemGetDriverVersion")
            found["status"] = get_version(buffer, 80)
            found["ok"] = found["status"] == 0
            found["driver_version"] = text(buffer.value)
            shutdown()
    emit("native", report=report)


def main() -> None:
    config = json.loads(sys.argv[1])
    if config.get("probe") == "native":
        native_probe()
        emit("done", loaded=loaded_objects())
        return
    emit("start", pid=os.getpid(), uid=os.getuid(), comm=open("/proc/self/comm").read().strip(),
         LD_PRELOAD=os.environ.get("LD_PRELOAD"), LD_LIBRARY_PATH=os.environ.get("LD_LIBRARY_PATH"),
         loaded=loaded_objects(), dlopen_provider=provider("dlopen"), dlsym_provider=provider("dlsym"))
    emit("step", step="load base")
    base, error = dlopen(config["base"], RTLD_NOW | RTLD_GLOBAL)
    emit("base", ok=bool(base), path=path_of(base) if base else None, dlerror=error)
    if not base:
        return
    emit("step", step="dlopen backend")
    backend, error = dlopen(config["backend"], RTLD_NOW | RTLD_LOCAL)
    emit("backend", ok=bool(backend), path=path_of(backend) if backend else None, dlerror=error)
    if not backend:
        emit("done", loaded=loaded_objects())
        return
    score = function(backend, "ggml_backend_score", ctypes.c_int, [])
    if score is not None:
        emit("step", step="ggml_backend_score")
        value = score()
        emit("score", score=value)
        if value == 0:  # ggml's loader: "not supported on this system", ggml_backend_init() is never called
            emit("done", loaded=loaded_objects())
            return
    init = function(backend, "ggml_backend_init", ctypes.c_void_p, [])
    if init is None:
        emit("init", ok=False, error="ggml_backend_init not found in the backend")
        return
    emit("step", step="ggml_backend_init")
    reg = init()
    # struct ggml_backend_reg starts with `int api_version`, which ggml's loader compares with its own
    emit("init", ok=bool(reg), api_version=ctypes.c_int.from_address(reg).value if reg else None)
    if reg:
        reg_name = function(base, "ggml_backend_reg_name", ctypes.c_char_p, [ctypes.c_void_p])
        dev_count = function(base, "ggml_backend_reg_dev_count", ctypes.c_size_t, [ctypes.c_void_p])
        dev_get = function(base, "ggml_backend_reg_dev_get", ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_size_t])
        dev_name = function(base, "ggml_backend_dev_name", ctypes.c_char_p, [ctypes.c_void_p])
        dev_description = function(base, "ggml_backend_dev_description", ctypes.c_char_p, [ctypes.c_void_p])
        dev_memory = function(base, "ggml_backend_dev_memory", None,
                              [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(ctypes.c_size_t)])
        missing = [n for n, f in (("ggml_backend_reg_name", reg_name), ("ggml_backend_reg_dev_count", dev_count),
                                  ("ggml_backend_reg_dev_get", dev_get)) if f is None]
        if missing:
            emit("registry", ok=False, error=f"libggml-base lacks {', '.join(missing)}")
        else:
            emit("step", step="ggml_backend_reg_dev_count")
            devices = []
            for index in range(dev_count(reg)):
                dev = dev_get(reg, index)
                entry = {"index": index, "name": text(dev_name(dev)) if dev_name else None,
                         "description": text(dev_description(dev)) if dev_description else None}
                if dev_memory is not None:
                    free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
                    dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
                    entry.update(free=free.value, total=total.value)
                devices.append(entry)
            emit("registry", ok=True, name=text(reg_name(reg)), devices=devices)
    emit("cuda", report=cuda_report(backend))
    emit("done", loaded=loaded_objects())


if __name__ == "__main__":
    main()
