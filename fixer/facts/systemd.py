"""systemd unit-file syntax: parse settings, split and quote Environment= values, merge environments."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Setting:
    section: str
    key: str
    value: str
    line: int


def parse(text: str) -> list[Setting]:
    """Settings in file order; continuation lines (trailing backslash) are joined like systemd does."""
    settings: list[Setting] = []
    section = ""
    pending: tuple[int, str] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if pending is not None:
            start, head = pending
            if line.startswith(("#", ";")):
                continue
            if line.endswith("\\"):
                pending = (start, head + " " + line[:-1])
                continue
            _add(settings, section, head + " " + line, start)
            pending = None
            continue
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        if line.endswith("\\"):
            pending = (number, line[:-1])
            continue
        _add(settings, section, line, number)
    if pending is not None:
        _add(settings, section, pending[1], pending[0])
    return settings


def _add(settings: list[Setting], section: str, line: str, number: int) -> None:
    key, sep, value = line.partition("=")
    if sep:
        settings.append(Setting(section, key.strip(), value.strip(), number))


def unescape_specifiers(word: str) -> str:
    return word.replace("%%", "%")


def split_words(value: str) -> list[str]:
    """Split an Environment=/UnsetEnvironment= value into words with systemd's quoting rules."""
    words: list[str] = []
    i, n = 0, len(value)
    while i < n:
        while i < n and value[i] in " \t":
            i += 1
        if i >= n:
            break
        word: list[str] = []
        quote = None
        while i < n:
            c = value[i]
            if quote:
                if c == "\\" and i + 1 < n:
                    word.append(_escape(value[i + 1]))
                    i += 2
                    continue
                if c == quote:
                    quote = None
                    i += 1
                    continue
                word.append(c)
            elif c in "\"'":
                quote = c
            elif c in " \t":
                break
            elif c == "\\" and i + 1 < n:
                word.append(_escape(value[i + 1]))
                i += 2
                continue
            else:
                word.append(c)
            i += 1
        words.append(unescape_specifiers("".join(word)))
    return words


_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'", "s": " "}


def _escape(c: str) -> str:
    return _ESCAPES.get(c, c)


def quote_assignment(name: str, value: str) -> str:
    """`"NAME=value"` with `\\`, `"` escaped and `%` doubled, as systemd reads it back."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'"{name}={escaped}"'


def escape_directive(value: str) -> str:
    return value.replace("%", "%%")


def assignments(settings) -> list[tuple[str, str | None]]:
    """(name, value) per variable a file's [Service] settings assign, in order; value None for an unset."""
    found: list[tuple[str, str | None]] = []
    for s in settings:
        if s.section != "Service":
            continue
        if s.key == "Environment":
            found += [(w.partition("=")[0], w.partition("=")[2]) for w in split_words(s.value) if "=" in w]
        elif s.key == "UnsetEnvironment":
            found += [(w.partition("=")[0], None) for w in split_words(s.value)]
    return found


@dataclass
class Environment:
    """The environment a service gets, and which file set or unset each variable."""

    values: dict[str, str] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)
    unset: dict[str, str] = field(default_factory=dict)
    history: dict[str, list[tuple[str, str | None]]] = field(default_factory=dict)

    def effective(self) -> dict[str, str]:
        # `UnsetEnvironment=NAME=VALUE` removes only that exact assignment.
        return {k: v for k, v in self.values.items() if not self.unset_by(k)}

    def unset_by(self, name: str) -> str | None:
        """The file whose UnsetEnvironment= removes `name` as it is currently set, if any."""
        if name in self.unset:
            return self.unset[name]
        return self.unset.get(f"{name}={self.values.get(name)}") if name in self.values else None


def merge_environment(files: list[tuple[str, list[Setting]]]) -> Environment:
    """Apply Environment=/UnsetEnvironment= of [Service] in file order; later wins, empty resets."""
    env = Environment()
    for path, settings in files:
        for s in settings:
            if s.section != "Service":
                continue
            if s.key == "Environment":
                if not s.value:
                    env.values.clear()
                    env.origin.clear()
                    continue
                for word in split_words(s.value):
                    name, sep, val = word.partition("=")
                    if sep and name:
                        env.values[name] = val
                        env.origin[name] = path
                        env.history.setdefault(name, []).append((path, val))
            elif s.key == "UnsetEnvironment":
                if not s.value:
                    env.unset.clear()
                    continue
                for word in split_words(s.value):
                    env.unset[word] = path
                    env.history.setdefault(word.partition("=")[0], []).append((path, None))
    return env


def last_values(files: list[tuple[str, list[Setting]]], section: str = "Service") -> dict[str, tuple[str, list[str]]]:
    """For every non-environment key: (file that last set it, values in effect; empty resets lists)."""
    merged: dict[str, tuple[str, list[str]]] = {}
    for path, settings in files:
        for s in settings:
            if s.section != section or s.key in ("Environment", "UnsetEnvironment"):
                continue
            _, previous = merged.get(s.key, ("", []))
            merged[s.key] = (path, [] if not s.value else [*previous, s.value])
    return merged
