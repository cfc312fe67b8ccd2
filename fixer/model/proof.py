"""Proof levels: how far a verify got towards "Ollama uses the GPU", in order, and what reaches each."""

from __future__ import annotations

from enum import Enum


class Level(str, Enum):
    """Ordered: each level proves more than the one before it."""

    FILES = "files"  # ELF and loader resolution of the root's files; nothing executed
    MODELED = "modeled"  # the root's own programs run, sandboxed, the way its Ollama generation runs them
    SERVICE = "service"  # the real unit restarted on the live root; its own discovery lines from the journal
    MODEL = "model"  # a model loaded through the service's API, size_vram > 0

    def __str__(self) -> str:
        return self.value

    @property
    def rank(self) -> int:
        return LEVELS.index(self)

    # str's own comparisons are alphabetical: order by rank instead.
    def __lt__(self, other: object) -> bool:
        return self.rank < _rank(other)

    def __le__(self, other: object) -> bool:
        return self.rank <= _rank(other)

    def __gt__(self, other: object) -> bool:
        return self.rank > _rank(other)

    def __ge__(self, other: object) -> bool:
        return self.rank >= _rank(other)

    __hash__ = str.__hash__


def _rank(other: object) -> int:
    if not isinstance(other, Level):
        raise TypeError(f"cannot order a proof level against {type(other).__name__}")
    return other.rank


LEVELS = tuple(Level)

# verify's layers (both Ollama generations) -> the level each one proves.
LAYER_LEVELS = {
    "environment": Level.FILES, "static": Level.FILES,
    "load": Level.MODELED, "runner": Level.MODELED, "nvml": Level.MODELED, "discovery": Level.MODELED,
    "service": Level.SERVICE,
    "model": Level.MODEL,
}

# What reaches a level that was not asked for (the flag an operator adds).
HOW_TO_REACH = {
    Level.FILES: "always checked",
    Level.MODELED: "--probe (default on the live root /; off for any other root)",
    Level.SERVICE: "the live root only: `verify --service`; apply checks it whenever it restarts the unit "
                   "(unless --no-service-check)",
    Level.MODEL: "--model NAME (after the service level)",
}


class Outcome(str, Enum):
    """A verify's verdict against the level asked."""

    PASSED = "passed"  # the level asked was reached and nothing that was judged failed
    FAILED = "failed"  # a check failed: the backend does not load (or the service fell back to the CPU)
    NOT_PROVEN = "not_proven"  # nothing failed, but the level asked was not reached

    def __str__(self) -> str:
        return self.value


def level_of(layer: str) -> Level:
    return LAYER_LEVELS[layer]


def parse_level(text: str) -> Level:
    """A level named on the command line or in a module argument (ValueError names the choices)."""
    try:
        return Level(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a proof level; choose one of {', '.join(LEVELS)}") from None
