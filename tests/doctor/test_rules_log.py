"""Log rules and version inference, on transcripts and hand-written lines."""

from __future__ import annotations

import pytest

from fixer.doctor.rules import logs
from fixer.doctor.rules.base import Context
from fixer.doctor.snapshot import Entry, HostFacts
from fixer.ollama import versions as V
from fixer.ollama.logs import summarize
from tests.doctor.conftest import elf_info, read_log

T = "time=2026-01-01T00:00:{s:06.3f}Z level={lvl} source={src} msg={msg}"
CPU = T.format(s=1, lvl="INFO", src="types.go:60", msg='"inference compute" id=cpu library=cpu')


def boot(seconds: float, folder: str = "cuda_v12", extra: str = "map[]") -> str:
    return T.format(s=0.5, lvl="DEBUG", src="runner.go:437", msg=f'"bootstrap discovery took" duration={seconds}s '
                    f'OLLAMA_LIBRARY_PATH="[/usr/local/lib/ollama /usr/local/lib/ollama/{folder}]" extra_envs={extra}')


def ctx(text: str, **host) -> Context:
    return Context(host=HostFacts(**host) if host else None, log=summarize(text))


def ids(found) -> list[str]:
    return [f.id for f in found]


@pytest.mark.parametrize(
    "lines, fires",
    [
        ([boot(0.23), CPU], True),
        ([boot(0.23), T.format(s=0.6, lvl="DEBUG", src="runner.go:146", msg='"verifying if device is supported" library=/l/cuda_v12'), CPU], False),
        ([boot(30.0), CPU], False),
        ([boot(0.23), T.format(s=1, lvl="INFO", src="types.go:42", msg='"inference compute" id=GPU-1 library=CUDA libdirs=ollama,cuda_v12')], False),
        ([CPU], False),
    ],
)
def test_backend_never_loaded_signature(lines, fires):
    assert ids(logs.backend_never_loaded(ctx("\n".join(lines)))) == (["backend-never-loaded"] if fires else [])


def test_backend_never_loaded_names_the_dlopen_interposer_and_clears_llm_library():
    driver = elf_info("/opt/vgpu/lib/libvgpu-cuda.so", "libcuda.so.1", ("cuInit", "dlopen"))
    (f,) = logs.backend_never_loaded(ctx("\n".join([boot(0.23), CPU]), env={"LD_PRELOAD": driver.path, "OLLAMA_LLM_LIBRARY": "cuda_v12"},
                                         elf={driver.path: driver}))
    assert "interposes dlopen" in f.summary and f.fix.setting == "preload"
    assert "Not the cause: OLLAMA_LLM_LIBRARY=cuda_v12" in f.explanation and "does not use NVML" in f.explanation


def test_backend_never_loaded_without_host_suggests_verify():
    (f,) = logs.backend_never_loaded(ctx("\n".join([boot(0.23), CPU])))
    assert f.fix.setting is None and "vgpu-fix verify" in f.fix.text


def test_backend_never_loaded_suspects_an_uninspected_preloaded_driver_shim():
    (f,) = logs.backend_never_loaded(ctx("\n".join([boot(0.23), CPU]), env={"LD_PRELOAD": "/opt/vgpu/lib/libvgpu-cuda.so"}))
    assert "LD_PRELOAD" in f.summary and f.fix.setting == "preload"


def test_no_gpu_library_tried():
    skipped = T.format(s=0.1, lvl="DEBUG", src="runner.go:98", msg="\"skipping available library at user's request\" requested=cuda libDir=/l/cuda_v12")
    only_lib = T.format(s=0.2, lvl="DEBUG", src="runner.go:437", msg='"bootstrap discovery took" duration=0.1s OLLAMA_LIBRARY_PATH=[/usr/local/lib/ollama]')
    assert ids(logs.no_gpu_library_tried(ctx("\n".join([skipped, only_lib, CPU])))) == ["no-gpu-library-tried"]
    assert logs.no_gpu_library_tried(ctx("\n".join([boot(0.2), CPU]))) == []


def test_discovery_timeout_from_transcript_and_from_duration():
    found = logs.discovery_timeout(Context(log=summarize(read_log("timeout_preload.log"))))
    assert ids(found) == ["discovery-timeout"] and found[0].severity == "error"
    assert logs.discovery_timeout(ctx("\n".join([boot(0.3), CPU]))) == []
    gpu = T.format(s=1, lvl="INFO", src="types.go:42", msg='"inference compute" id=GPU-1 library=CUDA libdirs=ollama,cuda_v12')
    assert [f.severity for f in logs.discovery_timeout(ctx("\n".join([boot(29.9, "cuda_v13"), gpu])))] == ["warning"]


def test_devices_filtered():
    log = summarize(read_log("filtered_second_pass.json"))
    (f,) = logs.devices_filtered(Context(log=log))
    assert f.severity == "error" and f.fix.setting == "service.environment.OLLAMA_LLM_LIBRARY"
    (pinned,) = logs.devices_filtered(Context(log=log, host=HostFacts(env={"OLLAMA_LLM_LIBRARY": "cuda_v12"})))
    assert pinned.fix.setting is None


