"""Resolve a ggml backend's libraries and symbols inside a root the way glibc's ld.so would."""

from __future__ import annotations

import functools
import os
import re
import sys
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Iterable, Mapping

from fixer.facts.elf import ElfError, ElfInfo, Header, read_elf, read_header
from fixer.facts.ldso import (
    DEFAULT_DIRS,
    FALLBACK_DIRS,
    LOADER_FLAGS,
    LdCache,
    LdCacheError,
    read_cache,
    read_ld_so_preload,
    root_cache,
    split_preload,
)
from fixer.facts.paths import host_path, resolve_in_root  # noqa: F401  (resolve_in_root re-exported)

# Toolchain libraries a test or staging root may lack; under a non-/ root they come from the live host.
SYSTEM_LIBRARY = re.compile(
    r"^(libc|libm|libdl|libpthread|librt|libresolv|libutil|libanl|libmvec|libstdc\+\+|libgcc_s|libatomic"
    r"|libgomp|ld-linux[-\w.]*)\.so(\.[\d.]+)?$"
)
LOADER_HIJACK = frozenset({"dlopen", "dlmopen", "dlsym", "dlvsym", "dlclose"})


@functools.lru_cache(maxsize=256)
def _read_elf_once(path: str, symbols: bool, identity: tuple) -> ElfInfo:
    """read_elf memoised on the file's identity (device, inode, size, mtime): a pure function of content."""
    del identity
    return read_elf(path, symbols=symbols)


def split_path_list(value: str | None) -> list[str]:
    """LD_LIBRARY_PATH entries (':' or ';' separated); empty entries dropped."""
    return [p for p in re.split(r"[:;]", value or "") if p]


@dataclass
class Candidate:
    path: str
    origin: str
    status: str  # wins | shadowed | skipped | missing
    detail: str = ""
    real: str | None = None  # the canonical path inside the root, for a usable candidate


@dataclass
class LoadedObject:
    name: str
    path: str
    origin: str
    via: str
    soname: str | None
    group: str  # preload | global | backend
    needed_by: list[str] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    interposes: list[str] = field(default_factory=list)

    @property
    def shadowed(self) -> list[str]:
        return [c.path for c in self.candidates if c.status == "shadowed"]


@dataclass
class MissingSymbol:
    symbol: str
    version: str | None
    file: str | None
    required_by: str
    expected_from: str | None


@dataclass
class Lookup:
    """Where the runner's loader finds `name` (a NEEDED or dlopen name), whether or not the backend's
    closure asks for it: `path` is canonical, `found` the name as the search met it."""

    name: str
    path: str | None
    origin: str  # preload | RPATH | LD_LIBRARY_PATH | RUNPATH | ld.so.cache | default | host | path | ""
    via: str = ""
    candidates: list[Candidate] = field(default_factory=list)

    @property
    def found(self) -> str | None:
        return next((c.path for c in self.candidates if c.status == "wins"), self.path)


@dataclass
class PreloadConflict:
    """Symbols defined by two preloads where the first (which wins) is not the family's library."""

    winner: str
    winner_soname: str | None
    loser: str
    loser_soname: str | None
    symbols: list[str]


@dataclass
class Finding:
    level: str  # error | warning | info
    code: str
    message: str
    fix: str = ""


@dataclass
class Resolution:
    root: str
    backend: str
    library_path: list[str]
    preload: list[str]
    cache: str
    objects: list[LoadedObject] = field(default_factory=list)
    missing_libraries: list[dict] = field(default_factory=list)
    missing_symbols: list[MissingSymbol] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    lookups: dict[str, Lookup] = field(default_factory=dict)
    preload_conflicts: list[PreloadConflict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.level == "error" for f in self.findings)

    @property
    def cause(self) -> str | None:
        return next((f.message for f in self.findings if f.level == "error"), None)

    @property
    def fix(self) -> str | None:
        return next((f.fix for f in self.findings if f.level == "error"), None)

    @property
    def evidence(self) -> list[str]:
        lines = [f"LD_LIBRARY_PATH (runner) = {':'.join(self.library_path)}",
                 f"LD_PRELOAD = {':'.join(self.preload) or '(none)'}", f"ld.so.cache: {self.cache}"]
        for obj in self.objects:
            line = f"{obj.name} => {obj.path} [{obj.origin}{' ' + obj.via if obj.via else ''}]"
            found = next((c.path for c in obj.candidates if c.status == "wins"), obj.path)
            if found != obj.path:
                line += f" (found as {found})"  # a link: obj.path is the file that really loads
            if obj.shadowed:
                line += f" shadows {', '.join(obj.shadowed)}"
            lines.append(line)
        lines += [f"{m['name']} => not found (needed by {m['needed_by']})" for m in self.missing_libraries]
        lines += [f"{f.level}: {f.message}" for f in self.findings if f.level != "info"]
        return lines

    def object(self, name: str) -> LoadedObject | None:
        return next((o for o in self.objects if o.name == name or o.soname == name), None)

    def to_dict(self) -> dict:
        out = asdict(self)
        out.update(ok=self.ok, cause=self.cause, fix=self.fix, evidence=self.evidence)
        return out


