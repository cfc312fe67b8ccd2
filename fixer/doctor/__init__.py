"""Diagnosis: rules by topic over host facts and Ollama's log, and the verdict they add up to."""
