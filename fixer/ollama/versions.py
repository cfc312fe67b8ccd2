"""Which Ollama releases log a message from a given `source=file.go:line`: a version range from a log."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

Version = tuple[int, int, int]

# Where each discovery/startup message is logged, per tagged release v0.11.0 … v0.32.15 of
# github.com/ollama/ollama (derived from the tags; releases between two listed ones share the line).
# "*discovery took" covers both "GPU bootstrap discovery took" and "overall device VRAM discovery took".
TABLE = """
*discovery took
    runner.go:45     0.12.4-0.12.6
    runner.go:41     0.12.7-0.12.9
    runner.go:40     0.12.10-0.24.0
    runner.go:37     0.30.0-0.30.0
    runner.go:42     0.30.1-0.32.15
bootstrap discovery took
    runner.go:414    0.12.4-0.12.5
    runner.go:451    0.12.6-0.12.6
    runner.go:468    0.12.7-0.12.7
    runner.go:471    0.12.8-0.12.9
    runner.go:415    0.12.10-0.12.10
    runner.go:418    0.12.11-0.12.11
    runner.go:422    0.13.0-0.13.0
    runner.go:436    0.13.1-0.13.1
    runner.go:437    0.13.2-0.22.1
    runner.go:433    0.23.0-0.24.0
    runner.go:472    0.30.0-0.30.0
    runner.go:485    0.30.1-0.31.1
    runner.go:494    0.31.2-0.32.15
discovering available GPUs...
    runner.go:80     0.12.4-0.12.6
    runner.go:76     0.12.7-0.12.9
    runner.go:67     0.12.10-0.24.0
    runner.go:55     0.30.0-0.30.0
    runner.go:60     0.30.1-0.32.15
evaluating which, if any, devices to filter out
    runner.go:120    0.13.0-0.13.0
    runner.go:124    0.13.1-0.22.1
    runner.go:123    0.23.0-0.24.0
    runner.go:117    0.30.0-0.30.0
    runner.go:122    0.30.1-0.31.1
    runner.go:131    0.31.2-0.32.15
failure during GPU discovery
    runner.go:507    0.12.4-0.12.5
    runner.go:545    0.12.6-0.12.6
    runner.go:495    0.12.7-0.12.7
    runner.go:498    0.12.8-0.12.9
    runner.go:442    0.12.10-0.12.10
    runner.go:445    0.12.11-0.12.11
    runner.go:449    0.13.0-0.13.0
    runner.go:463    0.13.1-0.13.1
    runner.go:464    0.13.2-0.22.1
    runner.go:462    0.23.0-0.24.0
filtering device which didn't fully initialize
    runner.go:158    0.12.7-0.12.9
    runner.go:132    0.12.10-0.12.10
    runner.go:135    0.12.11-0.12.11
    runner.go:139    0.13.0-0.13.0
    runner.go:153    0.13.1-0.22.1
    runner.go:152    0.23.0-0.24.0
    runner.go:146    0.30.0-0.30.0
    runner.go:151    0.30.1-0.31.1
    runner.go:160    0.31.2-0.32.15
inference compute
    types.go:130     0.11.0-0.11.8
    types.go:131     0.11.9-0.12.3
    types.go:112     0.12.4-0.12.6
    types.go:129     0.12.4-0.12.6
    types.go:42      0.12.7-0.24.0
    types.go:60      0.12.7-0.24.0
    types.go:32      0.30.0-0.32.15
    types.go:50      0.30.0-0.32.15
server config
    routes.go:1297   0.11.0-0.11.3
    routes.go:1304   0.11.4-0.11.4
    routes.go:1318   0.11.5-0.11.6
    routes.go:1331   0.11.7-0.11.10
    routes.go:1332   0.11.11-0.11.11
    routes.go:1466   0.12.0-0.12.0
    routes.go:1475   0.12.1-0.12.3
    routes.go:1479   0.12.4-0.12.4
    routes.go:1481   0.12.5-0.12.5
    routes.go:1511   0.12.6-0.12.6
    routes.go:1524   0.12.7-0.12.9
    routes.go:1525   0.12.10-0.12.10
    routes.go:1544   0.12.11-0.13.2
    routes.go:1554   0.13.3-0.13.5
    routes.go:1614   0.14.0-0.14.2
    routes.go:1629   0.14.3-0.14.3
    routes.go:1631   0.15.0-0.15.4
    routes.go:1636   0.15.5-0.16.1
    routes.go:1663   0.16.2-0.17.4
    routes.go:1665   0.17.5-0.17.5
    routes.go:1664   0.17.6-0.17.6
    routes.go:1658   0.17.7-0.17.7
    routes.go:1727   0.18.0-0.18.2
    routes.go:1740   0.18.3-0.18.3
    routes.go:1742   0.19.0-0.19.0
    routes.go:1744   0.20.0-0.20.4
    routes.go:1752   0.20.5-0.21.2
    routes.go:1762   0.22.0-0.22.0
    routes.go:1782   0.22.1-0.23.1
    routes.go:1802   0.23.2-0.24.0
    routes.go:1919   0.30.0-0.30.10
    routes.go:1961   0.30.11-0.31.1
    routes.go:1947   0.31.2-0.32.5
    routes.go:1933   0.32.6-0.32.14
    routes.go:1951   0.32.15-0.32.15
