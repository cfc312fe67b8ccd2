"""systemd unit-file syntax: parse settings, split and quote Environment= values, merge environments."""

from __future__ import annotations

from dataclasses import dataclass, field

# How a value is written into a unit so systemd reads it back: pure text rules the profile model validates
# with too (model must not import facts), so they live in the model; re-exported for the writers here.
from fixer.model.unit_text import quote_word, unit_value  # noqa: F401


@dataclass(frozen=True)
class Setting:
    section: str
    key: str
    value: str
    line: int


WHITESPACE = " \t\n\r"  # systemd's WHITESPACE: strip() would also eat U+2028, U+0085, \v, \f, ...
COMMENTS = "#;"
_EOL = "\n\r\0"
BOM = "\ufeff"


def lines(text: str) -> list[str]:
    """Lines as systemd's read_line() cuts them: at \n, \r or NUL, where one \r\n (or \n\r) is a single
    end and NUL always ends one; nothing else (not U+2028, U+0085, \v or \f) breaks a line."""
    out: list[str] = []
    start = i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c not in _EOL:
            i += 1
            continue
        out.append(text[start:i])
        seen = {c}
        i += 1
        while c != "\0" and i < n and text[i] in _EOL and text[i] not in seen and text[i] != "\0":
            seen.add(text[i])
            i += 1
        start = i
    if start < n:
        out.append(text[start:])
    return out


def _strip(text: str) -> str:
    return text.strip(WHITESPACE)


def parse_file(text: str) -> tuple[list[Setting], list[str]]:
    """(settings in file order, section names in order), read as systemd's config_parse() does:
    comment lines (first non-blank character # or ;) are skipped even inside a continuation; a line
    ending in an unescaped backslash continues onto the next, the backslash becoming a space."""
    settings: list[Setting] = []
    sections: list[str] = []
    section = ""
    continuation: str | None = None
    start = 0
    for number, raw in enumerate(lines(text), start=1):
        head = raw.lstrip(WHITESPACE)
        if head and head[0] in COMMENTS:
            continue
        if number == 1 and raw.startswith(BOM):
            raw = raw[1:]
        if continuation is None:
            start = number
            joined = raw
        else:
            joined = continuation + raw
        if _escaped_end(joined):
            continuation = joined[:-1] + " "
            continue
        continuation = None
        section = _line(joined, section, start, settings, sections)
    if continuation is not None:  # a continuation that reaches the end of the file is a last line
        _line(continuation, section, start, settings, sections)
    return settings, sections


def parse(text: str) -> list[Setting]:
    return parse_file(text)[0]


def _escaped_end(line: str) -> bool:
    """Whether the line ends in an unescaped backslash (an odd run of them)."""
    return (len(line) - len(line.rstrip("\\"))) % 2 == 1


def _line(line: str, section: str, number: int, settings: list[Setting], sections: list[str]) -> str:
    line = _strip(line)
    if not line or line[0] in COMMENTS:
        return section
    if line[0] == "[":
        if line.endswith("]"):
            sections.append(line[1:-1])
            return line[1:-1]
        return section  # systemd refuses the whole file ("Invalid section header"); keep reading here
    key, sep, value = line.partition("=")
    if sep and section:
        settings.append(Setting(section, _strip(key), _strip(value), number))
    return section


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


def split_exec(value: str) -> list[str]:
    """An ExecStart= line as argv, with systemd's word splitter (the one Environment= uses), `$$` read
    back as `$`, and the executable's `@-:+!` prefixes dropped."""
    argv = [w.replace("$$", "$") for w in split_words(value)]
    if argv:
        argv[0] = argv[0].lstrip("@-:+!")
    return argv


_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'", "s": " "}


def _escape(c: str) -> str:
    return _ESCAPES.get(c, c)


def quote_assignment(name: str, value: str) -> str:
    """`"NAME=value"` for Environment= (NAME is a validated variable name: nothing in it to escape)."""
    return quote_word(f"{name}={value}")


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


