"""vgpu-fix: make Ollama load its CUDA backend on virtual-GPU hosts, idempotently."""

__version__ = "0.1.0"
