"""Which Ollama is installed in a root: its version and generation, from files alone (never executed)."""

# vgpu-fix does not run `ollama -v`, not even on the live root as the service user: plan and doctor must
# stay pure reads, the version only refines what the layout already decides (the files FindLlamaServer
# looks for are what `ollama serve` acts on), and `ollama -v` prints the *running server's* version
# first (v0.32.15 cmd/cmd.go:2095-2113), which after an upgrade without a restart is not the binary's.

from __future__ import annotations

import functools
import io
import os
import re
import struct
from dataclasses import dataclass, field

from fixer.facts import paths
from fixer.facts.linker import resolve_in_root
from fixer.facts.reading import MAX_BINARY, read_file
from fixer.ollama import generations, layout

# A release's version as `-X version.Version=` sets it (release.yaml:25 at v0.32.15: the tag without
# "v"; scripts/env.sh:3-4: `git describe` text such as 0.32.15-0-gb7871fc). Releases since 0.11.
VERSION_TEXT = re.compile(rb"0\.(?:1[1-9]|[2-9]\d|\d{3})\.\d{1,3}(?:-[0-9A-Za-z][0-9A-Za-z.-]{0,30})?")
R_X86_64_RELATIVE, R_AARCH64_RELATIVE = 8, 1027


@dataclass(frozen=True)
class Installation:
    generation: str
    version: str | None
    how: str  # binary | layout | default | nothing (no Ollama found): what decided the generation
    evidence: tuple[str, ...] = field(default=())
    note: str | None = None  # unknown newer version, layout that contradicts the version, ...
    llama_server: str | None = None

    def to_dict(self) -> dict:
        return {"generation": self.generation, "version": self.version, "how": self.how,
                "evidence": list(self.evidence), "note": self.note, "llama_server": self.llama_server}

    @property
    def found(self) -> bool:
        return self.how != "nothing"

    def describe(self) -> str:
        if not self.found:
            return f"no Ollama found; {self.note}"
        return (f"Ollama {self.version or '(version unknown)'}, {self.generation} generation (from the {self.how})"
                + (f"; {self.note}" if self.note else ""))


def detect(root: str, ollama_bin: str = layout.OLLAMA_BIN, ollama_lib: str = layout.DEFAULT_LIB,
           working_dir: str = "/") -> Installation:
    """The installation under `root`: the version embedded in `ollama_bin` decides the generation when it
    can be read; otherwise the layout of `ollama_lib` does; otherwise the newest known generation."""

    root = os.fspath(root)
    evidence: list[str] = []
    server = layout.find_llama_server(root, ollama_bin, ollama_lib, working_dir)
    variants = _cuda_variants(root, ollama_lib)
    evidence.append(f"llama-server: {server}" if server else "no llama-server where Ollama looks for one")
    evidence.append(f"CUDA variant folders: {', '.join(variants) or 'none'}")
    by_layout = "llama-server" if server else ("runner-engine" if variants else None)
    version, said = embedded_version(root, ollama_bin)
    evidence.append(said)
    inside_binary = resolve_in_root(root, ollama_bin)
    parsed = generations.parse_version(version)
    if parsed is not None:
        generation, note = generations.for_version(parsed)
        if by_layout and by_layout != generation.name:
            note = ((note + "; ") if note else "") + (
                f"the layout looks like {by_layout} ({'llama-server present' if server else 'no llama-server'}): "
                f"Ollama {version} acts as {generation.name} and will not find what it needs")
        return Installation(generation.name, version, "binary", tuple(evidence), note, server)
    if by_layout:
        return Installation(by_layout, None, "layout", tuple(evidence), None, server)
    last = generations.newest()
    if inside_binary is None and resolve_in_root(root, ollama_lib) is None:
        return Installation(last.name, None, "nothing", tuple(evidence),
                            f"neither {ollama_bin} nor {ollama_lib} exists under the root: checked as "
                            f"{last.name}, the newest known generation", server)
    return Installation(last.name, None, "default", tuple(evidence),
                        f"neither the binary nor the layout tells the release: checked as {last.name}, "
                        "the newest known generation", server)


def _cuda_variants(root: str, ollama_lib: str) -> list[str]:
    return [n for n in paths.names(root, ollama_lib)
            if n.startswith("cuda") and paths.real_path(root, f"{ollama_lib}/{n}/{layout.BACKEND}") is not None]


