"""Generate fixer/ollama/versions_table.txt (message -> source file:line -> release ranges) from an Ollama git dir.

Usage: python3 scripts/gen_ollama_versions.py /path/to/ollama.git --out fixer/ollama/versions_table.txt
Reads the release tags vX.Y.Z (>= 0.11.0) and the pre-release tags newer than the newest release; stdlib only.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

FIRST_RELEASE = (0, 11, 0)
SOURCE_DIRS = ("discover", "llm", "server")  # top-level .go files only, tests excluded

# The two timing messages share one call site, `slog.Debug(msg, ...)`, so they are tracked as one entry.
TIMING = "*discovery took"
TIMING_MESSAGES = ("GPU bootstrap discovery took", "overall device VRAM discovery took")

# Discovery and startup messages worth locating: the runner-engine generation (v0.11–v0.24) and the
# llama-server generation (v0.30+). Long ones are the concatenated literal, exactly as slog prints it.
MESSAGES = (
    TIMING,
    "bootstrap discovery took",
    "discovering available GPUs...",
    "evaluating which, if any, devices to filter out",
    "failure during GPU discovery",
    "filtering device which didn't fully initialize",
    "inference compute",
    "server config",
    "skipping available library at user's request",
    "starting runner",
    "verifying if device is supported",
    # llama-server generation
    "could not verify NVIDIA driver compatibility for CUDA",
    "could not verify NVIDIA driver compatibility for an older NVIDIA GPU",
    "dropping duplicate device",
    "dropping integrated GPU; to enable, set OLLAMA_IGPU_ENABLE=1",
    "failure during llama-server GPU discovery",
    "filtering device with overlapping libraries",
    "llama-server --list-devices failed",
    "llama-server GPU discovery watchdog timed out",
    "llama-server device discovery took",
    "llama-server discovery: could not determine compiled CUDA architectures — "
    "architecture filtering disabled. If inference crashes on older GPUs, "
    "check llama-server system_info output for ARCHS.",
    "llama-server discovery: could not determine compute capability for CUDA device — "
    "architecture filtering disabled for this device. If inference crashes, "
    "check that the CUDA backend supports this GPU.",
    "llama-server discovery: failed to start",
    "llama-server discovery: server startup exited",
    "llama-server discovery: stopped subprocess after collecting GPU info",
    "llama-server discovery: system_info line not found in output - "
    "CUDA architecture filtering will be disabled. If GPU inference fails, "
    "this may indicate an incompatible llama-server version.",
    "llama-server discovery: timed out waiting for server startup",
    "llama-server not available for device discovery",
    "native GPU discovery failed",
    "NVIDIA driver too old",
    "skipping CUDA device — compute capability not in compiled architectures",
    "skipping pseudo-device with zero memory",
    "starting llama-server",
)

Version = tuple[int, int, int]
CALL = re.compile(r"\bslog\.(Debug|Info|Warn|Error)(Context)?\s*\(")
STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"|`[^`]*`')
IDENT = re.compile(r"[A-Za-z_]\w*")
ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "'": "'"}


def git(git_dir: str, *args: str, data: bytes | None = None) -> bytes:
    """Run git in `git_dir` (`git -C` finds a bare mirror and a work tree alike)."""
    return subprocess.run(["git", "-C", git_dir, *args], input=data, check=True, capture_output=True).stdout


def release_tags(git_dir: str) -> tuple[list[tuple[Version, str]], list[tuple[Version, str]]]:
    """(releases >= FIRST_RELEASE, pre-releases `vX.Y.Z-rcN` newer than the newest release), each sorted."""
    releases, pre = [], []
    for tag in git(git_dir, "tag", "--list", "v*").decode().split():
        if m := re.fullmatch(r"v(\d+)\.(\d+)\.(\d+)(-rc(\d+))?", tag):
            version = (int(m[1]), int(m[2]), int(m[3]))
            if m[4]:
                pre.append(((*version, int(m[5])), tag))
            elif version >= FIRST_RELEASE:
                releases.append((version, tag))
    releases.sort()
    newest = releases[-1][0] if releases else FIRST_RELEASE
    return releases, sorted((v, t) for v, t in pre if v[:3] > newest)


def go_files(git_dir: str, tag: str) -> list[tuple[str, str]]:
    """(blob sha, file name) of the non-test .go files directly inside SOURCE_DIRS at `tag`."""
    listing = git(git_dir, "ls-tree", tag, *(d + "/" for d in SOURCE_DIRS)).decode()
    files = []
    for row in listing.splitlines():
        meta, path = row.split("\t", 1)
        kind, sha = meta.split()[1:3]
        name = path.rsplit("/", 1)[-1]
        if kind == "blob" and name.endswith(".go") and not name.endswith("_test.go"):
            files.append((sha, name))
    return files


def read_blobs(git_dir: str, shas: list[str]) -> dict[str, str]:
    """Contents of many blobs through one `git cat-file --batch`."""
    out = git(git_dir, "cat-file", "--batch", data="".join(s + "\n" for s in shas).encode())
    blobs, pos = {}, 0
    for sha in shas:
        end = out.index(b"\n", pos)
        header = out[pos:end].split()
        if header[1] == b"missing":
            pos = end + 1
            continue
        size = int(header[2])
        blobs[sha] = out[end + 1:end + 1 + size].decode("utf-8", "replace")
        pos = end + 1 + size + 1
    return blobs


def unquote(literal: str) -> str:
    if literal.startswith("`"):
        return literal[1:-1]
    body, out, i = literal[1:-1], [], 0
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            out.append(ESCAPES.get(body[i + 1], body[i + 1]))
            i += 2
        else:
            out.append(body[i])
            i += 1
    return "".join(out)


def skip_space(text: str, pos: int) -> int:
    while pos < len(text):
        if text[pos].isspace():
            pos += 1
        elif text.startswith("//", pos):
            end = text.find("\n", pos)
            pos = len(text) if end < 0 else end
        else:
            break
    return pos


def first_argument(text: str, pos: int) -> tuple[str, str] | None:
    """('string', value) for a literal (or `+` concatenation of literals), ('ident', name), or None."""
    pos = skip_space(text, pos)
    if m := STRING.match(text, pos):
        parts = [unquote(m[0])]
        pos = m.end()
        while True:
            nxt = skip_space(text, pos)
            if not text.startswith("+", nxt):
                return "string", "".join(parts)
            m = STRING.match(text, skip_space(text, nxt + 1))
            if not m:
                return "string", "".join(parts)
            parts.append(unquote(m[0]))
            pos = m.end()
    if m := IDENT.match(text, pos):
        after = skip_space(text, m.end())
        if text[after:after + 1] in (",", ")"):
            return "ident", m[0]
    return None


def skip_context_argument(text: str, pos: int) -> int:
    """Position just after the first argument (`ctx`, `context.TODO()`) of a *Context call."""
    depth = 0
    while pos < len(text):
        ch = text[pos]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            return pos + 1
        pos += 1
    return pos


def messages_in(source: str) -> list[tuple[str, int]]:
    """(message, line) of every slog.Debug/Info/Warn/Error[Context] call; the line slog reports is the call's."""
    found = []
    for call in CALL.finditer(source):
        pos = call.end()
        if call[2]:
            pos = skip_context_argument(source, pos)
        arg = first_argument(source, pos)
        if arg is None:
            continue
        line = source.count("\n", 0, call.start()) + 1
        kind, value = arg
        if kind == "string":
            found.append((value, line))
            continue
        assigned = re.findall(rf"\b{re.escape(value)}\s*:?=\s*(\"(?:[^\"\\\n]|\\.)*\")", source)
        if any(unquote(literal) in TIMING_MESSAGES for literal in assigned):
            found.append((TIMING, line))
    return found


