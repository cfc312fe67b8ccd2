"""The rules of Ollama's discovery that verify follows, each against the Ollama line it cites: where the
install tree is (ml/path.go), what OLLAMA_LLM_LIBRARY pins, which folder unpinned Ollama keeps, what the
MLX loader does to every ollama process, and the names the probes run under."""

from __future__ import annotations

import pytest

from fixer import profiles
from fixer.ollama import layout as ollama_layout
from fixer.ollama import mlx
from fixer.ollama.llama_server import Device, DiscoveryResult, kept_folder
from fixer.verify import layers
from tests.native import layout


def _dirs(root, *paths):
    for path in paths:
        (root / path.lstrip("/")).mkdir(parents=True, exist_ok=True)


@pytest.mark.parametrize("binary, link, dirs, generation, expected", [
    # v0.32.15 ml/path.go:85-87: exeDir/../lib/ollama first, then exeDir/lib/ollama
    ("/usr/bin/ollama", None, ["/usr/lib/ollama"], "llama-server", "/usr/lib/ollama"),
    ("/opt/ollama/ollama", None, ["/opt/ollama/lib/ollama"], "llama-server", "/opt/ollama/lib/ollama"),
    # :24-26: the executable's real path counts, not the link ExecStart= names
    ("/usr/local/bin/ollama", "/opt/ollama/bin/ollama", ["/opt/ollama/lib/ollama", "/usr/local/lib/ollama"],
     "llama-server", "/opt/ollama/lib/ollama"),
    # :49-51: nothing found -> the executable's own folder
    ("/srv/ollama", None, [], "llama-server", "/srv"),
    # v0.24.0 ml/path.go:28-56: exeDir/lib/ollama is no candidate there
    ("/opt/ollama/ollama", None, ["/opt/ollama/lib/ollama"], "runner-engine", "/opt/ollama"),
])
def test_lib_ollama_follows_the_executables_real_path(tmp_path, binary, link, dirs, generation, expected):
    _dirs(tmp_path, *dirs)
    real = link or binary
    (tmp_path / real.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / real.lstrip("/")).write_text("")
    if link:
        layout.link(tmp_path, binary, link)
    assert ollama_layout.lib_ollama_path(str(tmp_path), binary, generation=generation) == expected


def test_verify_takes_the_install_tree_from_execstart_not_the_profile(tmp_path, native):
    """A distro package (/usr/bin/ollama, /usr/lib/ollama; ollama#14110) against the profile's /usr/local
    defaults: verify checks what the unit runs."""
    root = layout.lay_out_v030(tmp_path, native, ollama_lib="/usr/lib/ollama", ollama_bin="/usr/bin/ollama")
    unit = root / "etc/systemd/system/ollama.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\nExecStart=/usr/bin/ollama serve\nEnvironment=OLLAMA_LLM_LIBRARY=cuda_v12\n")
    report = layers.verify(str(root), profiles.load("h100-vgpu", str(root)), layers=("environment",)).to_dict()
    environment = report["checks"][0]
    assert environment["status"] == "pass", environment
    assert environment["evidence"][0] == ("install tree: ExecStart= runs /usr/bin/ollama, so Ollama uses "
                                          "/usr/lib/ollama (ml/path.go), not the profile's /usr/local/lib/ollama")


@pytest.mark.parametrize("value, pinned", [
    ("cuda_v12", "cuda_v12"),
    ("mlx_cuda_v13", None),  # v0.32.15 discover/runner.go:100, v0.24.0 :97: MLX variants pin nothing
    ("", None),
    (None, None),
])
def test_what_ollama_llm_library_pins(value, pinned):
    assert ollama_layout.pinned_library({} if value is None else {"OLLAMA_LLM_LIBRARY": value}) == pinned


def _result(folder: str, survivors: list[str]) -> DiscoveryResult:
    result = DiscoveryResult(bool(survivors), "llama-server", folder=f"/usr/local/lib/ollama/{folder}")
    result.devices = [Device(i, f"CUDA{i}", "H100", 81559, 81559, "CUDA", "9.0") for i in survivors]
    return result


@pytest.mark.parametrize("seen, kept", [
    ({"cuda_v12": ["0"], "cuda_v13": ["0"]}, "cuda_v13"),  # runner.go:445: the newest that covers every device
    ({"cuda_v12": ["0"], "cuda_v13": []}, "cuda_v12"),  # cuda_v13 saw nothing: not in the supported map
    ({"cuda_v12": [], "cuda_v13": ["0"]}, "cuda_v13"),
    # :446-467: anyMissing is never reset, so once the folders differ the loop ends on the oldest
    ({"cuda_v12": ["0"], "cuda_v13": ["0", "1"]}, "cuda_v12"),
    ({"cuda_v12": [], "cuda_v13": []}, "cuda_v12"),  # nothing anywhere: the first folder explains the CPU
])
def test_unpinned_ollama_keeps_the_folder_filter_overlap_keeps(seen, kept):
    chosen = kept_folder([_result(folder, ids) for folder, ids in seen.items()])
    assert chosen.folder.endswith("/" + kept)


@pytest.mark.parametrize("env, folders, loaded", [
    ({}, {"mlx_cuda_v12": "mlxc-api", "mlx_cuda_v13": "mlxc-api"}, "mlx_cuda_v13"),  # dynamic.go:241-251: reverse order
    ({"OLLAMA_LLM_LIBRARY": "mlx_cuda_v12"}, {"mlx_cuda_v12": "mlxc-api", "mlx_cuda_v13": "mlxc-api"}, "mlx_cuda_v12"),
    ({}, {"mlx_cuda_v13": "mlxc"}, None),  # :71-75: a libmlxc without mlx-c's API is let go
    ({}, {}, None),
])
def test_the_mlx_folder_every_ollama_process_prepends(tmp_path, native, env, folders, loaded):
    for folder, kind in folders.items():
        layout.place(tmp_path, f"/usr/local/lib/ollama/{folder}/libmlxc.so", native[kind])
    folder = mlx.loaded_dir(str(tmp_path), "/usr/local/lib/ollama", env)
    assert folder == (f"/usr/local/lib/ollama/{loaded}" if loaded else None)
    out, note = mlx.process_env(str(tmp_path), "/usr/local/lib/ollama", {"LD_LIBRARY_PATH": "/opt/vgpu/lib"},
                                (0, 32, 15))
    if loaded:
        assert out["LD_LIBRARY_PATH"].endswith(":/opt/vgpu/lib") and note
    else:
        assert out["LD_LIBRARY_PATH"] == "/opt/vgpu/lib" and note is None


@pytest.mark.root
@pytest.mark.parametrize("process, loads", [("llama-server", True), ("ollama", False)])
def test_the_load_probe_runs_under_the_name_of_the_process_it_stands_for(namespaces, tmp_path, native, process,
                                                                         loads):
    """A shim that swallows ggml's dlopen only in processes named `ollama*` (the field's): since v0.30 the
    backend loads inside llama-server (v0.32.15 discover/llama_server.go:59-69), where it stays out."""
    from fixer.model.profile import Verify
    from fixer.verify.loadprobe import run_load_probe

    root = layout.lay_out_v030(tmp_path, native, shim="cuda-shim-dlopen")
    result = run_load_probe(str(root), layout.use_preload(root), Verify(), process=process)
    assert result.ok is loads, result.evidence