class _Resolver:
    def __init__(self, root: str, target: Header, library_path: list[str], cache: LdCache | None):
        self.root = root
        self.target = target
        self.library_path = library_path
        self.cache = cache
        self.cache_flags = LOADER_FLAGS.get((target.machine, target.elf_class))
        self.defaults = DEFAULT_DIRS.get(target.machine, FALLBACK_DIRS)
        self.elf: dict[str, tuple[ElfInfo, bool]] = {}
        self.host_cache: LdCache | None | bool = False

    def info(self, path: str, host: bool = False, symbols: bool = False) -> ElfInfo:
        """Dynamic-section facts; with `symbols`, also the (slower) symbol tables."""
        real = path if host else host_path(self.root, path)
        cached = self.elf.get(real)
        if cached is None or (symbols and cached[1] is False):
            st = os.stat(real)
            self.elf[real] = (_read_elf_once(real, symbols, (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)),
                              symbols)
        return self.elf[real][0]

    def check(self, path: str, host: bool = False) -> tuple[str | None, str]:
        """(canonical path, '') if ld.so would accept this candidate, else (None, why it is skipped)."""
        root = "/" if host else self.root
        canonical = resolve_in_root(root, path)
        if canonical is None:
            return None, "missing" if not os.path.lexists(host_path(root, path)) else "dangling symlink"
        try:
            header = read_header(host_path(root, canonical))
        except ElfError as err:
            return None, err.reason
        if not header.compatible(self.target):
            return None, f"wrong ELF class/machine ({header.describe()})"
        if header.type != "ET_DYN":
            return None, f"not a shared object ({header.type})"
        return canonical, ""

    def search(self, name: str, requester: LoadedObject | None) -> tuple[str | None, str, str, list[Candidate]]:
        """(winning path, origin, via, candidates) for a NEEDED or dlopen name."""
        if "/" in name:
            path, why = self.check(name)
            cand = [Candidate(name, "path", "wins" if path else "skipped", why, path)]
            return path, "path", "", cand
        stages: list[tuple[str, str]] = []
        info = self.info(requester.path) if requester and requester.origin != "host" else None
        if info is not None and not info.runpath:
            stages += [("RPATH", self.expand(d, requester.path)) for d in info.rpath]
        stages += [("LD_LIBRARY_PATH", d) for d in self.library_path]
        if info is not None:
            stages += [("RUNPATH", self.expand(d, requester.path)) for d in info.runpath]
        candidates: list[Candidate] = []
        seen: set[str] = set()
        winner: tuple[str, str, str] | None = None

        def consider(path: str, origin: str, via: str) -> None:
            nonlocal winner
            if path in seen:
                return
            seen.add(path)
            canonical, why = self.check(path)
            if canonical is None:
                if why != "missing" or origin == "ld.so.cache":
                    candidates.append(Candidate(path, origin, "skipped", why))
                return
            status = "shadowed" if winner else "wins"
            candidates.append(Candidate(path, origin, status, f"-> {canonical}" if canonical != path else "",
                                        canonical))
            if winner is None:
                winner = (canonical, origin, via)

        for origin, folder in stages:
            consider(f"{folder.rstrip('/')}/{name}", origin, folder)
        if self.cache is not None:
            entry = self.cache.lookup(name, self.cache_flags)
            if entry is not None:
                consider(entry.path, "ld.so.cache", "")
        for folder in self.defaults:
            consider(f"{folder}/{name}", "default", folder)
        if winner is None and self.root not in ("/", "") and SYSTEM_LIBRARY.match(name):
            host = self.search_host(name)
            if host:
                candidates.append(Candidate(host, "host", "wins", "system library taken from the live host", host))
                return host, "host", "", candidates
        if winner is None:
            return None, "", "", candidates
        return winner[0], winner[1], winner[2], candidates

    def search_host(self, name: str) -> str | None:
        if self.host_cache is False:
            try:
                self.host_cache = read_cache("/etc/ld.so.cache")
            except LdCacheError:
                self.host_cache = None
        dirs = [f"{d}/{name}" for d in self.defaults]
        if self.host_cache:
            entry = self.host_cache.lookup(name, self.cache_flags)
            if entry:
                dirs.insert(0, entry.path)
        for path in dirs:
            canonical, _ = self.check(path, host=True)
            if canonical:
                return canonical
        return None

    def expand(self, folder: str, requester: str) -> str:
        origin = os.path.dirname(requester)
        return folder.replace("${ORIGIN}", origin).replace("$ORIGIN", origin)