def apply_environment_files(env: Environment, files: list[tuple[str, list[tuple[str, str]]]]) -> None:
    """EnvironmentFile= assignments override Environment= ones (systemd.exec(5)); UnsetEnvironment=
    still removes them from the final environment."""
    for path, pairs in files:
        for name, value in pairs:
            env.values[name] = value
            env.origin[name] = path
            env.history.setdefault(name, []).append((path, value))


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


_NEWLINE = "\n\r"
_SHELL_NEED_ESCAPE = '"\\`$'


def parse_env_file(text: str) -> list[tuple[str, str]]:
    """NAME=value pairs of an EnvironmentFile=, in order, as systemd's parse_env_file_internal()
    (src/basic/env-file.c) reads them: `#`/`;` comments only where a key could start, single and
    double quotes, backslash escapes and continuations; invalid names or values are dropped like
    strv_env_clean() drops them."""
    pairs: list[tuple[str, str]] = []
    state, key, value = "pre_key", [], None
    key_ws = value_ws = None  # where trailing whitespace of the key / an unquoted value starts

    def push() -> None:
        name = "".join(key[:key_ws] if key_ws is not None else key)
        pairs.append((name, "".join(value or [])))  # `NAME=` alone sets the empty string

    for c in text:
        if state == "pre_key":
            if c in COMMENTS:
                state = "comment"
            elif c not in WHITESPACE:
                state, key, key_ws = "key", [c], None
        elif state == "key":
            if c in _NEWLINE:
                state, key = "pre_key", []
            elif c == "=":
                state, value, value_ws = "pre_value", None, None
            else:
                key_ws = _blank_from(key_ws, c, len(key))
                key.append(c)
        elif state == "pre_value":
            if c in _NEWLINE:
                push()
                state, key, value = "pre_key", [], None
            elif c == "'":
                state, value = "single", value if value is not None else []
            elif c == '"':
                state, value = "double", value if value is not None else []
            elif c == "\\":
                state, value = "value_escape", value if value is not None else []
            elif c not in WHITESPACE:
                state, value = "value", (value if value is not None else []) + [c]
        elif state == "value":
            if c in _NEWLINE:
                if value_ws is not None:
                    del value[value_ws:]
                push()
                state, key, value = "pre_key", [], None
            elif c == "\\":
                state, value_ws = "value_escape", None
            else:
                value_ws = _blank_from(value_ws, c, len(value))
                value.append(c)
        elif state == "value_escape":
            state = "value"
            if c not in _NEWLINE:
                value.append(c)
        elif state == "single":
            if c == "'":
                state = "pre_value"
            else:
                value.append(c)
        elif state == "double":
            if c == '"':
                state = "pre_value"
            elif c == "\\":
                state = "double_escape"
            else:
                value.append(c)
        elif state == "double_escape":
            state = "double"
            if c in _SHELL_NEED_ESCAPE:
                value.append(c)
            elif c != "\n":
                value += ["\\", c]
        elif state == "comment":
            if c == "\\":
                state = "comment_escape"
            elif c in _NEWLINE:
                state = "pre_key"
        elif state == "comment_escape":
            state = "pre_key" if c in _NEWLINE else "comment"
    if state in ("pre_value", "value", "value_escape", "single", "double", "double_escape"):
        if state == "value" and value_ws is not None:
            del value[value_ws:]
        value = value if value is not None else []
        push()
    return [(name, val) for name, val in pairs if _valid_assignment(name, val)]


def _blank_from(mark: int | None, c: str, length: int) -> int | None:
    """Where the run of trailing whitespace that `c` (appended at `length`) extends or ends begins."""
    if c not in WHITESPACE:
        return None
    return length if mark is None else mark


def _valid_assignment(name: str, value: str) -> bool:
    """env_assignment_is_valid(): a shell-style name and a UTF-8 value (control characters are kept)."""
    import re

    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        return False
    # surrogates stand for bytes that are not UTF-8 (decoded with surrogateescape): systemd drops those
    return not any("\udc80" <= c <= "\udcff" for c in value)


def exec_argv(exec_start: str | None) -> list[str]:
    """ExecStart= as argv, split as systemd splits it, without its `@-:+!` prefixes."""
    return split_exec(exec_start) if exec_start else []
