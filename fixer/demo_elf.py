"""Small x86-64 ELF files for the demo's host, written without a compiler: a shared object with a SONAME,
NEEDED entries and exported functions (each `return 0`), or a program carrying Ollama's version the way
a Go release build embeds it (the text and a string header pointing at it, as fixer.ollama.detect reads)."""

from __future__ import annotations

import struct

BASE = 0x0  # the file is mapped as one read+execute segment at its own offsets
EHDR, PHDR, SHDR, SYM, DYN = 64, 56, 64, 24, 16
DT = {"NULL": 0, "NEEDED": 1, "HASH": 4, "STRTAB": 5, "SYMTAB": 6, "STRSZ": 10, "SYMENT": 11, "SONAME": 14}


def _pad(data: bytearray, align: int) -> int:
    data.extend(b"\0" * (-len(data) % align))
    return len(data)


def _strings(names: list[str]) -> tuple[bytes, dict[str, int]]:
    table, at = bytearray(b"\0"), {}
    for name in names:
        if name not in at:
            at[name] = len(table)
            table += name.encode() + b"\0"
    return bytes(table), at


def _sysv_hash(name: str) -> int:
    h = 0
    for c in name.encode():
        h = ((h << 4) + c) & 0xFFFFFFFF
        g = h & 0xF0000000
        if g:
            h ^= g >> 24
        h &= ~g & 0xFFFFFFFF
    return h


def shared_object(soname: str | None, exports: list[str], needed: tuple[str, ...] = ()) -> bytes:
    """An ET_DYN shared object: .dynstr, .dynsym (every export a global function), .hash, .text, .dynamic."""
    dynstr, at = _strings([*(needed or ()), *([soname] if soname else []), *exports])
    out = bytearray(EHDR + 2 * PHDR)
    str_off = len(out)
    out += dynstr
    text_off = _pad(out, 16)
    out += b"\x31\xc0\xc3\x90" * max(1, len(exports))  # xor eax, eax; ret: each function returns 0
    sym_off = _pad(out, 8)
    out += b"\0" * SYM
    for i, name in enumerate(exports):  # STB_GLOBAL STT_FUNC, defined in .text (section 4)
        out += struct.pack("<IBBHQQ", at[name], 0x12, 0, 4, BASE + text_off + 4 * i, 3)
    count = 1 + len(exports)
    hash_off = _pad(out, 8)  # SysV .hash with one bucket: a chain through every symbol
    out += struct.pack(f"<III{count}I", 1, count, count - 1, *_chain(count))
    dyn_off = _pad(out, 8)
    entries = [("NEEDED", at[n]) for n in needed] + ([("SONAME", at[soname])] if soname else [])
    entries += [("HASH", hash_off), ("STRTAB", str_off), ("SYMTAB", sym_off), ("STRSZ", len(dynstr)),
                ("SYMENT", SYM), ("NULL", 0)]
    for tag, value in entries:
        out += struct.pack("<qQ", DT[tag], value)
    dyn_end = len(out)
    sections = [("", 0, 0, 0, 0, 0, 0, 0, 0), (".dynstr", 3, 2, str_off, len(dynstr), 0, 0, 1, 0),
                (".dynsym", 11, 2, sym_off, count * SYM, 1, 1, 8, SYM), (".hash", 5, 2, hash_off, (2 + count) * 4, 2, 0, 8, 4),
                (".text", 1, 6, text_off, 4 * max(1, len(exports)), 0, 0, 16, 0),
                (".dynamic", 6, 3, dyn_off, dyn_end - dyn_off, 1, 0, 8, DYN)]
    return _finish(out, sections, 3, dyn_off, dyn_end - dyn_off)


def _chain(count: int) -> list[int]:
    """The one bucket starts at the last symbol; each chain entry points at the one before it."""
    return [i - 1 if i > 1 else 0 for i in range(count)]


def program_with_version(version: str) -> bytes:
    """An ET_EXEC whose read-only data holds `version` and whose writable .data holds a Go string header
    (pointer, length) to it: what `-X version.Version=` leaves in a stripped Go binary."""
    out = bytearray(EHDR + 2 * PHDR)
    text_off = len(out)
    out += version.encode() + b"unknown runner engine"  # Go packs strings back to back
    data_off = _pad(out, 16)
    out += struct.pack("<QQ", BASE + text_off, len(version))
    end = len(out)
    sections = [("", 0, 0, 0, 0, 0, 0, 0, 0), (".rodata", 1, 2, text_off, data_off - text_off, 0, 0, 1, 0),
                (".data", 1, 3, data_off, end - data_off, 0, 0, 16, 0)]
    return _finish(out, sections, 2, 0, 0)


def _finish(out: bytearray, sections: list[tuple], e_type: int, dyn_off: int, dyn_size: int) -> bytes:
    """Append .shstrtab and the section headers; write the ELF header and the program headers."""
    shstr, at = _strings([s[0] for s in sections if s[0]] + [".shstrtab"])
    shstr_off = len(out)
    out += shstr
    sh_off = _pad(out, 8)
    for name, kind, flags, offset, size, link, info, align, entsize in sections:
        out += struct.pack("<IIQQQQIIQQ", at.get(name, 0) if name else 0, kind, flags, BASE + offset if kind != 0 else 0,
                           offset, size, link, info, align, entsize)
    out += struct.pack("<IIQQQQIIQQ", at[".shstrtab"], 3, 0, 0, shstr_off, len(shstr), 0, 0, 1, 0)
    count = len(sections) + 1
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + b"\0" * 8
    out[:EHDR] = ident + struct.pack("<HHIQQQIHHHHHH", e_type, 62, 1, 0, EHDR, sh_off, 0, EHDR, PHDR, 2, SHDR,
                                     count, count - 1)
    load = struct.pack("<IIQQQQQQ", 1, 7, 0, BASE, BASE, shstr_off, shstr_off, 0x1000)  # the loader writes .dynamic
    dynamic = struct.pack("<IIQQQQQQ", 2 if dyn_size else 0, 6, dyn_off, BASE + dyn_off,
                          BASE + dyn_off, dyn_size, dyn_size, 8)  # PT_DYNAMIC, or PT_NULL (ignored)
    out[EHDR:EHDR + 2 * PHDR] = load + dynamic
    return bytes(out)
