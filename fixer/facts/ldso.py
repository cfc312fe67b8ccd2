"""glibc's loader files inside a root: ld.so.preload, ld.so.conf (with includes), ld.so.cache, default dirs."""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass

from fixer.facts.paths import glob_in, read_state
from fixer.facts.reading import read_file
from fixer.model.owned import LD_SO_CACHE, LD_SO_CONF, LD_SO_PRELOAD  # noqa: E402,F401  (the one definition)

LDCONFIG_AUX_CACHE = "/var/cache/ldconfig/aux-cache"
# ld.so's default search dirs after the cache, per ELF machine (the multiarch dirs of Debian's glibc).
DEFAULT_DIRS = {
    "EM_X86_64": ("/lib64", "/usr/lib64", "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib", "/usr/lib"),
    "EM_AARCH64": ("/lib64", "/usr/lib64", "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/lib", "/usr/lib"),
}
FALLBACK_DIRS = ("/lib64", "/usr/lib64", "/lib", "/usr/lib")
# Every dir ldconfig trusts on some machine: the planner and doctor need not know the host's ELF machine.
TRUSTED_DIRS = tuple(dict.fromkeys(d for dirs in DEFAULT_DIRS.values() for d in dirs))
MAX_INCLUDE_DEPTH = 8
C_SPACE = " \t\n\v\f\r"  # isspace() in the C locale, what ldconfig trims

OLD_MAGIC = b"ld.so-1.7.0"
NEW_MAGIC = b"glibc-ld.so.cache1.1"
EXTENSION_MAGIC = 0xEAA42174
HWCAP_EXTENSION = 1 << 62
TAG_GENERATOR, TAG_HWCAPS = 0, 1

# (type byte, arch bits) as ldconfig -p prints them.
FLAG_TYPES = {0: "libc4", 1: "ELF", 2: "libc5", 3: "libc6"}
FLAG_ARCHES = {0x0000: "", 0x0100: "64bit", 0x0200: "IA-64", 0x0300: "x86-64", 0x0400: "64bit",
               0x0500: "64bit", 0x0600: "hard-float", 0x0700: "soft-float", 0x0800: "x32",
               0x0900: "hard-float", 0x0a00: "AArch64", 0x0b00: "soft-float", 0x0c00: "nan2008",
               0x0d00: "nan2008", 0x0e00: "64bit", 0x0f00: "64bit", 0x1000: "double-float",
               0x1100: "single-float"}
# What a given ld.so accepts (FLAG_ELF_LIBC6 | the arch bits its ELF machine and class imply).
LOADER_FLAGS = {("EM_X86_64", 64): 0x0303, ("EM_X86_64", 32): 0x0803, ("EM_386", 32): 0x0003,
                ("EM_AARCH64", 64): 0x0a03, ("EM_PPC64", 64): 0x0503, ("EM_S390", 64): 0x0403,
                ("EM_RISCV", 64): 0x1003}


class LdCacheError(Exception):
    """The file is not an ld.so cache or is damaged."""


@dataclass(frozen=True)
class CacheEntry:
    soname: str
    flags: int
    path: str
    hwcaps: str | None = None
    osversion: int = 0

    @property
    def arch(self) -> str:
        """The `(libc6,x86-64)` label of ldconfig -p."""
        kind = FLAG_TYPES.get(self.flags & 0xFF, f"unknown-{self.flags & 0xFF:#x}")
        arch = FLAG_ARCHES.get(self.flags & 0xFF00, f"{self.flags & 0xFF00:#x}")
        label = f"{kind},{arch}" if arch else kind
        return f"{label}, hwcap: \"{self.hwcaps}\"" if self.hwcaps else label

    def to_dict(self) -> dict:
        return {"soname": self.soname, "arch": self.arch, "flags": self.flags, "path": self.path,
                "hwcaps": self.hwcaps}


