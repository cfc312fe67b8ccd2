"""Proof that the GPU backend loads the way Ollama will load it: layers, probes and where probes run."""
