"""Ollama's side of the v0.30+ discovery contract, reproduced from its source (no ollama binary can run
here: its Go dependencies come only from the Go module proxy). Each spec names the tag and file:line it
follows; data/ollama_releases.yaml records what changed between v0.24, v0.30.0, v0.30.11 and v0.32.x."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fixer.ollama import generations
from fixer.ollama import llama_server as ls

RELEASES = yaml.safe_load((Path(__file__).parent / "data" / "ollama_releases.yaml").read_text())
H100 = ("0", "CUDA0", "NVIDIA H100 80GB HBM3", 81559, 81000, "CUDA", "9.0")
P100 = ("0", "CUDA0", "Tesla P100", 16000, 16000, "CUDA", "6.0")


def device(*fields) -> ls.Device:
    return ls.Device(*fields)


@pytest.mark.parametrize("row", RELEASES, ids=[r["release"] for r in RELEASES])
def test_each_release_maps_to_its_generation(row):
    """v0.13-v0.24 runner engine; v0.30.0+ llama-server (ollama.md section 0); newer -> newest, said so."""
    generation, note = generations.for_version(generations.parse_version(row["release"]))
    assert generation.name == row["generation"]
    assert (note is not None) == bool(row.get("newer_than_known"))


@pytest.mark.parametrize("row", RELEASES, ids=[r["release"] for r in RELEASES])
def test_driver_gate_per_release(row):
    """The gate of each release for an H100 (cc 9.0) and a P100 (cc 6.0), driver 12 (a shim's "12.9.00"),
    runtime 12.8: v0.30.11+ cuda_compat.go:54-68 drops both below 550; v0.30.0 cuda_compat.go:11-44 only
    compute < 7 below 570; v0.24 has no gate."""
    version = generations.parse_version(row["release"])
    h100, p100 = device(*H100), device(*P100)
    if row["gate"] != "none":
        ls.driver_gate([h100], "/usr/local/lib/ollama/cuda_v12", 12, (12, 8), version)
        ls.driver_gate([p100], "/usr/local/lib/ollama/cuda_v12", 12, (12, 8), version)
    expect = {"none": (None, None), "legacy": (None, "driver-gate"), "fatbin": ("driver-gate", "driver-gate")}
    assert (h100.dropped_by, p100.dropped_by) == expect[row["gate"]]


@pytest.mark.parametrize("text,major", [("12.9.00", 12), ("550.54.15", 550), ("580.65.06", 580), (" 570 ", 570),
                                        ("", 0), ("garbage", 0), (None, 0)])
def test_driver_major_is_the_text_before_the_first_dot(text, major):
    """parseNVIDIADriverMajor, v0.30.0 discover/native_probe_platform.go:121-132."""
    assert ls.parse_driver_major(text) == major


@pytest.mark.parametrize("folder,driver,runtime,dropped,warning", [
    ("cuda_v12", 12, (12, 8), True, None),          # cuda_compat.go:64-68: 550 rule
    ("cuda_v12", 549, (12, 4), True, None),         # runtime 12.4 may use compressed fatbins
    ("cuda_v12", 550, (12, 8), False, None),        # >= 550, cc 9.0: the 570 rule needs compute < 7
    ("cuda_v12", 12, (12, 0), False, None),         # only libcudart.so.12: runtime 12.0, no gate (:54-56)
    ("cuda_v12", 0, (12, 8), False, "could not verify NVIDIA driver compatibility for CUDA"),  # :38-41
    ("cuda_v13", 12, (13, 0), False, None),         # runner.go:119-121: only the folder named cuda_v12
])
def test_driver_gate_v0_32(folder, driver, runtime, dropped, warning):
    """v0.32.15 discover/cuda_compat.go:20-77 and discover/runner.go:119-121."""
    d = device(*H100)
    said = ls.driver_gate([d], f"/usr/local/lib/ollama/{folder}", driver, runtime, (0, 32, 15))
    assert (d.dropped_by == "driver-gate") == dropped
    assert said == warning
    if dropped:
        assert 'NVIDIA driver too old driver=%d required_driver="550 or newer"' % driver == d.detail


LIST = """Available devices:
  CUDA0: NVIDIA H100 80GB HBM3 (81559 MiB, 81000 MiB free)
  CUDA1: NVIDIA Jetson Orin (0 MiB, 0 MiB free)
  CUDA2: NVIDIA A10G (22000 MiB, 21000 MiB free)
  Vulkan0: llvmpipe (LLVM 15.0.7, 256 bits) (2048 MiB, 2048 MiB free)
"""
STARTUP = """0.00.000.123 I ggml_cuda_init: found 3 CUDA devices:
  Device 0: NVIDIA H100 80GB HBM3, compute capability 9.0, VMM: yes
  Device 1: NVIDIA Jetson Orin, compute capability 8.7, VMM: yes
  Device 2: NVIDIA A10G, compute capability 8.6, VMM: yes
system_info: n_threads = 8 (n_threads_batch = 8) / 16 | CUDA : ARCHS = 500,520,600,610,700,750,800,890,900 | CPU : SSE3 = 1 |
"""


def test_parse_reads_devices_compute_and_archs_with_ollamas_regexes():
    """v0.32.15 discover/llama_server.go:178-194 (regexes), :239-276 (ID = running index, arch = M m 0),
    :468-482 (library from name/description)."""
    parsed = ls.parse(LIST, STARTUP)
    assert [(d.index, d.name, d.library, d.compute, d.arch) for d in parsed.devices] == [
        ("0", "CUDA0", "CUDA", "9.0", "900"), ("1", "CUDA1", "CUDA", "8.7", "870"),
        ("2", "CUDA2", "CUDA", "8.6", "860"), ("3", "Vulkan0", "Vulkan", "", "")]
    assert parsed.archs == ["500", "520", "600", "610", "700", "750", "800", "890", "900"]
    assert parsed.system_info


def test_parse_applies_zero_memory_then_archs():
    """Zero memory first (:288-292), then exact ARCHS membership (:294-316): no PTX-of-a-lower-arch logic,
    so cc 8.6 is dropped by a build listing 800 and 890 only."""
    dropped = {d.index: d.dropped_by for d in ls.parse(LIST, STARTUP).devices}
    assert dropped == {"0": None, "1": "zero-memory", "2": "compute-capability", "3": None}


def test_none_lists_no_device_and_no_system_info_disables_archs():
    """`(none)` matches no device line (:272-276); without `system_info:` ARCHS stay unknown and no device
    is dropped for its compute capability (:134-139, :311)."""
    assert ls.parse("Available devices:\n  (none)\n", STARTUP).devices == []
    parsed = ls.parse(LIST, "ggml_cuda_init: found 1 CUDA devices:\n  Device 2: x, compute capability 8.6\n")
    assert parsed.archs == [] and not parsed.system_info
    assert parsed.devices[2].dropped_by is None


@pytest.mark.parametrize("value,library,integrated,kept", [
    ("", "CUDA", True, True),        # runner.go:426-436: CUDA iGPUs are kept by default
    ("0", "CUDA", True, False),      # explicit false drops
    ("false", "CUDA", True, False),
    ("yes", "CUDA", True, True),     # unparsable = true (config.go:177-190)
    ("", "CUDA", False, True),
])
def test_integrated_gpu_filter(value, library, integrated, kept):
    """filterIntegratedGPUs, v0.32.15 discover/runner.go:382-436."""
    d = device("0", "CUDA0", "Orin", 1, 1, library, "8.7", integrated)
    ls.igpu_filter([d], {"OLLAMA_IGPU_ENABLE": value} if value else {})
    assert (d.dropped_by is None) == kept


def test_library_path_is_server_dir_then_variant_then_inherited():
    """v0.32.15 llm/llama_server.go:488-522: llama-server's dir, GPU dirs except lib/ollama, inherited;
    empty and repeated entries dropped."""
    lib = "/usr/local/lib/ollama"
    assert ls.library_path(f"{lib}/llama-server", [lib, f"{lib}/cuda_v12"], lib, f"/opt/vgpu/lib::{lib}") == [
        lib, f"{lib}/cuda_v12", "/opt/vgpu/lib"]


def test_server_env_keeps_everything_and_sets_the_backend_file():
    """SetupLlamaServerCommandEnv, v0.32.15 llm/llama_server.go:445-475: nothing unset (LD_PRELOAD passes),
    GGML_BACKEND_PATH = the folder's backend FILE; OLLAMA_LIBRARY_PATH is not set in v0.30+."""
    lib = "/usr/local/lib/ollama"
    env = ls.server_env({"LD_PRELOAD": "/x.so", "LD_LIBRARY_PATH": "/opt/vgpu/lib"}, f"{lib}/llama-server", lib,
                        f"{lib}/cuda_v12", f"{lib}/cuda_v12/libggml-cuda.so")
    assert env["LD_PRELOAD"] == "/x.so"
    assert env["GGML_BACKEND_PATH"] == f"{lib}/cuda_v12/libggml-cuda.so"
    assert env["LD_LIBRARY_PATH"] == f"{lib}:{lib}/cuda_v12:/opt/vgpu/lib"
    assert "OLLAMA_LIBRARY_PATH" not in env


def test_backend_file_and_runtime_from_file_names(tmp_path):
    """GGML_BACKEND_PATH skips base and CPU libraries (llm/llama_server.go:524-559); the runtime version is
    the highest libcudart.so.N.M name (discover/llama_server.go:400-435), 12.0 with only libcudart.so.12."""
    folder = tmp_path / "usr/local/lib/ollama/cuda_v12"
    folder.mkdir(parents=True)
    for name in ("libggml-base.so", "libggml-cpu-haswell.so", "libggml-cuda.so", "libcudart.so.12"):
        (folder / name).write_bytes(b"")
    v12 = "/usr/local/lib/ollama/cuda_v12"
    assert ls.backend_file(str(tmp_path), v12) == f"{v12}/libggml-cuda.so"
    assert ls.cuda_runtime(str(tmp_path), [v12]) == (12, 0)
    (folder / "libcudart.so.12.8.90").write_bytes(b"")
    assert ls.cuda_runtime(str(tmp_path), [v12]) == (12, 8)


def test_every_layer_gives_llama_server_the_backend_ollama_would(tmp_path):
    """One rule for GGML_BACKEND_PATH (the folder's first ggml library in sorted order, not the profile's
    backend name): the load and NVML layers' environment and the static layer's load request agree with
    discovery's, here where a stray libggml-blas.so sorts before libggml-cuda.so."""
    from fixer.model.profile import Verify
    from fixer.ollama.detect import Installation
    from fixer.verify import llama_server_layers

    folder = tmp_path / "usr/local/lib/ollama/cuda_v12"
    folder.mkdir(parents=True)
    for name in ("libggml-base.so", "libggml-blas.so", "libggml-cuda.so"):
        (folder / name).write_bytes(b"")
    v12, spec = "/usr/local/lib/ollama/cuda_v12", Verify()
    ollama = f"{v12}/libggml-blas.so"
    assert ls.backend_file(str(tmp_path), v12) == ollama
    installation = Installation("llama-server", "0.32.15", "layout", llama_server="/usr/local/lib/ollama/llama-server")
    env = llama_server_layers._env(installation, str(tmp_path), spec, {})
    assert env["GGML_BACKEND_PATH"] == ollama
    assert ls.load_request(str(tmp_path), spec, {}, installation.llama_server).backend == ollama


# v0.32.15 llm/llama_binary.go:61-157 (same blob v0.30.0...v0.33.0-rc2): FindLlamaCppBinary's Linux candidates,
# most preferred first. ollama is /opt/o/bin/ollama, the service works in /srv/w.
FIND_ORDER = [
    "/usr/local/lib/ollama/llama-server",                      # :84, lib/ollama
    "/opt/o/lib/ollama/llama-server",                          # :99-101, exeDir/../lib/ollama
    "/opt/o/bin/build/lib/ollama/llama-server",                # :117, exeDir's local layouts
    "/opt/o/bin/dist/linux-amd64/lib/ollama/llama-server",     # :118, GOARCH of the binary
    "/opt/o/bin/dist/linux_amd64/lib/ollama/llama-server",     # :119-121
    "/srv/w/build/lib/ollama/llama-server",                    # :132-134, the working directory's
    "/srv/w/dist/linux-amd64/lib/ollama/llama-server",
    "/opt/o/bin/build/llama-server-cuda/bin/llama-server",     # :151-153, cuda/rocm/darwin builds first
    "/opt/o/bin/build/llama-server-cpu/bin/llama-server",      # :141-146, then by name
    "/srv/w/build/llama-server-cpu/bin/llama-server",          # :154
]


def test_find_llama_server_order(tmp_path):
    """Each candidate wins once every one before it is gone; never the binary's own folder (darwin only, :92-94)."""
    root = tmp_path
    (root / "opt/o/bin").mkdir(parents=True)
    (root / "opt/o/bin/ollama").write_bytes(b"")
    (root / "opt/o/bin/llama-server").write_bytes(b"")
    for path in FIND_ORDER:
        (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / path.lstrip("/")).write_bytes(b"")
    for path in FIND_ORDER:
        assert ls.find_llama_server(str(root), "/opt/o/bin/ollama", "/usr/local/lib/ollama", "/srv/w") == path
        (root / path.lstrip("/")).unlink()
    assert ls.find_llama_server(str(root), "/opt/o/bin/ollama", "/usr/local/lib/ollama", "/srv/w") is None


def test_find_llama_server_uses_the_binarys_goarch(tmp_path, native):
    """dist/linux-GOARCH (:118): GOARCH is the ollama binary's, read from its ELF machine (x86_64 -> amd64)."""
    (tmp_path / "o").mkdir()
    (tmp_path / "o/ollama").write_bytes(native["ollama-0.32.15"].read_bytes())
    for arch in ("arm64", "amd64"):
        (tmp_path / f"o/dist/linux-{arch}/lib/ollama").mkdir(parents=True)
        (tmp_path / f"o/dist/linux-{arch}/lib/ollama/llama-server").write_bytes(b"")
    assert ls.find_llama_server(str(tmp_path), "/o/ollama", "/usr/local/lib/ollama") == \
        "/o/dist/linux-amd64/lib/ollama/llama-server"


@pytest.mark.parametrize("listed,native_cc,archs,dropped", [
    ("9.0", {"0": "8.7"}, "900", "compute-capability"),   # the native probe's 8.7 replaces llama-server's 9.0
    ("8.7", {"0": "9.0"}, "900", None),                   # ... and rescues a device llama-server misreports
    ("8.7", {}, "900", "compute-capability"),             # no native reading: llama-server's own value
    ("8.7", {"0": "0.0"}, "900", "compute-capability"),   # a major of 0 is no reading (:251-253)
])
def test_native_compute_capability_overrides_llama_servers(listed, native_cc, archs, dropped):
    """v0.32.15 discover/llama_server.go:249-260, before the ARCHS filter of :294-316."""
    major, _, minor = listed.partition(".")
    listing = "Available devices:\n  CUDA0: NVIDIA H100 80GB HBM3 (81559 MiB, 81000 MiB free)\n"
    stderr = f"Device 0: NVIDIA H100, compute capability {major}.{minor}, VMM: yes\nsystem_info: CUDA : ARCHS = {archs}\n"
    parsed = ls.parse(listing, stderr)
    reading = ls.NativeReading(True, cuda={"ok": True, "devices": [
        {"index": int(i), "compute_major": int(cc.split(".")[0]), "compute_minor": int(cc.split(".")[1])}
        for i, cc in native_cc.items()]})
    ls.archs_filter(parsed.devices, parsed.archs, ls.native_compute(reading))
    assert parsed.devices[0].dropped_by == dropped