@dataclass(frozen=True)
class LdCache:
    entries: tuple[CacheEntry, ...]
    format: str
    generator: str | None = None

    def lookup(self, soname: str, flags: int | None = None) -> CacheEntry | None:
        """The entry the loader takes for `soname`: the first with matching flags, no hwcaps subdir preferred."""
        matches = [e for e in self.entries if e.soname == soname and (flags is None or e.flags == flags)]
        plain = [e for e in matches if e.hwcaps is None]
        return (plain or matches or [None])[0]


def root_cache(root: str) -> LdCache:
    """The root's /etc/ld.so.cache, symlinks resolved inside the root and read with the size cap."""
    from fixer.errors import Conflict
    from fixer.facts.paths import read_file

    try:
        data = read_file(root, LD_SO_CACHE)
    except OSError as err:
        raise LdCacheError(f"{LD_SO_CACHE}: {err.strerror or err}") from None
    except Conflict as err:
        raise LdCacheError(str(err)) from None
    try:
        return parse_cache(data)
    except LdCacheError as err:
        raise LdCacheError(f"{LD_SO_CACHE}: {err}") from None


def read_cache(path: str | os.PathLike) -> LdCache:
    path = os.fspath(path)
    try:
        data = read_file(path)
    except OSError as err:
        raise LdCacheError(f"{path}: {err.strerror or err}") from None
    try:
        return parse_cache(data)
    except LdCacheError as err:
        raise LdCacheError(f"{path}: {err}") from None


def parse_cache(data: bytes) -> LdCache:
    if data.startswith(NEW_MAGIC):
        return _parse_new(data, 0, "new")
    if data.startswith(OLD_MAGIC):
        (nlibs,) = _unpack("<I", data, 12)
        end = 16 + nlibs * 12
        new_at = (end + 7) & ~7
        if data[new_at:new_at + len(NEW_MAGIC)] == NEW_MAGIC:
            return _parse_new(data, new_at, "compat")
        return _parse_old(data, nlibs, end)
    raise LdCacheError("not an ld.so cache (unknown magic)")


def _unpack(fmt: str, data: bytes, offset: int) -> tuple:
    try:
        return struct.unpack_from(fmt, data, offset)
    except struct.error:
        raise LdCacheError(f"truncated at offset {offset}") from None


def _string(data: bytes, offset: int) -> str:
    end = data.find(b"\0", offset)
    if offset < 0 or offset >= len(data) or end < 0:
        raise LdCacheError(f"string offset {offset} outside the file")
    return data[offset:end].decode("utf-8", "surrogateescape")


def _parse_old(data: bytes, nlibs: int, strings: int) -> LdCache:
    entries = []
    for i in range(nlibs):
        flags, key, value = _unpack("<iII", data, 16 + i * 12)
        entries.append(CacheEntry(_string(data, strings + key), flags, _string(data, strings + value)))
    return LdCache(tuple(entries), "old")


def _parse_new(data: bytes, base: int, kind: str) -> LdCache:
    # magic[17] version[3] nlibs len_strings flags(1) pad(3) extension_offset unused[3]
    nlibs, _len_strings, endian, ext = _unpack("<IIB3xI", data, base + 20)
    if endian == 3:  # cache_file_new_flags_endian_big: this reader handles little-endian caches
        raise LdCacheError("big-endian ld.so cache")
    hwcaps = _hwcaps(data, base, ext) if ext else []
    generator = _generator(data, base, ext) if ext else None
    entries = []
    for i in range(nlibs):
        flags, key, value, osversion, hwcap = _unpack("<iIIIQ", data, base + 48 + i * 24)
        subdir = None
        if hwcap & HWCAP_EXTENSION:
            index = hwcap & 0xFFFFFFFF
            subdir = hwcaps[index] if index < len(hwcaps) else f"#{index}"
        entries.append(CacheEntry(_string(data, base + key), flags, _string(data, base + value), subdir, osversion))
    return LdCache(tuple(entries), kind, generator)