def embedded_version(root: str, binary: str) -> tuple[str | None, str]:
    """(the version `-X version.Version=` embedded in the Go binary, what was found). Release binaries
    are stripped (`-s -w`) and built with -trimpath, so neither a symbol nor the build info names it
    (ollama.md section 6): what is left is the bare text and the Go string header (pointer, length) of
    the variable, in the file (non-PIE) or as the addend of a RELATIVE relocation (PIE). A candidate
    counts only when such a header points at exactly its bytes."""
    path = paths.real_path(root, binary)
    if path is None:
        return None, f"{binary}: not found in the root"
    try:
        st = paths.stat_in(root, binary)
        identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) if st else None
        found = sorted(_versions_once(path, identity) if identity else _versions_with_header(path))
    except OSError as err:  # a FIFO, a device, a binary beyond the cap: named, never read
        return None, f"{binary}: version not readable ({err.strerror or err})"
    except (ValueError, struct.error) as err:
        return None, f"{binary}: version not readable ({err})"
    except Exception as err:  # pyelftools raises many kinds on damaged input
        return None, f"{binary}: not a readable ELF file ({type(err).__name__})"
    if len(found) == 1:
        return found[0], f"{binary}: embedded version string {found[0]}"
    if found:
        return None, f"{binary}: several version-like strings ({', '.join(found)}): version unknown"
    return None, f"{binary}: no embedded version string found"


@functools.lru_cache(maxsize=8)
def _versions_once(path: str, identity: tuple) -> frozenset[str]:
    """_versions_with_header once per file identity (device, inode, size, mtime) in a process: apply reads
    the installation when it plans and again when it verifies, and Ollama's binary is tens of MB."""
    del identity
    return frozenset(_versions_with_header(path))


def _versions_with_header(path: str) -> set[str]:
    data = read_file(path, limit=MAX_BINARY)
    with io.BytesIO(data) as stream:
        if not data.startswith(b"\x7fELF"):
            raise ValueError("not an ELF file")
        if not VERSION_TEXT.search(data):
            return set()  # nothing to look up: pyelftools (~20 ms to import) is not needed
        from elftools.elf.elffile import ELFFile
        from elftools.elf.relocation import RelocationSection

        stream.seek(0)
        elf = ELFFile(stream)
        loads = [(s["p_vaddr"], s["p_offset"], s["p_filesz"]) for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]

        def offset(vaddr: int) -> int | None:
            return next((o + vaddr - v for v, o, n in loads if v <= vaddr < v + n), None)

        def vaddr(off: int) -> int | None:
            return next((v + off - o for v, o, n in loads if o <= off < o + n), None)

        candidates: dict[int, bytes] = {}
        for match in VERSION_TEXT.finditer(data):
            address = vaddr(match.start())
            if address is not None:
                candidates[address] = match.group(0)
        if not candidates:
            return set()
        headers: set[tuple[int, int]] = set()
        for section in elf.iter_sections():
            if isinstance(section, RelocationSection) and section.is_RELA():
                for reloc in section.iter_relocations():
                    if reloc["r_info_type"] in (R_X86_64_RELATIVE, R_AARCH64_RELATIVE) and reloc["r_addend"] in candidates:
                        slot = offset(reloc["r_offset"])
                        if slot is not None and slot + 16 <= len(data):
                            headers.add((reloc["r_addend"], struct.unpack_from("<Q", data, slot + 8)[0]))
            elif section["sh_type"] == "SHT_PROGBITS" and section["sh_flags"] & 0x1:  # SHF_WRITE: .data & co
                start, size = section["sh_offset"], section["sh_size"]
                for (pointer, length) in struct.iter_unpack("<QQ", data[start:start + size - size % 16]):
                    if pointer in candidates:
                        headers.add((pointer, length))
                for (pointer, length) in struct.iter_unpack("<QQ", data[start + 8:start + size - (size - 8) % 16]):
                    if pointer in candidates:
                        headers.add((pointer, length))
    found = set()
    for pointer, length in headers:
        text = candidates[pointer][:length]
        if len(text) == length and VERSION_TEXT.fullmatch(text):
            found.add(text.decode())
    return found
