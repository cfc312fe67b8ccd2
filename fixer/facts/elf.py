"""Facts of one ELF file: type, class, machine, SONAME, NEEDED, search paths and versioned symbols."""

from __future__ import annotations

import os
import struct
from dataclasses import asdict, dataclass, field

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


@dataclass(frozen=True)
class Definition:
    """A symbol this file defines; `hidden` marks a non-default version (name@VER, not name@@VER)."""

    name: str
    version: str | None
    hidden: bool
    binding: str
    type: str


@dataclass(frozen=True)
class Reference:
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

    @property
    def is_shared_object(self) -> bool:
        return self.header.type == "ET_DYN" and self.dynamic and not self.pie

    @property
    def interposes(self) -> list[str]:
        """libc loader/file entry points this object defines (and so overrides when searched first)."""
        return sorted({d.name for d in self.defined if d.name in INTERPOSABLE and d.type in FUNCTION_TYPES})

    def definitions(self) -> dict[str, list[Definition]]:
        out: dict[str, list[Definition]] = {}
        for d in self.defined:
            out.setdefault(d.name, []).append(d)
        return out

    def to_dict(self, symbols: bool = False) -> dict:
        out = asdict(self)
        out["header"] = self.header.describe()
        out["is_shared_object"] = self.is_shared_object
        out["interposes"] = self.interposes
        if not symbols:
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
    """Parse the dynamic section and (with `symbols`) the dynamic symbol table with versions."""
    path = os.fspath(path)
    header = read_header(path)
    try:
        from elftools.elf.elffile import ELFFile

        with os.fdopen(open_regular(path), "rb") as stream:
            elf = ELFFile(stream)
            info = ElfInfo(path, header, dynamic=False)
            _read_dynamic(elf, info)
            if symbols:
                _read_symbols(elf, info)
            return info
    except ElfError:
        raise
    except OSError as err:
        raise ElfError(path, err.strerror or str(err)) from None
    except Exception as err:  # pyelftools raises many kinds on damaged input (ELFError, struct.error, ...)
        raise ElfError(path, f"cannot parse ELF: {err or type(err).__name__}") from None


def _dynamic_section(elf):
    from elftools.elf.dynamic import DynamicSection

    for section in elf.iter_sections():
        if isinstance(section, DynamicSection):
            return section
    for segment in elf.iter_segments():
        if segment["p_type"] == "PT_DYNAMIC":
            return segment
    return None


def _read_dynamic(elf, info: ElfInfo) -> None:
    dynamic = _dynamic_section(elf)
    if dynamic is None:
        return
    info.dynamic = True
    for tag in dynamic.iter_tags():
        kind = tag.entry.d_tag
        if kind == "DT_NEEDED":
            info.needed.append(tag.needed)
        elif kind == "DT_SONAME":
            info.soname = tag.soname
        elif kind == "DT_RPATH":
            info.rpath += [p for p in tag.rpath.split(":") if p]
        elif kind == "DT_RUNPATH":
            info.runpath += [p for p in tag.runpath.split(":") if p]
        elif kind == "DT_FLAGS_1":
            info.pie = bool(tag.entry.d_val & DF_1_PIE)


def _read_symbols(elf, info: ElfInfo) -> None:
    from elftools.elf.gnuversions import GNUVerDefSection, GNUVerNeedSection, GNUVerSymSection
    from elftools.elf.sections import SymbolTableSection

    dynsym = versym = None
    defined: dict[int, str] = {}
    needed: dict[int, tuple[str, str, bool]] = {}
    for section in elf.iter_sections():
        if isinstance(section, SymbolTableSection) and section["sh_type"] == "SHT_DYNSYM":
            dynsym = section
        elif isinstance(section, GNUVerSymSection):
            versym = section
        elif isinstance(section, GNUVerDefSection):
            for verdef, aux in section.iter_versions():
                name = next(aux).name
                defined[verdef["vd_ndx"]] = name
                if not verdef["vd_flags"] & 0x1:  # VER_FLG_BASE names the file itself, not a version
                    info.versions_defined.append(name)
        elif isinstance(section, GNUVerNeedSection):
            for verneed, auxes in section.iter_versions():
                for aux in auxes:
                    weak = bool(aux["vna_flags"] & 0x2)
                    needed[aux["vna_other"]] = (aux.name, verneed.name, weak)
                    info.versions_needed.setdefault(verneed.name, []).append(aux.name)
    if dynsym is None:
        return
    # The symbol table can hold tens of thousands of entries: unpack it with struct, not construct.
    little = info.header.little_endian
    strtab = elf.get_section(dynsym["sh_link"]).data()
    order = "<" if little else ">"
    if info.header.elf_class == 64:
        rows = ((n, i, x) for n, i, _o, x, _v, _s in struct.iter_unpack(order + "IBBHQQ", _whole(dynsym.data(), 24)))
    else:
        rows = ((n, i, x) for n, _v, _s, i, _o, x in struct.iter_unpack(order + "IIIBBH", _whole(dynsym.data(), 16)))
    versions = struct.unpack(f"{order}{versym['sh_size'] // 2}H", versym.data()[: versym["sh_size"] // 2 * 2]) \
        if versym is not None else ()
    for index, (name_at, st_info, shndx) in enumerate(rows):
        binding, kind = BINDINGS.get(st_info >> 4), SYMBOL_TYPES.get(st_info & 0xF, f"STT_{st_info & 0xF}")
        if index == 0 or binding is None:
            continue
        name = strtab[name_at:strtab.index(b"\0", name_at)].decode("utf-8", "replace")
        if not name:
            continue
        number = versions[index] if index < len(versions) else 1
        hidden, number = bool(number & 0x8000), number & 0x7FFF
        if shndx == 0:  # SHN_UNDEF
            version, file, _ = needed.get(number, (None, None, False))
            info.undefined.append(Reference(name, version, file, binding == "STB_WEAK"))
        else:
            info.defined.append(Definition(name, defined.get(number) if number > 1 else None, hidden, binding, kind))


def _whole(data: bytes, size: int) -> bytes:
    return data[: len(data) // size * size]