skipping available library at user's request
    runner.go:97     0.13.0-0.13.0
    runner.go:98     0.13.1-0.24.0
    runner.go:87     0.30.0-0.30.0
    runner.go:92     0.30.1-0.31.1
    runner.go:101    0.31.2-0.32.15
starting runner
    server.go:383    0.11.5-0.11.7
    server.go:388    0.11.8-0.11.8
    server.go:398    0.11.9-0.11.10
    server.go:399    0.11.11-0.12.3
    server.go:400    0.12.4-0.12.6 0.12.8-0.12.10
    server.go:385    0.12.7-0.12.7
    server.go:392    0.12.11-0.13.3
    server.go:429    0.13.4-0.15.4
    server.go:430    0.15.5-0.15.5 0.17.5-0.18.2
    server.go:431    0.15.6-0.17.4
    server.go:432    0.18.3-0.20.3
    server.go:444    0.20.4-0.22.1
    server.go:433    0.23.0-0.24.0
verifying if device is supported
    runner.go:132    0.13.0-0.13.0
    runner.go:146    0.13.1-0.22.1
    runner.go:145    0.23.0-0.24.0
    runner.go:139    0.30.0-0.30.0
    runner.go:144    0.30.1-0.31.1
    runner.go:153    0.31.2-0.32.15
"""
TIMING_MESSAGES = ("GPU bootstrap discovery took", "overall device VRAM discovery took")
FIRST_KNOWN, LAST_KNOWN = (0, 11, 0), (0, 32, 15)


def parse_version(text: str) -> Version | None:
    parts = text.strip().lstrip("v").split("-")[0].split(".")
    try:
        numbers = [int(p) for p in parts[:3]]
    except ValueError:
        return None
    return tuple(numbers + [0] * (3 - len(numbers)))  # type: ignore[return-value]


def show(version: Version) -> str:
    return ".".join(str(n) for n in version)


@lru_cache(maxsize=1)
def _table() -> dict[tuple[str, str], list[tuple[Version, Version]]]:
    out: dict[tuple[str, str], list[tuple[Version, Version]]] = {}
    message = ""
    for line in TABLE.splitlines():
        if not line.strip():
            continue
        if not line.startswith(" "):
            message = line.strip()
            continue
        location, *spans = line.split()
        ranges = []
        for span in spans:
            low, high = span.split("-")
            ranges.append((parse_version(low), parse_version(high)))
        out[(message, location)] = ranges  # type: ignore[assignment]
    return out


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


@dataclass
class VersionGuess:
    """What the log says about the Ollama version: exact when it logged it, else a range."""

    exact: str | None = None
    ranges: list[tuple[Version, Version]] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)

    @property
    def known(self) -> bool:
        return self.exact is not None or bool(self.ranges)

    def describe(self) -> str:
        if self.exact:
            return f"Ollama {self.exact}"
        if self.ranges:
            spans = [show(lo) if lo == hi else f"{show(lo)}–{show(hi)}" for lo, hi in self.ranges]
            return "Ollama " + " or ".join(spans) + " (from source locations)"
        if self.unmatched:
            return "a patched or unreleased Ollama build (source locations match no release)"
        return "unknown Ollama version"

    def to_dict(self) -> dict:
        return {
            "exact": self.exact,
            "ranges": [[show(lo), show(hi)] for lo, hi in self.ranges],
            "evidence": self.evidence,
            "unmatched": self.unmatched,
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
    if exact and (v := parse_version(exact)) and current is not None:
        if not any(lo <= v <= hi for lo, hi in current):
            guess.unmatched.append(f"logged version {exact} disagrees with the source locations")
    return guess
