"""The Ollama generations vgpu-fix knows: which releases each covers and the module that checks it."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Adding a generation: write fixer/ollama/<module>.py (its contract and probes) and its verify layers
# (fixer/verify/<module>_layers.py), then add one line below and one in verify.layers.CHECKS_BY_GENERATION.


@dataclass(frozen=True)
class Generation:
    name: str
    first: tuple[int, int, int]  # first release of the generation
    last: tuple[int, int, int]  # newest release whose source was read (ollama.md section 7)
    module: str
    layers: tuple[str, ...]  # verify's layers for it, in order
    discovery: str  # how `ollama serve` finds GPUs, in one line
    top_level: tuple[str, ...]  # what its releases ship at the top of lib/ollama (fnmatch patterns)
    # Ollama's own discovery budget on Linux: each scanned library folder in turn, then one second pass
    # shared by all devices (v0.24.0 discover/runner.go:86,114,124; v0.32.15 discover/runner.go:89,116,132).
    bootstrap_s: float = 30.0
    second_pass_s: float = 30.0


GENERATIONS = (
    # v0.13.0 ... v0.24.0: `ollama runner --ollama-engine` answers GET /info (v0.24.0 runner/runner.go:17-18).
    Generation("runner-engine", (0, 13, 0), (0, 24, 0), "fixer.ollama.runner_engine",
               ("environment", "static", "load", "runner"), "ollama runner --ollama-engine, GET /info",
               # v0.13.0-v0.24.0: the CPU backend variants and ggml-base beside the variant folders
               ("libggml-base.so*", "libggml-cpu*.so")),
    # v0.30.0 ... v0.32.15 (= v0.33.0-rc2 for discovery): bundled llama-server, v0.30.0 discover/runner.go.
    Generation("llama-server", (0, 30, 0), (0, 32, 15), "fixer.ollama.llama_server",
               ("environment", "static", "load", "nvml", "discovery"),
               "lib/ollama/llama-server --list-devices --offline --verbose, then Ollama's filters",
               # v0.30.0-v0.32.15 llama/server/CMakeLists.txt (the CPU/base build, :516-560 at v0.32.15):
               # llama-server, llama-quantize, ggml-base, ggml, llama, mtmd, llama-common and the
               # -impl libraries, and every libggml-cpu*/libggml-blas* backend module
               ("llama-server", "llama-quantize", "libggml-base.so*", "libggml.so*", "libllama.so*", "libmtmd.so*",
                "libllama-common.so*", "libllama-server-impl.so*", "libllama-quantize-impl.so*", "libggml-cpu*",
                "libggml-blas*")),
)
# Releases past a generation's `last` whose discovery source was read too (byte-identical discover/).
ALSO_READ = ("0.33.0-rc1", "0.33.0-rc2")
VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:[-+][0-9A-Za-z.-]*)?$")


def parse_version(text: str | None) -> tuple[int, int, int] | None:
    match = VERSION.match((text or "").strip().lstrip("v"))
    return tuple(int(g) for g in match.groups()) if match else None  # type: ignore[return-value]


def by_name(name: str) -> Generation:
    return next(g for g in GENERATIONS if g.name == name)


def top_level_shipped(name: str | None) -> tuple[str, ...]:
    """What Ollama ships at the top of lib/ollama for generation `name`; every generation's when unknown
    (then nothing one of them ships is called foreign)."""
    chosen = [by_name(name)] if name in {g.name for g in GENERATIONS} else list(GENERATIONS)
    return tuple(dict.fromkeys(p for g in chosen for p in g.top_level))


def newest() -> Generation:
    return GENERATIONS[-1]


def for_version(version: tuple[int, int, int]) -> tuple[Generation, str | None]:
    """(the generation of `version`, a note when it lies outside every known range)."""
    for generation, following in zip(GENERATIONS, GENERATIONS[1:] + (None,)):
        if generation.first <= version <= generation.last:
            return generation, None
        if following is not None and generation.last < version < following.first:
            return generation, (f"{_text(version)} is between known releases: checked as {generation.name} "
                                f"({_text(generation.first)}-{_text(generation.last)})")
    if version < GENERATIONS[0].first:
        first = GENERATIONS[0]
        return first, f"{_text(version)} is older than {_text(first.first)}: checked as {first.name}, unsupported"
    last = newest()
    return last, (f"{_text(version)} is newer than the newest known release {_text(last.last)}: checked as "
                  f"{last.name}, the newest known generation")


def unmodeled(version: str | None) -> str | None:
    """Why verify's model of discovery does not count for `version` (a release newer than any source
    read: its discovery may differ), or None. There only the real service's verdict proves anything."""
    parsed = parse_version(version)
    if parsed is None or parsed <= newest().last or (version or "").lstrip("v") in ALSO_READ:
        return None
    return (f"modeled is unverified for Ollama {version}: the newest release whose source was read is "
            f"{_text(newest().last)}; only the real service's own discovery proves this release")


def _text(version: tuple[int, int, int]) -> str:
    return ".".join(map(str, version))
