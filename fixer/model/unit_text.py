"""How a value is written into a systemd unit so that systemd reads back exactly that value: pure text
rules, shared by the profile model's validation and the writers (fixer.facts.systemd re-exports them)."""

from __future__ import annotations


def quote_word(word: str, exec_line: bool = False) -> str:
    """One double-quoted word as systemd reads it back: `\\` and `"` escaped, `%` doubled (specifiers);
    on an ExecStart= line also `$` doubled (variable expansion)."""
    escaped = word.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return '"' + (escaped.replace("$", "$$") if exec_line else escaped) + '"'


def unit_value(value: str, kind: str = "text") -> str:
    """`value` as a unit file carries it so that systemd reads back exactly `value`: the one escaping of
    everything vgpu-fix writes into a unit or drop-in, by directive kind.

    - "word": one double-quoted word (Environment=): quote_word;
    - "exec": one word of an ExecStart= line: quote_word with `$` doubled too;
    - "text": a directive's raw value (ReadWritePaths=, LimitNOFILE=, ...): `%` doubled (specifiers);
    - "path": a path setting (PathChanged=): `%` doubled; systemd expands specifiers there, no escapes.
    Raw values cannot carry a line break, surrounding whitespace (systemd strips it) or a trailing
    backslash (a continuation line): ValueError, which the profile's validation reports."""
    if kind in ("word", "exec"):
        return quote_word(value, exec_line=kind == "exec")
    if kind not in ("text", "path"):
        raise ValueError(f"unknown unit value kind {kind!r}")
    if "\n" in value or "\r" in value:
        raise ValueError("a line break cannot be written into a unit file")
    if value != value.strip(" \t"):
        raise ValueError("systemd strips the spaces around a value, so it would read another one")
    if value.endswith("\\"):
        raise ValueError("a value ending in a backslash continues onto the next line in a unit file and "
                         "swallows the next setting")
    return value.replace("%", "%%")
