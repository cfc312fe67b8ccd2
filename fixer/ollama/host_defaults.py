"""Profile variables whose value is `auto`: decided on the host from the installed Ollama, each with its source line."""

from __future__ import annotations

from typing import Callable, Mapping

from fixer.model.stock_ollama import DEFAULT_LIB, OLLAMA_BIN


def nvml_link(root: str, values: Mapping[str, str]) -> tuple[str, str]:
    """Whether Ollama gains anything from libnvidia-ml.so.1 -> the NVML shim. The llama-server generation
    (v0.30+) reads NVML in one place only, the native probe's nvmlSystemGetDriverVersion (v0.32.15
    discover/native_probe_linux.go:391-418), for the cuda_v12 driver gate; without a reading the gate
    warns and keeps the GPU (cuda_compat.go:37-41), while a shim answering its CUDA version ("12.9.00")
    drops it (:60-68): the link can only hurt. The runner engine (v0.13-v0.24) reads free memory through
    NVML first (v0.24.0 ml/backend/ggml/ggml/src/ggml-cuda/ggml-cuda.cu:4447-4457) and the reference host
    ran with the link: kept there."""
    from fixer.ollama import detect

    installation = detect.detect(root, values.get("ollama_bin") or OLLAMA_BIN, values.get("ollama_lib") or DEFAULT_LIB)
    value, why = nvml_link_for(installation.generation)
    return value, f"{installation.describe()}: {why}"


def nvml_link_for(generation: str) -> tuple[str, str]:
    """nvml_link for an Ollama generation, and why (see nvml_link)."""
    if generation == "llama-server":
        return "absent", "NVML's only reader is the cuda_v12 driver gate, which keeps the GPU without it"
    return "present", "its CUDA backend reads free memory through NVML"


RESOLVERS: dict[str, Callable[[str, Mapping[str, str]], tuple[str, str]]] = {"nvml_link": nvml_link}