@dataclass(frozen=True)
class LoadRequest:
    """What a program will dlopen and how: the backend, the LD_LIBRARY_PATH it runs with, the libggml-base
    name the backend NEEDs, and the folder whose bundled libraries must win (for shadowing findings)."""

    backend: str
    library_path: tuple[str, ...]
    base: str
    bundled: str
    label: str  # the variant folder's name, for messages
    process: str = "ollama"  # the name of the process that dlopens it: `ollama runner` (v0.13-v0.24), llama-server


def resolve_backend(root: str, request: LoadRequest, env: Mapping[str, str], lookup: Iterable[str] = ()) -> Resolution:
    """Static check of `request` under `root` with the service's effective environment `env`.

    `lookup` names libraries to locate for the program whether or not the backend's closure needs them
    (`Resolution.lookups`); with it, preloads and lookups are still resolved when the backend itself is
    missing or not ELF (against this interpreter's ELF class and machine)."""
    root = os.fspath(root)
    lookup = list(lookup)
    backend = request.backend
    library_path = list(request.library_path)
    preload = split_preload(env.get("LD_PRELOAD")) + read_ld_so_preload(root)
    cache, cache_note = _cache(root)
    res = Resolution(root, backend, library_path, preload, cache_note)
    target = _backend_header(root, res, request.label)
    if target is None and not lookup:
        return res
    resolver = _Resolver(root, target or _this_header(), library_path, cache)
    loaded: list[LoadedObject] = []
    _load_preloads(resolver, res, preload, loaded, request.process)
    if target is not None:
        _load_group(resolver, res, request.base, "global", loaded)
        _load_group(resolver, res, backend, "backend", loaded)
    res.objects = loaded
    res.lookups = {name: _lookup(resolver, name, loaded) for name in lookup}
    if target is not None:
        _check_symbols(resolver, res, loaded)
        _check_shadowing(res, request.bundled, loaded)
    _check_preload_conflicts(resolver, res, loaded)
    res.findings.sort(key=lambda f: {"error": 0, "warning": 1, "info": 2}[f.level])
    return res


def _backend_header(root: str, res: Resolution, label: str) -> Header | None:
    """The backend's ELF header (the class and machine every candidate must match), or None with a finding."""
    real_backend = resolve_in_root(root, res.backend)
    if real_backend is None:
        res.findings.append(Finding("error", "backend-missing", f"the backend {res.backend} does not exist",
                                    f"install Ollama's {label} libraries or set verify.library"))
        return None
    try:
        return read_header(host_path(root, real_backend))
    except ElfError as err:
        res.findings.append(Finding("error", "backend-not-elf", f"the backend {res.backend}: {err.reason}",
                                    "reinstall Ollama"))
        return None


def _this_header() -> Header:
    try:
        return read_header(os.path.realpath(sys.executable))
    except ElfError:
        return Header(64, "EM_X86_64", "ET_DYN", True)


def _lookup(resolver: _Resolver, name: str, loaded: list[LoadedObject]) -> Lookup:
    """A mapped object already answers `name` by its name or SONAME (a preload shadows every file the
    search would meet); otherwise the search a NEEDED entry of the runner would make."""
    known = _find_loaded(loaded, name)
    if known is not None and known.group != "preload":
        return Lookup(name, known.path, known.origin, known.via, known.candidates)
    path, origin, via, candidates = resolver.search(name, None)
    if known is not None:
        for c in candidates:
            c.status = "shadowed" if c.status == "wins" else c.status
        return Lookup(name, known.path, "preload", "", candidates)
    return Lookup(name, path, origin, via, candidates)


