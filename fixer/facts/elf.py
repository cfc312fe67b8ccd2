"""Facts of one ELF file: type, class, machine, SONAME, NEEDED, search paths and versioned symbols."""

from __future__ import annotations

import os
import struct
from dataclasses import asdict, dataclass, field, replace
from typing import NamedTuple

from fixer.facts.reading import open_regular

# libc entry points a preloaded object can interpose to hijack ggml's backend loader or file lookups.
INTERPOSABLE = frozenset(
    """dlopen dlmopen dlsym dlvsym dlclose dladdr dlinfo open open64 openat openat64 __open_2
    __open64_2 stat stat64 lstat lstat64 fstat fstat64 fstatat newfstatat statx __xstat __xstat64
    __lxstat __lxstat64 __fxstatat access faccessat fopen fopen64 readlink realpath opendir
    execve""".split()
)
MACHINES = {3: "EM_386", 8: "EM_MIPS", 20: "EM_PPC", 21: "EM_PPC64", 22: "EM_S390", 40: "EM_ARM",
            62: "EM_X86_64", 183: "EM_AARCH64", 243: "EM_RISCV", 258: "EM_LOONGARCH"}
TYPES = {0: "ET_NONE", 1: "ET_REL", 2: "ET_EXEC", 3: "ET_DYN", 4: "ET_CORE"}
DF_1_PIE = 0x08000000
FUNCTION_TYPES = ("STT_FUNC", "STT_GNU_IFUNC")
BINDINGS = {1: "STB_GLOBAL", 2: "STB_WEAK", 10: "STB_GNU_UNIQUE"}
SYMBOL_TYPES = {0: "STT_NOTYPE", 1: "STT_OBJECT", 2: "STT_FUNC", 3: "STT_SECTION", 4: "STT_FILE",
                5: "STT_COMMON", 6: "STT_TLS", 10: "STT_GNU_IFUNC"}