def _sections(data: bytes, base: int, ext: int):
    magic, count = _unpack("<II", data, base + ext)
    if magic != EXTENSION_MAGIC:
        return
    for i in range(count):
        yield _unpack("<IIII", data, base + ext + 8 + i * 16)


def _hwcaps(data: bytes, base: int, ext: int) -> list[str]:
    for tag, _flags, offset, size in _sections(data, base, ext):
        if tag == TAG_HWCAPS:
            return [_string(data, base + _unpack("<I", data, base + offset + 4 * i)[0]) for i in range(size // 4)]
    return []


def _generator(data: bytes, base: int, ext: int) -> str | None:
    for tag, _flags, offset, size in _sections(data, base, ext):
        if tag == TAG_GENERATOR:
            return data[base + offset:base + offset + size].decode("utf-8", "replace")
    return None


# ---------------------------------------------------------------- ld.so.preload and LD_PRELOAD


# glibc's separators (elf/rtld.c): LD_PRELOAD is cut at space or colon (handle_preload_list), the file
# at ": \t\n" (strsep); nothing else separates (a \r or a no-break space is part of a name there).
ENV_PRELOAD_SEPARATORS = " :"
FILE_PRELOAD_SEPARATORS = ": \t\n"


def _split_at(value: str, separators: str) -> list[str]:
    return [p for p in re.split(f"[{re.escape(separators)}]+", value) if p]


def split_preload(value: str | None) -> list[str]:
    """LD_PRELOAD entries, separated by spaces or colons as glibc's loader cuts them."""
    return _split_at(value or "", ENV_PRELOAD_SEPARATORS)


def preload_line(line: str) -> tuple[list[str], str]:
    """One line of /etc/ld.so.preload as rtld.c reads it: its entries, and its comment (from `#`, or '')."""
    body, sep, comment = line.partition("#")
    return _split_at(body, FILE_PRELOAD_SEPARATORS), sep + comment.rstrip("\n")


def parse_ld_so_preload(text: str) -> list[str]:
    """Every entry of /etc/ld.so.preload, in order: `#` to end of line ignored, any of ": \t\n" separates."""
    return [entry for line in text.split("\n") for entry in preload_line(line)[0]]


def read_ld_so_preload(root: str) -> list[str]:
    state = read_state(root, LD_SO_PRELOAD)
    return parse_ld_so_preload(state.text()) if state.kind == "file" else []


# ---------------------------------------------------------------- ld.so.conf


def ld_so_conf_dirs(root: str) -> list[str]:
    """Directories ld.so.conf lists (includes followed, in C-locale glob order), without the trusted ones."""
    found: list[str] = []
    _read_ld_conf(root, LD_SO_CONF, found, depth=0)
    return found


def ldconfig_dirs(root: str) -> list[str]:
    """Every directory ldconfig scans for this root: ld.so.conf's, then the trusted ones."""
    found = ld_so_conf_dirs(root)
    return found + [d for d in TRUSTED_DIRS if d not in found]


def _read_ld_conf(root: str, path: str, found: list[str], depth: int) -> None:
    state = read_state(root, path)
    if state.kind != "file" or depth > MAX_INCLUDE_DEPTH:
        return
    for raw in state.text().split("\n"):
        line = raw.split("#", 1)[0].strip(C_SPACE)
        if not line:
            continue
        if line.startswith("include") and line[7:8] in (" ", "\t"):
            # ldconfig.c parse_conf: every blank-separated word after `include` is a pattern of its own
            for pattern in re.split(r"[ \t]+", line[8:]):
                if not pattern:
                    continue
                if not pattern.startswith("/"):
                    pattern = os.path.join(os.path.dirname(path), pattern)
                for match in glob_in(root, pattern):
                    _read_ld_conf(root, match, found, depth + 1)
        elif line.startswith("/") and line not in found:
            found.append(line.rstrip("/") or "/")
