"""The v0.30+ discovery layers against a REAL llama-server (llama.cpp built from the PyPI sdist by
scripts/build_llama_server.sh; the Makefile exports VGPU_FIX_LLAMA_SERVER) loading the project's fake
CUDA backend through real ggml's registry ABI (tests/native/ggml_cuda_dl.c, GGML_BACKEND_API_VERSION 3),
on a root laid out like Ollama v0.32 (tests/native/layout.lay_out_v030). Only `ollama` itself is a
stand-in (tests/native/ollama_v032.c): no ollama binary can be had here."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fixer import profiles
from fixer.verify import layers
from tests.native import layout
from tests.verify.conftest import llama_cpp_build
from tests.verify.test_apply_verify_cli import with_seed_unit


@pytest.fixture(scope="module")
def llama_server() -> Path:
    return llama_cpp_build() / "llama-server"


@pytest.fixture
def v032(tmp_path, native, llama_server):
    def make(**options):
        root = tmp_path / f"root{len(list(tmp_path.iterdir()))}"
        root.mkdir()
        return layout.lay_out_v030(root, native, llama_server, **options)

    return make


def _discovery(root, env_extra=None, link="present", layers_=("discovery",)):
    env = {**layout.use_library_path(root), **(env_extra or {})}
    if link == "absent":  # what `--set nvml_link=absent` leaves
        (root / layout.SHIM_DIR.lstrip("/") / "libnvidia-ml.so.1").unlink()
    profile = profiles.load("h100-vgpu", str(root), {"nvml_link": link})
    report = layers.verify(str(root), profile, env=env, layers=layers_, timeout=20, probe=True).to_dict()
    return report, {c["name"]: c for c in report["checks"]}


def test_every_layer_passes_and_discovery_names_the_server_and_survivors(v032):
    """Both llama-server invocations of v0.32.15 discover/llama_server.go:58-65 and :143-155 run for real;
    the device line and `CUDA : ARCHS` come from the real program's output."""
    report, checks = _discovery(v032(), layers_=("environment", "static", "load", "nvml", "discovery"))
    assert {n: c["status"] for n, c in checks.items()} == dict.fromkeys(checks, "pass"), json.dumps(checks)[:3000]
    found = checks["discovery"]
    assert "/usr/local/lib/ollama/llama-server" in found["summary"]
    assert any("device 0 CUDA0 'NVIDIA H100 80GB HBM3 (fake 0)'" in e and "survived" in e for e in found["evidence"])
    assert "900" in found["details"]["archs"]
    runs = found["details"]["runs"]
    assert [r["argv"][1:] for r in runs[:2]] == [
        ["--port", runs[0]["argv"][2], "--host", "127.0.0.1", "--no-webui", "--offline", "--verbose"],
        ["--list-devices", "--offline", "--verbose"]]
    assert runs[0]["saw_system_info"]
    assert runs[2]["extra"] == {"CUDA_VISIBLE_DEVICES": "0", "GGML_CUDA_INIT": "1"}  # ml/device.go:631-673


def test_one_verify_run_reads_the_native_probe_once(v032, monkeypatch):
    """Ollama takes one native reading per folder; the nvml layer's serves discovery's driver gate."""
    from fixer.ollama import llama_server as ls

    calls = []
    real = ls.read_native
    monkeypatch.setattr(ls, "read_native", lambda *a, **k: calls.append(a[2].library) or real(*a, **k))
    _, checks = _discovery(v032(), layers_=("nvml", "discovery"))
    assert checks["nvml"]["status"] == checks["discovery"]["status"] == "pass"
    assert calls == ["cuda_v12"]
    assert checks["discovery"]["details"]["native"] == checks["nvml"]["details"]["native"]


@pytest.mark.parametrize("shape,filter_", [
    ({"FAKE_CUDA_TOTAL_MIB": "0"}, "zero-memory"),                                   # llama_server.go:288-292
    ({"FAKE_CUDA_CC": "8.7"}, "compute-capability"),                                 # :294-316, 870 not built
    ({"FAKE_CUDA_INTEGRATED": "1", "OLLAMA_IGPU_ENABLE": "0"}, "integrated-gpu"),    # runner.go:382-436
])
def test_each_filter_is_named_against_the_real_output(v032, shape, filter_):
    _, checks = _discovery(v032(), shape)
    found = checks["discovery"]
    assert found["status"] == "fail"
    assert [d["dropped_by"] for d in found["details"]["devices"]] == [filter_]
    assert found["cause"].startswith("Ollama drops CUDA device 0")


