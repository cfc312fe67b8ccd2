"""Native test fixtures: fake CUDA/ggml libraries and a stand-in ollama, built with gcc."""