def _cache(root: str) -> tuple[LdCache | None, str]:
    try:
        cache = root_cache(root)
    except LdCacheError as err:
        return None, f"not used ({err})"
    return cache, f"{len(cache.entries)} entries ({cache.format} format)"


def _find_loaded(loaded: list[LoadedObject], name: str, canonical: str | None = None) -> LoadedObject | None:
    for obj in loaded:
        if name in (obj.name, obj.path, obj.soname) or (canonical is not None and obj.path == canonical):
            return obj
    return None


def _load_preloads(resolver: _Resolver, res: Resolution, preload: list[str], loaded: list[LoadedObject],
                   process: str = "ollama") -> None:
    for entry in preload:
        path, origin, via, candidates = resolver.search(entry, None)
        if path is None:
            why = candidates[0].detail if candidates else "not found"
            res.findings.append(Finding(
                "error", "preload-unusable",
                f"LD_PRELOAD entry {entry} cannot be preloaded ({why}); ld.so ignores it",
                f"remove {entry} from `preload` or install the file"))
            continue
        info = resolver.info(path, symbols=True)
        if _find_loaded(loaded, entry, path):
            continue
        obj = LoadedObject(entry, path, "preload", via, info.soname, "preload", ["LD_PRELOAD"], candidates,
                           info.interposes)
        loaded.append(obj)
        hijack = sorted(set(obj.interposes) & LOADER_HIJACK)
        if hijack and not process.startswith("ollama"):
            # Whether such a shim hides a backend depends on the process it finds itself in (the field's
            # interposes only in `ollama*` processes); the load probe, run under `process`, decides.
            res.findings.append(Finding(
                "warning", "preload-interposes-loader",
                f"preloaded {entry} defines {', '.join(hijack)}: it interposes the dynamic loader in every process "
                f"it is preloaded into; whether it hides the backend from {process} the load probe shows"))
        elif hijack:
            res.findings.append(Finding(
                "error", "preload-interposes-loader",
                f"preloaded {entry} defines {', '.join(hijack)}: it interposes the dynamic loader that ggml "
                "uses to dlopen its backends (the field failure: libggml-cuda.so never loads)",
                f"remove {entry} from `preload`; make it reachable as its SONAME "
                f"{info.soname or '?'} through `library_path` and a `symlinks` entry instead"))
        elif obj.interposes:
            res.findings.append(Finding(
                "warning", "preload-interposes-files",
                f"preloaded {entry} interposes libc file functions ({', '.join(obj.interposes)}); "
                "it can change what the loader sees"))


def _load_group(resolver: _Resolver, res: Resolution, first: str, group: str, loaded: list[LoadedObject]) -> None:
    """Map `first` and its NEEDED closure breadth-first, like dlopen or the exec-time loader."""
    queue: deque[LoadedObject] = deque()
    existing = _find_loaded(loaded, first)
    if existing is None:
        path, origin, via, candidates = resolver.search(first, None)
        if path is None:
            res.missing_libraries.append({"name": first, "needed_by": "ollama runner" if group == "global"
                                          else "dlopen", "searched": [asdict(c) for c in candidates]})
            res.findings.append(Finding("error", "library-missing", f"{first} cannot be found",
                                        "check the Ollama installation under verify.ollama_lib"))
            return
        existing = _find_loaded(loaded, first, path)
        if existing is None:
            existing = LoadedObject(first, path, origin, via, resolver.info(path).soname, group,
                                    ["ollama runner" if group == "global" else "dlopen"], candidates)
            loaded.append(existing)
            queue.append(existing)
    while queue:
        obj = queue.popleft()
        info = resolver.info(obj.path, host=obj.origin == "host")
        for name in info.needed:
            known = _find_loaded(loaded, name)
            if known is not None:
                known.needed_by.append(obj.path)
                continue
            path, origin, via, candidates = resolver.search(name, obj)
            if path is None:
                _missing(res, name, obj, candidates, loaded)
                continue
            known = _find_loaded(loaded, name, path)
            if known is not None:
                known.needed_by.append(obj.path)
                continue
            host = origin == "host"
            soname = resolver.info(path, host=host).soname
            new = LoadedObject(name, path, origin, via, soname, group, [obj.path], candidates)
            loaded.append(new)
            queue.append(new)


