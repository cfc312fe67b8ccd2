"""fixer.ollama.runner_engine against the stand-in ollama, which really dlopens the backends."""

from __future__ import annotations

import json
import os

import pytest

from fixer.model.profile import Verify
from fixer.ollama.runner_engine import run_runner_probe
from fixer.verify.layers import check_load
from tests.native import layout
from tests.verify.test_linker import libpath, no_libcuda_link, preload_dlopen_interposer
from tests.verify.test_loadprobe import two_devices

SPEC = Verify(timeout=20)

def crashes_on_deep_init(root, native):
    layout.place(root, f"{layout.SHIM_DIR}/libvgpu-cuda.so", native["cuda-shim-ctx-segv"])
    return layout.use_library_path(root)


@pytest.mark.root
@pytest.mark.parametrize("setup, devices", [(libpath, 1), (two_devices, 2)])
def test_both_passes_find_cuda(namespaces, make_host, native, setup, devices):
    root = make_host()
    result = run_runner_probe(str(root), setup(root, native), SPEC)
    assert result.ok, result.evidence
    assert [d.backend for d in result.devices] == ["CUDA"] * devices
    assert len(result.passes) == 1 + devices
    second = result.passes[1]
    assert second.extra == {"CUDA_VISIBLE_DEVICES": result.devices[0].id, "GGML_CUDA_INIT": "1"}
    assert [d.id for d in second.devices] == [result.devices[0].id]
    assert result.devices[0].compute == "9.0" and result.devices[0].driver == "12.4"
    json.dumps(result.to_dict())


@pytest.mark.root
@pytest.mark.parametrize("setup, text", [
    (no_libcuda_link, "reports no CUDA device"),
    (preload_dlopen_interposer, "reports no CUDA device"),
    (crashes_on_deep_init, "fails Ollama's second discovery pass (GGML_CUDA_INIT=1): runner crashed (SIGSEGV)"),
])
def test_failures(namespaces, make_host, native, setup, text):
    root = make_host()
    result = run_runner_probe(str(root), setup(root, native), SPEC)
    assert not result.ok and not result.skipped
    assert text in result.cause, result.evidence
    assert result.fix


@pytest.mark.root
def test_runner_that_never_answers_is_killed(namespaces, make_host, tmp_path):
    root = make_host()
    binary = root / layout.OLLAMA_BIN.lstrip("/")
    binary.write_text("#!/bin/sh\nexec sleep 600\n")
    result = run_runner_probe(str(root), {}, SPEC, timeout=1)
    assert not result.ok
    assert "before timeout" in result.cause
    assert result.passes[0].duration < 10


def test_skipped_without_ollama_binary(make_host):
    root = make_host()
    os.unlink(root / layout.OLLAMA_BIN.lstrip("/"))
    result = run_runner_probe(str(root), {}, SPEC)
    assert result.skipped and not result.ok


@pytest.mark.root
@pytest.mark.parametrize("llm_library, expected", [
    ("cuda_v12", "library=CUDA"),
    ("cuda", "id=cpu library=cpu"),  # not a subfolder name: every GPU folder is skipped
])
def test_standin_serve_logs_inference_compute(namespaces, make_host, native, llm_library, expected):
    """`ollama serve` of the stand-in: discovery through runners, then Ollama's log line."""
    import threading

    from fixer.probe import placement as sandbox

    root = make_host()
    env = {**libpath(root, native), "OLLAMA_LLM_LIBRARY": llm_library, "OLLAMA_DEBUG": "1",
           "OLLAMA_HOST": "127.0.0.1:0", "PATH": sandbox.DEFAULT_PATH}
    placement = sandbox.place(str(root), env, Verify(), files=(layout.OLLAMA_BIN,))
    nobody, _ = sandbox.resolve_user(None, untrusted=True)  # an untrusted root's code never runs as root
    launched = sandbox.start(placement, [layout.OLLAMA_BIN, "serve"], env, user=nobody)
    watchdog = threading.Timer(60, sandbox.stop, [launched])
    watchdog.start()
    lines = []
    try:
        for line in launched.process.stderr:  # Ollama listens first, then logs what discovery found
            lines.append(line)
            if 'msg="inference compute"' in line:
                break
    finally:
        watchdog.cancel()
        sandbox.stop(launched)
        sandbox.cleanup(launched)
    compute = [line for line in lines if 'msg="inference compute"' in line]
    assert len(compute) == 1 and expected in compute[0], "".join(lines)
    assert "Listening on" in lines[0], "".join(lines)


@pytest.mark.root
def test_a_22_s_cuda_init_fits_the_30_s_ollama_gives_each_pass(namespaces, make_host, native):
    """v0.24.0 discover/runner.go:86 (first pass, per folder) and :124 (second pass): 30 s each, whatever
    the profile's verify.timeout (20 s here) says; a shim that needs 22 s to initialise CUDA works."""
    root = make_host(shim="cuda-shim-22s")
    env = layout.use_library_path(root)
    result = run_runner_probe(str(root), env, SPEC)
    assert result.ok, result.evidence
    assert all(20 < p.duration < 30 for p in result.passes), [p.duration for p in result.passes]
    load = check_load(str(root), SPEC, env, None, None)  # the backend loads within the runner's first pass
    assert load.status == "pass", load.evidence
