"""Everything Ollama-specific: its layout, its releases, its log formats and each discovery generation."""