def _missing(res: Resolution, name: str, obj: LoadedObject, candidates: list[Candidate],
             loaded: list[LoadedObject]) -> None:
    res.missing_libraries.append({"name": name, "needed_by": obj.path, "searched": [asdict(c) for c in candidates]})
    wrong = [o for o in loaded if o.group == "preload" and o.soname and o.soname != name
             and _stem(o.soname) == _stem(name)]
    wrong += [o for o in loaded if o.group == "preload" and name == "libcuda.so.1" and o not in wrong
              and "cuda" in o.path.rsplit("/", 1)[-1] and o.soname != name]
    if wrong:
        o = wrong[0]
        message = (f"{name} (NEEDED by {obj.path}) is not satisfied: the preloaded {o.name} has SONAME "
                   f"{o.soname or '(none)'}, and ld.so matches NEEDED entries by SONAME")
        fix = (f"use a shim whose SONAME is {name}, or add a `symlinks` entry {name} -> {o.path} in a "
               "`library_path` directory")
    else:
        skipped = [f"{c.path} ({c.detail})" for c in candidates if c.status == "skipped"]
        message = f"{name} (NEEDED by {obj.path}) cannot be found" + (
            f"; skipped: {'; '.join(skipped)}" if skipped else "")
        fix = (f"make {name} resolvable: a `symlinks` entry <dir>/{name} -> the shim in a `library_path` "
               "directory (or an `ld_so_conf` directory, then ldconfig)")
    res.findings.append(Finding("error", "library-missing", message, fix))


def _stem(soname: str) -> str:
    return soname.split(".so")[0]


def _accepts(version: str | None, hidden: bool, def_version: str | None) -> bool:
    """glibc's match: a versioned reference takes that version or an unversioned definition;
    an unversioned reference takes any default (non-hidden) definition."""
    if version is None:
        return not hidden
    return def_version == version or def_version is None


def _check_symbols(resolver: _Resolver, res: Resolution, loaded: list[LoadedObject]) -> None:
    """Every strong reference of the objects the backend's dlopen maps must bind (RTLD_NOW), searching
    preloads, then the runner's global libraries, then the backend's own closure."""
    scope = [o for g in ("preload", "global", "backend") for o in loaded if o.group == g]
    tables: dict[str, dict] = {}

    def definitions(obj: LoadedObject) -> dict:
        if obj.path not in tables:
            tables[obj.path] = resolver.info(obj.path, host=obj.origin == "host", symbols=True).definitions()
        return tables[obj.path]

    by_name: dict[str, LoadedObject] = {}
    for obj in scope:
        for n in (obj.name, obj.soname):
            if n:
                by_name.setdefault(n, obj)
    for obj in scope:
        if obj.group != "backend" or obj.origin == "host":
            continue
        info = resolver.info(obj.path, symbols=True)
        for file, versions in info.versions_needed.items():
            provider = by_name.get(file)
            if provider is None or provider.origin == "host":
                continue
            defined = resolver.info(provider.path, symbols=True).versions_defined
            for version in versions:
                if defined and version not in defined:
                    res.findings.append(Finding(
                        "error", "version-missing",
                        f"version `{version}' not found in {provider.path} ({file}), required by {obj.path}",
                        f"make {file} resolve to a library that defines {version} (Ollama's bundled copy)"))
        for ref in info.undefined:
            provider = by_name.get(ref.file) if ref.file else None
            if ref.weak or (provider is not None and provider.origin == "host"):
                continue  # weak references may stay unbound; system libraries are not ours to audit
            if any(_accepts(ref.version, d.hidden, d.version)
                   for o in scope for d in definitions(o).get(ref.name, ())):
                continue
            res.missing_symbols.append(MissingSymbol(ref.name, ref.version, ref.file, obj.path,
                                                     provider.path if provider else None))
    if res.missing_symbols:
        first = res.missing_symbols[0]
        names = ", ".join(sorted({m.symbol for m in res.missing_symbols}))
        source = first.expected_from or _guess_provider(res, first.symbol)
        where = f"; expected from {source}" if source else ""
        obj = _find_loaded(loaded, source) if source else None
        fix = "provide a library that exports it"
        if obj is not None and obj.origin == "preload":
            fix = f"use a shim that exports {first.symbol}, or drop {obj.name} from `preload`"
        elif obj is not None and obj.shadowed:
            fix = f"remove the stray {obj.path} (a `files` entry with state: absent) so {obj.shadowed[0]} is used"
        elif obj is not None:
            fix = f"{obj.path} lacks {first.symbol}: use a shim or library that exports the full API"
        res.findings.append(Finding(
            "error", "symbol-missing",
            f"undefined symbol: {first.symbol}{'@' + first.version if first.version else ''} "
            f"(required by {first.required_by}{where}); missing: {names}", fix))