V13 = {"cuda_v12": {"libggml-cuda.so": Entry("file")}, "cuda_v13": {"libggml-cuda.so": Entry("file")}}
SHIM = {"listings": {"/opt/vgpu/lib": {"libvgpu-cuda.so": Entry("file")}}}


@pytest.mark.parametrize(
    "log_lines, host, expected",
    [
        ([T.format(s=1, lvl="INFO", src="types.go:42", msg='"inference compute" id=GPU-1 library=CUDA libdirs=ollama,cuda_v13 driver=13.0')],
         {"lib_dirs": V13}, "warning"),
        ([T.format(s=1, lvl="INFO", src="types.go:42", msg='"inference compute" id=GPU-1 library=CUDA libdirs=ollama,cuda_v12 driver=13.0')],
         {"lib_dirs": V13}, "warning"),
        ([CPU], {"lib_dirs": V13, "env": {"OLLAMA_LLM_LIBRARY": "cuda_v12"}, **SHIM}, "info"),
        ([T.format(s=1, lvl="INFO", src="types.go:42", msg='"inference compute" id=GPU-1 library=CUDA libdirs=ollama,cuda_v12 driver=12.4')],
         {"lib_dirs": V13}, None),
        ([CPU], {"lib_dirs": {"cuda_v12": V13["cuda_v12"]}}, None),
    ],
)
def test_driver_prefers_cuda_v13(log_lines, host, expected):
    found = logs.driver_prefers_cuda_v13(ctx("\n".join(log_lines), **host))
    assert [f.severity for f in found] == ([expected] if expected else [])


@pytest.mark.parametrize(
    "pci, log_lines, fires",
    [
        ([], [CPU], True),
        (["0000:00:02.0 0x1234:0x030000"], [CPU], True),
        (["0000:00:05.0 0x10de:0x030200"], [CPU], False),
        (None, [CPU], False),
        ([], [T.format(s=1, lvl="INFO", src="types.go:42", msg='"inference compute" id=GPU-1 library=CUDA')], False),
    ],
)
def test_no_gpu_visible_is_external(pci, log_lines, fires):
    found = logs.no_gpu_visible(ctx("\n".join(log_lines), pci_gpus=pci))
    assert ids(found) == (["no-gpu-visible"] if fires else [])
    if fires:
        assert found[0].severity == "external" and found[0].fix.setting is None
        assert "Do not install the NVIDIA driver" in found[0].explanation


def test_cpu_fallback_without_debug():
    assert ids(logs.cpu_fallback_without_debug(ctx(CPU))) == ["cpu-fallback-no-debug"]
    assert logs.cpu_fallback_without_debug(ctx("\n".join([boot(0.2), CPU]))) == []


@pytest.mark.parametrize(
    "line, fid",
    [
        ("ERROR: ld.so: object '/x.so' from LD_PRELOAD cannot be preloaded (cannot open shared object file): ignored.", "preload-ignored-logged"),
        ("ollama: symbol lookup error: /opt/vgpu/lib/libvgpu-cuda.so: undefined symbol: cuMemCreate", "loader-error-logged"),
        ("load_backend: failed to load /l/cuda_v12/libggml-cuda.so: libcuda.so.1: cannot open shared object file", "backend-load-failed-logged"),
        ("ggml_cuda_init: failed to initialize CUDA: no CUDA-capable device is detected", "cuda-init-failed-logged"),
    ],
)
def test_loader_errors_logged(line, fid):
    assert ids(logs.loader_errors_logged(ctx(line))) == [fid]


def test_runner_crashes():
    text = T.format(s=1, lvl="ERROR", src="sched.go:1", msg='"error loading llama server" error="llama runner process has terminated: exit status 2"')
    assert ids(logs.runner_crashes(ctx(text))) == ["runner-crashed"]
    assert logs.runner_crashes(ctx(CPU)) == []


# ---------------------------------------------------------------- versions


@pytest.mark.parametrize(
    "observations, text",
    [
        ([("bootstrap discovery took", "runner.go:437")], "0.13.2–0.22.1"),
        ([("bootstrap discovery took", "runner.go:437"), ("server config", "routes.go:1752")], "0.20.5–0.21.2"),
        ([("verifying if device is supported", "runner.go:132")], "Ollama 0.13.0 "),
        ([("GPU bootstrap discovery took", "runner.go:40")], "0.12.10–0.24.0"),
        ([("bootstrap discovery took", "runner.go:999")], "patched or unreleased"),
        ([("some other message", "x.go:1")], "unknown"),
    ],
)
def test_version_inference(observations, text):
    assert text in V.infer(observations).describe()


def test_exact_version_checked_against_locations():
    guess = V.infer([("bootstrap discovery took", "runner.go:437")], exact="0.30.1")
    assert guess.exact == "0.30.1" and guess.unmatched
    assert not V.infer([("bootstrap discovery took", "runner.go:437")], exact="0.17.0").unmatched
