"""Profile variables valued `auto` follow the installed Ollama (fixer/ollama/host_defaults.py)."""

from __future__ import annotations

import pytest

from fixer import profiles
from fixer.demo import build_seed_host
from tests.hosts import v032_layout

NVML_LINKS = ("/opt/vgpu/lib/libnvidia-ml.so.1", "/usr/local/lib/vgpu-fix/libnvidia-ml.so.1")


def _nvml_states(root: str, **sets: str) -> set[str]:
    prof = profiles.load("h100-vgpu", root, sets)
    return {s.state for s in prof.symlinks if s.path in NVML_LINKS}


@pytest.mark.parametrize("layout,state", [
    # v0.13-v0.24: the CUDA backend reads free memory through NVML first (v0.24.0
    # ml/backend/ggml/ggml/src/ggml-cuda/ggml-cuda.cu:4447-4457); the reference host ran with the link.
    ("runner-engine", "present"),
    # v0.30+: NVML's only reader is the native probe's driver version (v0.32.15
    # discover/native_probe_linux.go:391-418), for the cuda_v12 gate that keeps the GPU without it
    # (cuda_compat.go:37-41) and drops it for a shim answering "12.9.00" (:60-68).
    ("llama-server", "absent"),
])
def test_nvml_link_follows_the_installed_generation(tmp_path, layout, state):
    root = str(tmp_path)
    build_seed_host(root)
    if layout == "llama-server":
        v032_layout(root)
    assert _nvml_states(root) == {state}
    prof = profiles.load("h100-vgpu", root)
    assert prof.vars["nvml_link"].auto.startswith(f"{state}: Ollama ")


@pytest.mark.parametrize("given", ["present", "absent"])
def test_an_explicit_nvml_link_wins(tmp_path, given):
    root = str(tmp_path)
    build_seed_host(root)
    v032_layout(root)
    assert _nvml_states(root, nvml_link=given) == {given}
