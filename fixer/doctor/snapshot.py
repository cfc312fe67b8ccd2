"""The host facts doctor's rules read, gathered read-only from a root with the facts layer's readers."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from fixer.facts import paths
from fixer.facts.elf import ElfError, ElfInfo, read_elf
from fixer.facts.ldso import TRUSTED_DIRS, ld_so_conf_dirs, read_ld_so_preload, split_preload
from fixer.facts.linker import Resolution, resolve_in_root, split_path_list
from fixer.facts.nvidia import NvidiaFacts, display_controllers, nvidia
from fixer.facts.systemd import assignments, exec_argv
from fixer.model.profile import Verify
from fixer.ollama import layout, runner_engine
from fixer.ollama.layout import BACKEND, CUDA_LIB, DEFAULT_LIB

SHIM_MARKERS = ("vgpu",)
# Files only an NVIDIA vGPU (GRID) guest driver installs: its licensing daemon and its configuration.
VGPU_GUEST_FILES = ("/etc/nvidia/gridd.conf", "/usr/bin/nvidia-gridd", "/etc/nvidia/ClientConfigToken")
# The loader's default directories (every architecture's): listed to find shims, not to resolve names.


@dataclass(frozen=True)
class Entry:
    """A directory entry: kind, symlink target (as written) and modification time."""

    kind: str
    target: str | None = None
    mtime: float = 0.0
    size: int = 0


@dataclass(frozen=True)
class DropIn:
    """One drop-in: whether systemd reads it, and what it sets."""

    path: str
    has_service: bool = True
    env: dict[str, str] = field(default_factory=dict)
    unset: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    exec_start: tuple[str, ...] = ()


@dataclass
class HostFacts:
    """Everything doctor knows about the host. Absolute guest paths; defaults mean "not seen"."""

    root: str = "/"
    unit: str = "ollama.service"
    unit_path: str | None = None
    dropins: list[DropIn] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    env_origin: dict[str, str] = field(default_factory=dict)
    env_history: dict[str, list[tuple[str, str | None]]] = field(default_factory=dict)
    directives: dict[str, list[str]] = field(default_factory=dict)
    directive_origin: dict[str, str] = field(default_factory=dict)
    exec_start: str | None = None
    ollama_lib: str = DEFAULT_LIB
    lib_real: str = DEFAULT_LIB  # ollama_lib with its symlinks resolved inside the root
    lib_present: bool = False
    lib_top: dict[str, Entry] = field(default_factory=dict)
    lib_dirs: dict[str, dict[str, Entry]] = field(default_factory=dict)
    ld_so_preload: list[str] = field(default_factory=list)
    ld_cache_dirs: list[str] = field(default_factory=list)
    listings: dict[str, dict[str, Entry]] = field(default_factory=dict)
    exists: dict[str, bool] = field(default_factory=dict)
    realpaths: dict[str, str] = field(default_factory=dict)
    elf: dict[str, ElfInfo] = field(default_factory=dict)  # fixer.facts.elf facts by guest path (symlinks resolved)
    runner: Resolution | None = None  # fixer.facts.linker: how ld.so resolves the CUDA backend's runner (cuda_dir())
    snap: list[str] = field(default_factory=list)
    pci_gpus: list[str] | None = None
    dev_nodes: list[str] = field(default_factory=list)
    nvidia_modules: list[str] = field(default_factory=list)
    nvidia: NvidiaFacts | None = None  # a bound NVIDIA kernel driver or a driver package's libcuda

    @property
    def preload(self) -> list[str]:
        return split_preload(self.env.get("LD_PRELOAD", ""))

    @property
    def library_path(self) -> list[str]:
        return split_path_list(self.env.get("LD_LIBRARY_PATH"))

    @property
    def user(self) -> str | None:
        values = self.directives.get("User")
        return values[-1] if values else None

    def ggml_dirs(self) -> list[str]:
        """Subfolders Ollama turns into library dirs: those holding a `*ggml-*` file."""
        return sorted(d for d, names in self.lib_dirs.items() if any("ggml-" in n for n in names))

    def scanned_dirs(self) -> list[str]:
        """The library folders Ollama scans (fixer.ollama.layout.scanned): the pinned one, or every one unpinned."""
        return layout.scanned(self.ggml_dirs(), self.env)

    def scanned_cuda_dirs(self) -> list[str]:
        return [d for d in self.scanned_dirs() if d.startswith("cuda")]

    def cuda_dir(self) -> str:
        """The CUDA folder the runner would use: the pinned one, else cuda_v12, else any cuda folder."""
        pinned = self.env.get("OLLAMA_LLM_LIBRARY")
        dirs = self.ggml_dirs()
        if pinned in dirs:
            return pinned  # type: ignore[return-value]
        cuda = [d for d in dirs if d.startswith("cuda")]
        return CUDA_LIB if CUDA_LIB in cuda or not cuda else cuda[-1]

    def elf_of(self, path: str) -> ElfInfo | None:
        return self.elf.get(path) or self.elf.get(self.realpaths.get(path, ""))

    def shim_paths(self) -> list[str]:
        """Every path we know of that looks like a virtual-GPU shim."""
        seen = [*self.preload, *self.ld_so_preload, *self.elf]
        for directory, names in self.listings.items():
            seen += [f"{directory}/{n}" for n in names]
        return sorted({p for p in seen if is_shim_name(p) or is_shim_name(self.realpaths.get(p, ""))})

    @property
    def shim_host(self) -> bool:
        return bool(self.shim_paths())


def is_shim_name(path: str) -> bool:
    return any(marker in os.path.basename(path).lower() for marker in SHIM_MARKERS)


# ---------------------------------------------------------------- gathering (read-only)


def gather(root: str, unit: str = "ollama.service", ollama_lib: str | None = None) -> HostFacts:
    """Read what the rules need from the host under `root`; never writes."""
    facts = HostFacts(root=root, unit=unit)
    _gather_unit(facts)
    facts.ollama_lib = ollama_lib or _guess_lib(root, facts.exec_start)
    _gather_lib(facts)
    facts.ld_so_preload = read_ld_so_preload(root)
    facts.ld_cache_dirs = _ld_dirs(root)
    search = [*facts.library_path, *facts.ld_cache_dirs, *TRUSTED_DIRS]
    for directory in dict.fromkeys(search):
        if (listing := _listing(root, directory)) is not None:
            facts.listings[directory] = {n: e for n, e in listing.items() if _interesting(n)}
    for path in [*facts.preload, *facts.ld_so_preload, *VGPU_GUEST_FILES]:
        facts.exists[path] = _exists(root, path)
    _gather_elf(facts)
    facts.runner = _gather_runner(facts)
    facts.snap = _snap_evidence(root, unit, facts.exec_start)
    gpus = display_controllers(root)
    facts.pci_gpus = None if gpus is None else [f"{d.address} {d.vendor}:{d.cls}" for d in gpus]
    facts.dev_nodes = sorted(n for n in _names(root, "/dev") if n.startswith("nvidia"))
    facts.nvidia_modules = sorted(n for n in _names(root, "/sys/module") if n.startswith("nvidia"))
    facts.nvidia = nvidia(root)
    return facts


def _gather_unit(facts: HostFacts) -> None:
    from fixer.facts.host import probe_unit

    state = probe_unit(facts.root, facts.unit)
    facts.unit_path = state.unit_file.path if state.unit_file else None
    for f in state.dropins:
        env: dict[str, str] = {}
        unset: list[str] = []
        keys: list[str] = []
        exec_start: list[str] = []
        if f.has_service_section:
            service = [s for s in f.settings if s.section == "Service"]
            keys = [s.key for s in service]
            exec_start = [s.value for s in service if s.key == "ExecStart"]
            for name, value in assignments(service):
                if value is None:
                    unset.append(name)
                else:
                    env[name] = value
        facts.dropins.append(DropIn(f.path, f.has_service_section, env, tuple(unset), tuple(keys), tuple(exec_start)))
    facts.env = state.environment.effective()
    facts.env_origin = {k: v for k, v in state.environment.origin.items() if k in facts.env}
    facts.env_history = {k: list(v) for k, v in state.environment.history.items()}
    facts.directives = {k: list(v[1]) for k, v in state.directives.items()}
    facts.directive_origin = {k: v[0] for k, v in state.directives.items()}
    facts.exec_start = state.exec_start


def _guess_lib(root: str, exec_start: str | None) -> str:
    argv = exec_argv(exec_start)
    return layout.guess_lib(root, argv[0] if argv else None)


def _gather_lib(facts: HostFacts) -> None:
    listing = _listing(facts.root, facts.ollama_lib)
    if listing is None:
        return
    facts.lib_present = True
    facts.lib_real = _realpath(facts.root, facts.ollama_lib)
    for name, entry in listing.items():
        if entry.kind == "dir":
            facts.lib_dirs[name] = _listing(facts.root, f"{facts.ollama_lib}/{name}") or {}
        else:
            facts.lib_top[name] = entry
        if entry.kind == "symlink":
            facts.realpaths[f"{facts.ollama_lib}/{name}"] = _realpath(facts.root, f"{facts.ollama_lib}/{name}")
    for sub, names in facts.lib_dirs.items():
        for name, entry in names.items():
            if entry.kind == "symlink":
                path = f"{facts.ollama_lib}/{sub}/{name}"
                facts.realpaths[path] = _realpath(facts.root, path)


def _gather_elf(facts: HostFacts) -> None:
    """fixer.facts.elf facts of preloads and shim-like files (with symbols) and of the CUDA libraries (without)."""
    with_symbols = [*facts.preload, *facts.ld_so_preload]
    wanted: list[str] = []
    for directory, names in [*facts.listings.items(), (facts.ollama_lib, facts.lib_top)]:
        with_symbols += [f"{directory}/{n}" for n in names if n.startswith(("libcuda.so", "libnvidia-ml.so")) or is_shim_name(n)]
        wanted += [f"{directory}/{n}" for n in names if n.startswith(("libcublas", "libcudart"))]
    for sub in facts.lib_dirs:
        wanted += [f"{facts.ollama_lib}/{sub}/{n}" for n in (BACKEND, "libcudart.so.12", "libcudart.so.13")]
    for path, symbols in [*((p, True) for p in with_symbols), *((p, False) for p in wanted)]:
        real = _realpath(facts.root, path)
        if real != path:
            facts.realpaths[path] = real
        if real in facts.elf or not paths.is_file(facts.root, real):
            continue
        try:
            info = read_elf(paths.real_path(facts.root, real) or real, symbols=symbols)
        except ElfError:
            continue
        info.path = real
        facts.elf[real] = info


def _gather_runner(facts: HostFacts) -> Resolution | None:
    """How ld.so resolves the backend's runner on this root: fixer.facts.linker, with the root's real ld.so.cache."""
    if not facts.lib_present:
        return None
    libdir = facts.cuda_dir()
    spec = Verify(ollama_lib=facts.ollama_lib, library=libdir, backend=BACKEND)
    return runner_engine.resolve(facts.root, spec, facts.env, lookup=layout.bundled_sonames(libdir))


def _ld_dirs(root: str) -> list[str]:
    return [d for d in ld_so_conf_dirs(root) if d not in TRUSTED_DIRS]


def _snap_evidence(root: str, unit: str, exec_start: str | None) -> list[str]:
    found = []
    if exec_start and "/snap/" in exec_start:
        found.append(f"ExecStart={exec_start}")
    if unit.startswith("snap."):
        found.append(f"unit {unit}")
    for folder, pattern in (("/snap", "ollama"), ("/var/lib/snapd/snaps", "ollama_*.snap"),
                            ("/etc/systemd/system", "snap.ollama.*.service")):
        found += paths.matching(root, folder, pattern)
    return found


def _interesting(name: str) -> bool:
    return name.startswith(("libcuda.so", "libnvidia-ml.so", "libcudart.so", "libcublas")) or is_shim_name(name)


def _exists(root: str, path: str) -> bool:
    if not path.startswith("/"):
        return True  # a bare name is searched like a NEEDED entry; leave it to the loader rules
    return resolve_in_root(root, path) is not None


def _realpath(root: str, path: str) -> str:
    """Resolve symlinks of a guest path inside the root (absolute targets stay inside it); a dangling
    link still names where it points."""
    return resolve_in_root(root, path, strict=False) or path


def _listing(root: str, directory: str) -> dict[str, Entry] | None:
    found = paths.entries(root, directory)
    if found is None:
        return None
    out = {}
    for name, (st, target) in found.items():
        if stat.S_ISLNK(st.st_mode):
            out[name] = Entry("symlink", target, st.st_mtime)
        elif stat.S_ISDIR(st.st_mode):
            out[name] = Entry("dir", None, st.st_mtime)
        elif stat.S_ISREG(st.st_mode):
            out[name] = Entry("file", None, st.st_mtime, st.st_size)
        else:
            out[name] = Entry("other", None, st.st_mtime)
    return out


def _names(root: str, directory: str) -> list[str]:
    return paths.names(root, directory)