def show(version: Version) -> str:
    return ".".join(map(str, version))


def locations(git_dir: str, tags: list[str]) -> list[dict[str, set[str]]]:
    """Per tag: tracked message -> the `file.go:line` locations that log it."""
    per_tag = [go_files(git_dir, t) for t in tags]
    blobs = read_blobs(git_dir, sorted({sha for files in per_tag for sha, _ in files}))
    tracked = set(MESSAGES)
    parsed = {sha: [(m, n) for m, n in messages_in(text) if m in tracked] for sha, text in blobs.items()}
    out: list[dict[str, set[str]]] = []
    for files in per_tag:
        found: dict[str, set[str]] = defaultdict(set)
        for sha, name in files:
            for message, line in parsed.get(sha, []):
                found[message].add(f"{name}:{line}")
        out.append(found)
    return out


def spans(indexes: list[int], versions: list[Version]) -> list[str]:
    """Runs of consecutive release indexes as `low-high` version spans."""
    out, start = [], indexes[0]
    for prev, cur in zip(indexes, indexes[1:] + [None]):
        if cur != prev + 1:
            out.append(f"{show(versions[start])}-{show(versions[prev])}")
            start = cur
    return out


def build_table(git_dir: str) -> tuple[str, list[str]]:
    """The table text, and the pre-release tags it does not cover (their locations differ from the newest release)."""
    releases, pre = release_tags(git_dir)
    found = locations(git_dir, [t for _, t in releases] + [t for _, t in pre])
    per_release, per_pre = found[: len(releases)], found[len(releases):]
    same = [t for (_, t), locs in zip(pre, per_pre) if locs == per_release[-1]]
    differing = [t for _, t in pre if t not in same]

    seen: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))  # message -> loc -> indexes
    for index, by_message in enumerate(per_release):
        for message, locs in by_message.items():
            for location in locs:
                seen[message][location].append(index)
    versions = [v for v, _ in releases]
    out = [
        "# Ollama version table: message -> source location -> release ranges. Generated; do not edit.",
        "# Regenerate: python3 scripts/gen_ollama_versions.py OLLAMA_GIT_DIR --out fixer/ollama/versions_table.txt",
        f"# releases: {show(versions[0])}-{show(versions[-1])} ({len(versions)} tags)",
        f"# same-as-newest: {' '.join(t.lstrip('v') for t in same)}",
    ]
    for message in sorted(seen, key=str.casefold):
        rows = []
        for location, indexes in seen[message].items():
            name, line = location.rsplit(":", 1)
            rows.append(((indexes[0], name, int(line)), f"    {location:<16} {' '.join(spans(indexes, versions))}"))
        out.append(message)
        out += [row for _, row in sorted(rows)]
    return "\n".join(out) + "\n", differing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("git_dir", help="an Ollama git dir (a bare mirror works) or a work tree")
    parser.add_argument("--out", help="write the table here instead of stdout")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        table, differing = build_table(args.git_dir)
    except subprocess.CalledProcessError as exc:
        print(f"git failed: {' '.join(exc.cmd)}: {exc.stderr.decode().strip()}", file=sys.stderr)
        return 1
    if args.out:
        Path(args.out).write_text(table, encoding="utf-8")
    else:
        sys.stdout.write(table)
    for tag in differing:
        print(f"note: pre-release {tag} logs from other lines than the newest release; not in the table", file=sys.stderr)
    print(f"table built in {time.monotonic() - started:.1f}s", file=sys.stderr)
    return 0

if __name__ == "__main__":
    sys.exit(main())