def test_driver_gate_drops_the_device_after_the_real_listing(v032):
    """NVML "12.9.00" -> 12 < 550 with the bundled runtime 12.8 (v0.32.15 discover/cuda_compat.go:64-68)."""
    _, checks = _discovery(v032(nvml="nvml-shim-12.9"))
    assert checks["discovery"]["details"]["devices"][0]["dropped_by"] == "driver-gate"
    assert "nvml_link=absent" in checks["discovery"]["fix"]
    _, checks = _discovery(v032(nvml="nvml-shim-12.9"), link="absent")
    assert checks["discovery"]["status"] == "pass"


def test_second_pass_drops_a_device_that_dies_in_deep_init(v032, native):
    """GGML_CUDA_INIT=1 makes the backend retain a context; the shim crashes there (runner.go:154-166)."""
    root = v032()
    layout.place(root, f"{layout.SHIM_DIR}/libvgpu-cuda.so", native["cuda-shim-ctx-segv"])
    _, checks = _discovery(root)
    assert checks["discovery"]["details"]["devices"][0]["dropped_by"] == "second-pass"


def test_apply_no_longer_rolls_back_for_want_of_ollama_engine(v032, cli):
    """The issue's done-when: on a v0.32 layout `apply --profile h100-vgpu` keeps its changes."""
    root = with_seed_unit(v032())
    applied = cli("apply", "--root", root, "--probe", "--profile", "h100-vgpu", "--json", timeout=300)
    doc = json.loads(applied.stdout)
    assert applied.returncode == 0, applied.stdout[-3000:] + applied.stderr[-2000:]
    checks = {c["name"]: c for c in doc["verify"]["checks"]}
    assert "runner" not in checks and checks["discovery"]["status"] == "pass"
    assert doc["verify"]["installation"]["generation"] == "llama-server"


def test_the_literal_apply_keeps_the_gpu_where_the_shim_nvml_reports_a_cuda_version(v032, cli):
    """The issue's command on v0.32.15 with a shim NVML answering "12.9.00": nvml_link auto is absent for
    the llama-server generation (NVML's only reader is the cuda_v12 gate, native_probe_linux.go:391-418,
    which keeps the GPU without it, cuda_compat.go:37-41), so apply keeps its changes. Forcing the link
    back on reproduces the gate's drop (:60-68) and the rollback."""
    root = with_seed_unit(v032(nvml="nvml-shim-12.9"))
    applied = cli("apply", "--root", root, "--probe", "--profile", "h100-vgpu", "--json", timeout=300)
    assert applied.returncode == 0, applied.stdout[-3000:] + applied.stderr[-2000:]
    root = with_seed_unit(v032(nvml="nvml-shim-12.9"))
    applied = cli("apply", "--root", root, "--probe", "--profile", "h100-vgpu", "--set", "nvml_link=present",
                  "--json", timeout=300)
    assert applied.returncode == 6
    assert "NVIDIA driver gate" in json.loads(applied.stdout)["verify"]["cause"]


def test_a_12_s_cuda_init_runs_out_of_the_30_s_ollama_gives_a_folder(v032):
    """v0.32.15 discover/runner.go:89,116 and discover/llama_server.go:59,143,157: one 30 s context for the
    start-up run, --list-devices and the native probe, each of which initialises CUDA (12 s here); the
    watchdog fires (runner.go:580-586) and Ollama uses the CPU (ollama#17069), though each run alone
    would fit any per-run deadline."""
    _, checks = _discovery(v032(shim="cuda-shim-slow"))
    found = checks["discovery"]
    assert found["status"] == "fail"
    assert "watchdog timed out" in found["cause"] and "30 s for the start-up run" in found["cause"], found["cause"]


def test_list_devices_that_exits_non_zero_yields_no_device(v032):
    """v0.32.15 discover/llama_server.go:146-155: the device lines are printed, then the process crashes
    (the shim's destructor): Ollama takes nothing from that folder."""
    _, checks = _discovery(v032(shim="cuda-shim-crash-at-exit"))
    found = checks["discovery"]
    assert found["status"] == "fail"
    assert found["cause"].startswith("llama-server --list-devices crashed (SIGSEGV)"), found["cause"]