class ElfError(Exception):
    """The file is missing, unreadable, not ELF, or too damaged to parse."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class Header:
    """The identifying fields the dynamic loader checks before it maps a candidate file."""

    elf_class: int
    machine: str
    type: str
    little_endian: bool

    def compatible(self, other: "Header") -> bool:
        return (self.elf_class, self.machine, self.little_endian) == (
            other.elf_class, other.machine, other.little_endian)

    def describe(self) -> str:
        return f"ELF{self.elf_class} {self.machine} {self.type}"


class Definition(NamedTuple):
    """A symbol this file defines; `hidden` marks a non-default version (name@VER, not name@@VER).
    A tuple: a large library defines tens of thousands, built here one by one."""

    name: str
    version: str | None
    hidden: bool
    binding: str
    type: str


class Reference(NamedTuple):
    """A symbol this file needs from elsewhere; `file` is the NEEDED name its version belongs to."""

    name: str
    version: str | None
    file: str | None
    weak: bool

    def label(self) -> str:
        return f"{self.name}@{self.version}" if self.version else self.name


@dataclass
class ElfInfo:
    path: str
    header: Header
    dynamic: bool
    soname: str | None = None
    needed: list[str] = field(default_factory=list)
    rpath: list[str] = field(default_factory=list)
    runpath: list[str] = field(default_factory=list)
    pie: bool = False
    versions_defined: list[str] = field(default_factory=list)
    versions_needed: dict[str, list[str]] = field(default_factory=dict)
    defined: list[Definition] = field(default_factory=list)
    undefined: list[Reference] = field(default_factory=list)
    _by_name: tuple[int, dict] | None = field(default=None, repr=False, compare=False)

    @property
    def is_shared_object(self) -> bool:
        return self.header.type == "ET_DYN" and self.dynamic and not self.pie

    @property
    def interposes(self) -> list[str]:
        """libc loader/file entry points this object defines (and so overrides when searched first)."""
        return sorted({d.name for d in self.defined if d.name in INTERPOSABLE and d.type in FUNCTION_TYPES})

    def definitions(self) -> dict[str, list[Definition]]:
        """The defined symbols by name (built once: an ElfInfo is read once per file identity)."""
        if self._by_name is None or self._by_name[0] != len(self.defined):
            out: dict[str, list[Definition]] = {}
            for d in self.defined:
                out.setdefault(d.name, []).append(d)
            self._by_name = (len(self.defined), out)
        return self._by_name[1]

    def to_dict(self, symbols: bool = False) -> dict:
        out = asdict(replace(self, defined=[], undefined=[], _by_name=None))  # symbols are not deep-copied
        out["header"] = self.header.describe()
        out["is_shared_object"] = self.is_shared_object
        out["interposes"] = self.interposes
        out.pop("_by_name")
        if symbols:
            out["defined"] = [d._asdict() for d in self.defined]
            out["undefined"] = [r._asdict() for r in self.undefined]
        else:
            out.pop("defined")
            out.pop("undefined")
        return out


def read_header(path: str | os.PathLike) -> Header:
    """Only the ELF identification and header fields; cheap enough for every search candidate."""
    path = os.fspath(path)
    try:
        fd = open_regular(path)
        try:
            ident = os.read(fd, 20)
        finally:
            os.close(fd)
    except OSError as err:
        raise ElfError(path, err.strerror or str(err)) from None
    if len(ident) < 4 or ident[:4] != b"\x7fELF":
        raise ElfError(path, "not an ELF file (invalid ELF header)")
    if len(ident) < 20:
        raise ElfError(path, "file too short")
    elf_class = {1: 32, 2: 64}.get(ident[4])
    little = {1: True, 2: False}.get(ident[5])
    if elf_class is None or little is None:
        raise ElfError(path, "invalid ELF class or data encoding")
    e_type, e_machine = struct.unpack("<HH" if little else ">HH", ident[16:20])
    return Header(elf_class, MACHINES.get(e_machine, f"EM_{e_machine}"), TYPES.get(e_type, f"ET_{e_type}"), little)


def read_elf(path: str | os.PathLike, symbols: bool = True) -> ElfInfo:
    """Parse the dynamic segment and (with `symbols`) the dynamic symbol table with versions.

    Only what the dynamic loader itself reads: the program headers, PT_DYNAMIC and the tables its entries
    point at (DT_STRTAB, DT_SYMTAB sized by DT_GNU_HASH/DT_HASH, DT_VERSYM, DT_VERDEF, DT_VERNEED), each
    read with one pread; never the section headers or the rest of a 550 MB cuBLASLt."""
    path = os.fspath(path)
    header = read_header(path)
    try:
        fd = open_regular(path)  # a FIFO or a device is refused, never read
    except OSError as err:
        raise ElfError(path, err.strerror or str(err)) from None
    try:
        image = _Image(fd, header)
        info = ElfInfo(path, header, dynamic=False)
        image.read_dynamic(info)
        if symbols and info.dynamic:
            image.read_symbols(info)
        return info
    except _Damaged as err:
        raise ElfError(path, f"cannot parse ELF: {err}") from None
    except OSError as err:
        raise ElfError(path, err.strerror or str(err)) from None
    finally:
        os.close(fd)


class _Damaged(Exception):
    """A table the dynamic segment points at lies outside the file or is cut short."""


PT_LOAD, PT_DYNAMIC = 1, 2
DT_NEEDED, DT_HASH, DT_STRTAB, DT_SYMTAB, DT_STRSZ, DT_SYMENT, DT_SONAME, DT_RPATH = 1, 4, 5, 6, 10, 11, 14, 15
DT_RUNPATH, DT_GNU_HASH, DT_VERSYM, DT_FLAGS_1 = 29, 0x6FFFFEF5, 0x6FFFFFF0, 0x6FFFFFFB
DT_VERDEF, DT_VERDEFNUM, DT_VERNEED, DT_VERNEEDNUM = 0x6FFFFFFC, 0x6FFFFFFD, 0x6FFFFFFE, 0x6FFFFFFF
MAX_TABLE = 256 << 20  # no loader table is this large; a damaged size never makes us read gigabytes


class _Image:
    """An ELF file read through its program headers, as ld.so sees it."""

    def __init__(self, fd: int, header: Header):
        self.fd = fd
        self.wide = header.elf_class == 64
        self.order = "<" if header.little_endian else ">"
        ehdr = self._read(0, 64 if self.wide else 52)
        if self.wide:
            (phoff,) = struct.unpack_from(self.order + "Q", ehdr, 0x20)
            phentsize, phnum = struct.unpack_from(self.order + "HH", ehdr, 0x36)
        else:
            (phoff,) = struct.unpack_from(self.order + "I", ehdr, 0x1C)
            phentsize, phnum = struct.unpack_from(self.order + "HH", ehdr, 0x2A)
        self.loads: list[tuple[int, int, int]] = []  # (vaddr, filesz, offset)
        self.dynamic: tuple[int, int] | None = None  # (offset, filesz)
        if phnum == 0:
            return
        if phentsize < (56 if self.wide else 32):
            raise _Damaged("program header entries too small")
        table = self._read(phoff, phentsize * phnum)
        for i in range(phnum):
            at = i * phentsize
            if self.wide:
                p_type, _flags, offset, vaddr, _paddr, filesz = struct.unpack_from(self.order + "IIQQQQ", table, at)
            else:
                p_type, offset, vaddr, _paddr, filesz = struct.unpack_from(self.order + "IIIII", table, at)
            if p_type == PT_LOAD:
                self.loads.append((vaddr, filesz, offset))
            elif p_type == PT_DYNAMIC and self.dynamic is None:
                self.dynamic = (offset, filesz)

    def _read(self, offset: int, size: int) -> bytes:
        if size < 0 or size > MAX_TABLE:
            raise _Damaged(f"a table of {size} bytes")
        data = os.pread(self.fd, size, offset) if size else b""
        if len(data) != size:
            raise _Damaged("file truncated")
        return data

    def _offset(self, address: int) -> int:
        for vaddr, filesz, offset in self.loads:
            if vaddr <= address < vaddr + filesz:
                return address - vaddr + offset
        raise _Damaged(f"address {address:#x} is in no loaded segment")

    def _at(self, address: int, size: int) -> bytes:
        return self._read(self._offset(address), size)

    def read_dynamic(self, info: ElfInfo) -> None:
        if self.dynamic is None:
            return
        offset, size = self.dynamic
        entry = 16 if self.wide else 8
        raw = self._read(offset, size // entry * entry)
        self.tags: dict[int, int] = {}
        strings: list[tuple[int, int]] = []
        for tag, value in struct.iter_unpack(self.order + ("qQ" if self.wide else "iI"), raw):
            if tag == 0:  # DT_NULL
                break
            if tag in (DT_NEEDED, DT_SONAME, DT_RPATH, DT_RUNPATH):
                strings.append((tag, value))
            else:
                self.tags.setdefault(tag, value)
        info.dynamic = True
        if DT_STRTAB not in self.tags:
            if strings:
                raise _Damaged("no DT_STRTAB")
            return
        self.strtab = self._at(self.tags[DT_STRTAB], self.tags.get(DT_STRSZ, 0))
        for tag, value in strings:
            text = self.string(value)
            if tag == DT_NEEDED:
                info.needed.append(text)
            elif tag == DT_SONAME:
                info.soname = text
            elif tag == DT_RPATH:
                info.rpath += [p for p in text.split(":") if p]
            else:
                info.runpath += [p for p in text.split(":") if p]
        info.pie = bool(self.tags.get(DT_FLAGS_1, 0) & DF_1_PIE)

    def string(self, at: int) -> str:
        end = self.strtab.find(b"\0", at)
        if at >= len(self.strtab) or end < 0:
            raise _Damaged(f"string {at} outside DT_STRTAB")
        return self.strtab[at:end].decode("utf-8", "replace")

    def _count(self) -> int:
        """How many dynamic symbols there are: DT_HASH's nchain, or the end of DT_GNU_HASH's last chain."""
        tags, word = self.tags, self.order + "I"
        if DT_HASH in tags:
            return struct.unpack(word, self._at(tags[DT_HASH] + 4, 4))[0]
        if DT_GNU_HASH in tags:
            base = tags[DT_GNU_HASH]
            nbuckets, symoffset, bloom_size, _shift = struct.unpack(self.order + "4I", self._at(base, 16))
            buckets_at = base + 16 + bloom_size * (8 if self.wide else 4)
            buckets = struct.unpack(f"{self.order}{nbuckets}I", self._at(buckets_at, 4 * nbuckets))
            last = max(buckets, default=0)
            if last < symoffset:
                return symoffset
            chain_at = buckets_at + 4 * nbuckets
            while not struct.unpack(word, self._at(chain_at + 4 * (last - symoffset), 4))[0] & 1:
                last += 1
            return last + 1
        if tags.get(DT_STRTAB, 0) > tags.get(DT_SYMTAB, 0):  # the usual layout: .dynstr right after .dynsym
            return (tags[DT_STRTAB] - tags[DT_SYMTAB]) // (24 if self.wide else 16)
        return 0

    def read_symbols(self, info: ElfInfo) -> None:
        tags = self.tags
        if DT_SYMTAB not in tags or DT_STRTAB not in tags:
            return
        defined: dict[int, str] = {}
        needed: dict[int, tuple[str, str, bool]] = {}
        if DT_VERDEF in tags:
            at = tags[DT_VERDEF]
            for _ in range(tags.get(DT_VERDEFNUM, 0)):
                _version, flags, ndx, count, _hash, aux, nxt = struct.unpack(self.order + "HHHHIII", self._at(at, 20))
                if count:
                    (name_at,) = struct.unpack(self.order + "I", self._at(at + aux, 4))
                    name = self.string(name_at)
                    defined[ndx] = name
                    if not flags & 0x1:  # VER_FLG_BASE names the file itself, not a version
                        info.versions_defined.append(name)
                if not nxt:
                    break
                at += nxt
        if DT_VERNEED in tags:
            at = tags[DT_VERNEED]
            for _ in range(tags.get(DT_VERNEEDNUM, 0)):
                _version, count, file_at, aux, nxt = struct.unpack(self.order + "HHIII", self._at(at, 16))
                file = self.string(file_at)
                aux_at = at + aux
                for _ in range(count):
                    _hash, flags, other, name_at, aux_next = struct.unpack(self.order + "IHHII", self._at(aux_at, 16))
                    name = self.string(name_at)
                    needed[other] = (name, file, bool(flags & 0x2))
                    info.versions_needed.setdefault(file, []).append(name)
                    if not aux_next:
                        break
                    aux_at += aux_next
                if not nxt:
                    break
                at += nxt
        count = self._count()
        size = 24 if self.wide else 16
        table = self._at(tags[DT_SYMTAB], count * size)
        if self.wide:
            rows = ((n, i, x) for n, i, _o, x, _v, _s in struct.iter_unpack(self.order + "IBBHQQ", table))
        else:
            rows = ((n, i, x) for n, _v, _s, i, _o, x in struct.iter_unpack(self.order + "IIIBBH", table))
        versions = struct.unpack(f"{self.order}{count}H", self._at(tags[DT_VERSYM], 2 * count)) \
            if DT_VERSYM in tags else ()
        strtab = self.strtab
        for index, (name_at, st_info, shndx) in enumerate(rows):
            binding, kind = BINDINGS.get(st_info >> 4), SYMBOL_TYPES.get(st_info & 0xF, f"STT_{st_info & 0xF}")
            if index == 0 or binding is None:
                continue
            end = strtab.find(b"\0", name_at)
            name = strtab[name_at:end].decode("utf-8", "replace") if end >= 0 else ""
            if not name:
                continue
            number = versions[index] if index < len(versions) else 1
            hidden, number = bool(number & 0x8000), number & 0x7FFF
            if shndx == 0:  # SHN_UNDEF
                version, file, _ = needed.get(number, (None, None, False))
                info.undefined.append(Reference(name, version, file, binding == "STB_WEAK"))
            else:
                info.defined.append(Definition(name, defined.get(number) if number > 1 else None, hidden, binding, kind))