# Which library an unversioned CUDA-stack symbol belongs to, by its name prefix (first match).
FAMILIES = (("cublasLt", "libcublasLt.so"), ("cublas", "libcublas.so"), ("cudnn", "libcudnn.so"),
            ("cufft", "libcufft.so"), ("curand", "libcurand.so"), ("cusparse", "libcusparse.so"),
            ("cusolver", "libcusolver.so"), ("cuda", "libcudart.so"), ("cu", "libcuda.so"),
            ("nvml", "libnvidia-ml.so"), ("ggml_", "libggml-base.so"))


def symbol_family(symbol: str) -> str | None:
    """The library stem (`libcuda.so`, `libcudart.so`, …) an unversioned CUDA-stack symbol belongs to."""
    return next((lib for prefix, lib in FAMILIES if symbol.startswith(prefix)), None)


def _guess_provider(res: Resolution, symbol: str) -> str | None:
    """For an unversioned reference: the loaded library whose name family matches the symbol."""
    lib = symbol_family(symbol)
    for obj in res.objects if lib else ():
        if (obj.soname or obj.name).startswith(lib):
            return obj.path
    return None


def _check_shadowing(res: Resolution, bundled: str, loaded: list[LoadedObject]) -> None:
    for obj in loaded:
        if obj.origin == "host":
            continue
        ours = [c.path for c in obj.candidates if c.status == "shadowed" and c.path.startswith(bundled + "/")]
        if ours and not obj.path.startswith(bundled + "/"):
            res.findings.append(Finding(
                "warning", "shadowed",
                f"{obj.name} resolves to {obj.path} ({obj.origin}), shadowing Ollama's bundled {ours[0]}",
                f"remove {obj.path} (a `files` entry with state: absent) or reorder the search path"))
        elif obj.shadowed:
            res.findings.append(Finding("info", "shadowed",
                                        f"{obj.name} resolves to {obj.path}; also found: {', '.join(obj.shadowed)}"))
    for obj in loaded:
        soname = obj.soname or obj.name
        if soname.startswith("libcudart.so") and not obj.path.startswith(bundled + "/"):
            res.findings.append(Finding(
                "warning", "cudart-not-bundled",
                f"{soname} resolves to {obj.path} ({obj.origin}), not Ollama's bundled runtime in {bundled}",
                "leave Ollama's libcudart in place and do not preload a runtime shim"))


def _check_preload_conflicts(resolver: _Resolver, res: Resolution, loaded: list[LoadedObject]) -> None:
    """A symbol defined by several preloads resolves to the first; wrong when a later one owns it
    (a cu* driver entry point won by something that is not libcuda.so.1)."""
    first_owner: dict[str, LoadedObject] = {}
    lost: dict[tuple[int, int], list[str]] = {}
    preloads = [o for o in loaded if o.group == "preload"]
    for index, obj in enumerate(preloads):
        for name in sorted({d.name for d in resolver.info(obj.path, symbols=True).defined if not d.hidden}):
            winner = first_owner.setdefault(name, obj)
            family = symbol_family(name)
            if winner is obj or family is None:
                continue
            if (obj.soname or "").startswith(family) and not (winner.soname or "").startswith(family):
                lost.setdefault((preloads.index(winner), index), []).append(name)
    for (w, o), names in sorted(lost.items()):
        winner, obj = preloads[w], preloads[o]
        res.preload_conflicts.append(PreloadConflict(winner.name, winner.soname, obj.name, obj.soname, names))
        res.findings.append(Finding(
            "error", "preload-order",
            f"preload order: {winner.name} (SONAME {winner.soname}) comes first and its "
            f"{', '.join(names[:6])}{' …' if len(names) > 6 else ''} win over those of {obj.name} "
            f"(SONAME {obj.soname}); for a symbol defined twice the first preload wins",
            f"list {obj.name} before {winner.name} in `preload`"))
