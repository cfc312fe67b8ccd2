"""Which Ollama releases log a message from a given `source=file.go:line`: a version range from a log."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

Version = tuple[int, int, int]

# Where each discovery/startup message is logged, per tagged release of github.com/ollama/ollama:
# versions_table.txt next to this module, written by scripts/gen_ollama_versions.py (releases between two
# listed ones share the line). "*discovery took" covers both timing messages, which share one call site.
TABLE_FILE = "versions_table.txt"
TIMING_MESSAGES = ("GPU bootstrap discovery took", "overall device VRAM discovery took")

# The two discovery generations (DESIGN.md): Ollama's own runner (v0.13–v0.24) and the bundled llama-server.
RUNNER_ENGINE, LLAMA_SERVER = "runner-engine", "llama-server"
FIRST_LLAMA_SERVER: Version = (0, 30, 0)


def generation_of(version: Version) -> str:
    return LLAMA_SERVER if version >= FIRST_LLAMA_SERVER else RUNNER_ENGINE


def parse_version(text: str) -> Version | None:
    parts = text.strip().lstrip("v").split("-")[0].split(".")
    try:
        numbers = [int(p) for p in parts[:3]]
    except ValueError:
        return None
    return tuple(numbers + [0] * (3 - len(numbers)))  # type: ignore[return-value]


def show(version: Version) -> str:
    return ".".join(str(n) for n in version)


@dataclass(frozen=True)
class Table:
    """The parsed version table: locations per message, the release span, and pre-releases equal to the newest."""

    rows: dict[tuple[str, str], list[tuple[Version, Version]]]
    first: Version
    newest: Version
    same_as_newest: tuple[str, ...]


def parse_table(text: str) -> Table:
    rows: dict[tuple[str, str], list[tuple[Version, Version]]] = {}
    meta: dict[str, str] = {}
    message = ""
    for line in text.splitlines():
        if line.startswith("#"):
            key, sep, value = line[1:].partition(":")
            if sep:
                meta[key.strip()] = value.strip()
            continue
        if not line.strip():
            continue
        if not line.startswith(" "):
            message = line.strip()
            continue
        location, *spans = line.split()
        ranges = []
        for span in spans:
            low, high = (parse_version(v) for v in span.split("-"))
            if low is None or high is None:
                raise ValueError(f"{TABLE_FILE}: bad release span {span!r} in {line.strip()!r}")
            ranges.append((low, high))
        rows[(message, location)] = ranges
    releases = meta.get("releases", "").split()[:1]
    first, _, newest = releases[0].partition("-") if releases else ("", "", "")
    low, high = parse_version(first), parse_version(newest)
    if low is None or high is None:
        raise ValueError(f"{TABLE_FILE}: no '# releases: FIRST-NEWEST' header")
    return Table(rows, low, high, tuple(meta.get("same-as-newest", "").split()))


@lru_cache(maxsize=1)
def table() -> Table:
    from importlib.resources import files

    return parse_table(files(__package__).joinpath(TABLE_FILE).read_text(encoding="utf-8"))


def _table() -> dict[tuple[str, str], list[tuple[Version, Version]]]:
    return table().rows


def known_messages() -> set[str]:
    return {message for message, _ in _table()} | set(TIMING_MESSAGES)


def ranges_for(message: str, location: str) -> list[tuple[Version, Version]] | None:
    """Release ranges that log `message` at `location`; None when the message is not tracked."""
    key = "*discovery took" if message in TIMING_MESSAGES else message
    if key not in {m for m, _ in _table()}:
        return None
    return _table().get((key, location), [])


def _intersect(a: list[tuple[Version, Version]], b: list[tuple[Version, Version]]) -> list[tuple[Version, Version]]:
    out = []
    for low_a, high_a in a:
        for low_b, high_b in b:
            low, high = max(low_a, low_b), min(high_a, high_b)
            if low <= high:
                out.append((low, high))
    return sorted(out)


def _known_prerelease(exact: str) -> bool:
    """A pre-release tag the table lists as logging exactly like the newest release (e.g. 0.33.0-rc2)."""
    return exact.strip().lstrip("v") in table().same_as_newest


@dataclass
class VersionGuess:
    """What the log says about the Ollama version: exact when it logged it, else a range; and its generation."""

    exact: str | None = None
    ranges: list[tuple[Version, Version]] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    newer_than_known: bool = False

    @property
    def known(self) -> bool:
        return self.exact is not None or bool(self.ranges)

    @property
    def generation(self) -> str | None:
        """runner-engine or llama-server when the version decides it; None when it does not."""
        if self.exact and (v := parse_version(self.exact)):
            return generation_of(v)
        kinds = {generation_of(lo) for lo, _ in self.ranges} | {generation_of(hi) for _, hi in self.ranges}
        return kinds.pop() if len(kinds) == 1 else None

    def _span(self, lo: Version, hi: Version) -> str:
        text = show(lo) if lo == hi else f"{show(lo)}–{show(hi)}"
        pre = table().same_as_newest
        if hi == table().newest and pre:
            text += f" or a later pre-release (≤ {pre[-1]})" if lo != hi else f" or later (≤ {pre[-1]})"
        return text

    def describe(self) -> str:
        if self.exact:
            tail = f" (newer than the newest known release {show(table().newest)})" if self.newer_than_known else ""
            return f"Ollama {self.exact}{tail}"
        if self.ranges:
            return "Ollama " + " or ".join(self._span(lo, hi) for lo, hi in self.ranges) + " (from source locations)"
        if self.unmatched:
            return "a patched or unreleased Ollama build (source locations match no release)"
        return "unknown Ollama version"

    def to_dict(self) -> dict:
        return {
            "exact": self.exact,
            "ranges": [[show(lo), show(hi)] for lo, hi in self.ranges],
            "evidence": self.evidence,
            "unmatched": self.unmatched,
            "newer_than_known": self.newer_than_known,
            "generation": self.generation,
            "text": self.describe(),
        }


def infer(observations: list[tuple[str, str]], exact: str | None = None) -> VersionGuess:
    """Narrow the release range from (message, source location) pairs seen in a log."""
    guess = VersionGuess(exact=exact)
    current: list[tuple[Version, Version]] | None = None
    for message, location in dict.fromkeys(observations):
        spans = ranges_for(message, location)
        if spans is None:
            continue
        if not spans:
            guess.unmatched.append(f"{location} {message!r}")
            continue
        narrowed = spans if current is None else _intersect(current, spans)
        if not narrowed:
            guess.unmatched.append(f"{location} {message!r}")
            continue
        current = narrowed
        guess.evidence.append(f"{location} {message!r}")
    guess.ranges = current or []
    v = parse_version(exact) if exact else None
    if exact and v is not None:
        newest = table().newest
        # A listed pre-release logs exactly like the newest release; a later version is beyond the table.
        effective = newest if _known_prerelease(exact) else v
        guess.newer_than_known = v > newest and not _known_prerelease(exact)
        reaches_newest = current is None or any(hi == newest for _, hi in current)
        consistent = current is None or any(lo <= effective <= hi for lo, hi in current)
        if not consistent and not (guess.newer_than_known and reaches_newest):
            guess.unmatched.append(f"logged version {exact} disagrees with the source locations")
    return guess
