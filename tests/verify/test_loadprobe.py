"""fixer.verify.loadprobe: the backend really loads (or not) in a fresh process with the runner's environment."""

from __future__ import annotations

import json
import pwd

import pytest

from fixer.model.profile import Verify
from fixer.verify.loadprobe import run_load_probe
from tests.native import layout
from tests.verify.test_linker import (
    deliberate_preload_order,
    ld_so_conf_with_ldconfig,
    libpath,
    no_libcuda_link,
    preload,
    preload_dlopen_interposer,
    preload_wrong_soname,
    shim_missing_symbol,
    stray_cublas,
    swapped_preload_order,
)

SPEC = Verify(timeout=20)


def missing_shim_file(root, native):
    env = layout.use_library_path(root)
    (root / layout.SHIM_DIR.lstrip("/") / "libvgpu-cuda.so").unlink()
    return env


def hanging_shim(root, native):
    layout.place(root, f"{layout.SHIM_DIR}/libvgpu-cuda.so", native["cuda-shim-hang"])
    return layout.use_library_path(root)


def crashing_shim(root, native):
    layout.place(root, f"{layout.SHIM_DIR}/libvgpu-cuda.so", native["cuda-shim-segv"])
    return layout.use_library_path(root)


def two_devices(root, native):
    layout.place(root, f"{layout.SHIM_DIR}/libvgpu-cuda.so", native["cuda-shim-2dev"])
    return layout.use_library_path(root)


GOOD = [
    ("library path + libcuda.so.1 link", libpath, 1),
    ("preloaded shims", preload, 1),
    ("deliberate preload order", deliberate_preload_order, 1),
    ("ld.so.conf.d + ldconfig (root's cache)", ld_so_conf_with_ldconfig, 1),
    ("two devices", two_devices, 2),
]


@pytest.mark.root
@pytest.mark.parametrize("name, setup, devices", GOOD, ids=[c[0] for c in GOOD])
def test_good_hosts_load(namespaces, make_host, native, name, setup, devices):
    root = make_host()
    result = run_load_probe(str(root), setup(root, native), SPEC)
    assert result.ok, result.evidence
    assert result.mode == "isolated"
    assert result.device_count == devices
    assert all("H100" in d["description"] for d in result.devices)
    assert result.cuda["libcuda"] and result.cuda["status"] == 0
    json.dumps(result.to_dict())


BAD = [
    # name, setup, evidence expected in the cause
    ("no libcuda.so.1 link", no_libcuda_link, "libcuda.so.1: cannot open shared object file"),
    ("missing shim file", missing_shim_file, "libcuda.so.1: cannot open shared object file"),
    ("preload with wrong SONAME", preload_wrong_soname, "libcuda.so.1: cannot open shared object file"),
    ("shim missing a symbol", shim_missing_symbol, "undefined symbol: cuMemCreate"),
    ("stray libcublas.so.12", stray_cublas, "undefined symbol: cublasCreate_v2"),
    ("swapped preload order", swapped_preload_order, "the first preload wins"),
    ("preloaded dlopen interposer", preload_dlopen_interposer, "dlopen is interposed by /opt/vgpu/lib/libvgpu-cuda.so"),
    ("shim segfaults in cuInit", crashing_shim, "crashed (SIGSEGV) in 'ggml_backend_init'"),
]


@pytest.mark.root
@pytest.mark.parametrize("name, setup, text", BAD, ids=[c[0] for c in BAD])
def test_bad_hosts_fail_with_cause(namespaces, make_host, native, name, setup, text):
    root = make_host()
    result = run_load_probe(str(root), setup(root, native), SPEC)
    assert not result.ok
    assert text in result.cause, result.evidence
    assert result.fix
    json.dumps(result.to_dict())


@pytest.mark.root
def test_dlerror_is_reported_verbatim(namespaces, make_host, native):
    root = make_host()
    result = run_load_probe(str(root), no_libcuda_link(root, native), SPEC)
    assert not result.backend_loaded and result.base_loaded
    assert result.dlerror == "libcuda.so.1: cannot open shared object file: No such file or directory"


@pytest.mark.root
def test_hang_is_killed_at_the_timeout(namespaces, make_host, native):
    root = make_host()
    result = run_load_probe(str(root), hanging_shim(root, native), SPEC, timeout=1.5)
    assert not result.ok and result.timed_out
    assert result.last_step == "ggml_backend_init"
    assert 1.5 <= result.duration < 10
    assert "hung in 'ggml_backend_init'" in result.cause


@pytest.mark.root
def test_real_cuda_runtime_reports_insufficient_driver(namespaces, make_host, native):
    """The PyPI CUDA runtime, linked into a fake backend, finds no driver here: 0 devices, error 35."""
    if "cudart-real" not in native:
        pytest.skip("nvidia-cuda-runtime-cu12 is not installed")
    root = make_host(backend="ggml-cuda-realrt", cudart="cudart-real")
    result = run_load_probe(str(root), {}, SPEC)
    assert not result.ok and result.backend_loaded and result.device_count == 0
    assert result.cuda["status"] == 35 and result.cuda["libcuda"] is None
    assert "35 (CUDA driver version is insufficient for CUDA runtime version)" in result.cause
    assert "libcuda.so.1" in result.fix


@pytest.mark.root
@pytest.mark.parametrize("shim, ok", [("cuda-shim", False), ("cuda-shim-13000", True)])
def test_cuda_v13_needs_a_13_driver(namespaces, make_host, native, shim, ok):
    root = make_host(shim=shim)
    result = run_load_probe(str(root), layout.use_library_path(root), Verify(library="cuda_v13", timeout=20))
    assert result.ok is ok, result.evidence
    if not ok:
        assert result.cuda["status"] == 35 and result.cuda["libcuda"] == "/opt/vgpu/lib/libcuda.so.1"
        assert "OLLAMA_LLM_LIBRARY=cuda_v12" in result.fix


@pytest.mark.root
def test_runs_as_the_units_user(namespaces, make_host, native):
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody")
    root = make_host()
    result = run_load_probe(str(root), libpath(root, native), SPEC, user="nobody")
    start = next(e for e in result.events if e["event"] == "start")
    assert start["uid"] == nobody.pw_uid
    assert start["comm"].startswith("ollama")
    assert result.ok, result.evidence


def test_translated_mode_runs_without_namespaces(make_host, native):
    root = make_host()
    result = run_load_probe(str(root), libpath(root, native), SPEC, mode="translated")
    assert result.ok, result.evidence
    assert result.mode == "translated"
    assert any("ld.so.cache" in note for note in result.not_honoured)


def test_translated_mode_cannot_honour_the_roots_cache(make_host, native):
    root = make_host()
    result = run_load_probe(str(root), ld_so_conf_with_ldconfig(root, native), SPEC, mode="translated")
    assert not result.ok
    assert "libcuda.so.1" in result.cause
    assert any("ld.so.cache" in note for note in result.not_honoured)
