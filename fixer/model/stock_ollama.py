"""Where a stock Ollama install puts itself and which CUDA folder serves an H100: the profile model's defaults
(data only, no imports; fixer.ollama.layout re-exports them)."""

OLLAMA_BIN = "/usr/local/bin/ollama"
DEFAULT_LIB = "/usr/local/lib/ollama"
CUDA_LIB = "cuda_v12"  # the folder with cubins for compute capability 9.0 (cuda_v13 ships PTX only)
BACKEND = "libggml-cuda.so"
