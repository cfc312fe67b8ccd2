"""Read-only probe of a host under a root: path states, the unit's drop-ins, its effective environment."""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field

from fixer.facts import systemd as unitfile
from fixer.facts.ldso import LD_SO_CONF, LD_SO_PRELOAD, ldconfig_dirs
from fixer.facts.nvidia import NvidiaFacts, PciDevice, nvidia, pci_devices
from fixer.facts.paths import (PathState, glob_in, list_dir, parent_problem, read_capped, read_state,
                               real_path)
from fixer.model.profile import Profile

# systemd's unit search path, highest priority first (systemd.unit(5)).
SYSTEM_UNIT_DIRS = (
    "/etc/systemd/system.control",
    "/run/systemd/system.control",
    "/run/systemd/transient",
    "/run/systemd/generator.early",
    "/etc/systemd/system",
    "/etc/systemd/system.attached",
    "/run/systemd/system",
    "/run/systemd/system.attached",
    "/run/systemd/generator",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
    "/run/systemd/generator.late",
)
USER_UNIT_DIRS = (
    "/etc/systemd/user",
    "/run/systemd/user",
    "/usr/local/lib/systemd/user",
    "/usr/lib/systemd/user",
)


@dataclass(frozen=True)
class UnitFile:
    """One unit file or drop-in, parsed."""

    path: str
    text: str
    settings: tuple[unitfile.Setting, ...]
    sections: tuple[str, ...] = ()

    @classmethod
    def parsed(cls, path: str, text: str) -> "UnitFile":
        settings, sections = unitfile.parse_file(text)
        return cls(path, text, tuple(settings), tuple(sections))

    @property
    def has_service_section(self) -> bool:
        return "Service" in (self.sections or unitfile.parse_file(self.text)[1])

    def service(self, key: str) -> list[str]:
        return [s.value for s in self.settings if s.section == "Service" and s.key == key]


EnvFiles = tuple[list[tuple[str, list[tuple[str, str]]]], str | None]  # ((path, pairs) per file, problem)


@dataclass
class UnitState:
    """A unit as systemd would load it: main file, drop-ins in merge order, resulting settings."""

    unit: str
    scope: str
    unit_file: UnitFile | None
    dropins: list[UnitFile]
    environment: unitfile.Environment
    directives: dict[str, tuple[str, list[str]]]
    dropin_paths: dict[str, str] = field(default_factory=dict)  # drop-in name -> the path that wins it
    env_files: dict[str, EnvFiles] = field(default_factory=dict)  # EnvironmentFile= entry -> what it reads
    problems: list[str] = field(default_factory=list)  # what would stop the service from starting

    @property
    def files(self) -> list[UnitFile]:
        return ([self.unit_file] if self.unit_file else []) + self.dropins

    @property
    def exec_start(self) -> str | None:
        entry = self.directives.get("ExecStart")
        return entry[1][-1] if entry and entry[1] else None

    @property
    def user(self) -> str | None:
        entry = self.directives.get("User")
        return entry[1][-1] if entry and entry[1] else None

    @property
    def working_directory(self) -> str:
        """WorkingDirectory= (systemd.exec(5)): "/" for a service that sets none (or `~`, a home this
        does not resolve); a leading `-` only makes a missing directory non-fatal."""
        return working_directory(self.directives.get("WorkingDirectory", ("", []))[1])

    def to_dict(self) -> dict:
        return {
            "unit": self.unit,
            "scope": self.scope,
            "unit_file": self.unit_file.path if self.unit_file else None,
            "dropins": [d.path for d in self.dropins],
            "environment": self.environment.effective(),
            "origin": {k: self.environment.origin.get(k) for k in self.environment.effective()},
        }


@dataclass
class HostState:
    """Everything the planner needs to know about the host, read once."""

    root: str
    paths: dict[str, PathState]
    unsafe_parents: dict[str, str]
    unit: UnitState
    dropin_dir_problem: str | None = None
    ld_dirs: list[str] = field(default_factory=list)
    missing_targets: dict[str, str] = field(default_factory=dict)  # link path -> target absent in the root
    nvidia: NvidiaFacts = field(default_factory=NvidiaFacts)
    pci: list[PciDevice] = field(default_factory=list)
    euid: int = 0  # who vgpu-fix runs as: files it wrote without root privileges are owned by this uid

    def state(self, path: str) -> PathState:
        return self.paths[path]


def unit_dirs(scope: str) -> tuple[str, ...]:
    return SYSTEM_UNIT_DIRS if scope == "system" else USER_UNIT_DIRS


def read_unit_file(root: str, path: str) -> UnitFile | None:
    state = read_state(root, path)
    if state.kind == "symlink":  # followed as the manager of that root would, and read with the size cap
        real = real_path(root, path)
        if real is None or not os.path.isfile(real):
            return None
        return UnitFile.parsed(path, read_capped(real).decode("utf-8", errors="replace"))
    if state.kind != "file":
        return None
    return UnitFile.parsed(path, state.data.decode("utf-8", errors="replace"))


def read_environment_file(root: str, entry: str) -> EnvFiles:
    """What one EnvironmentFile= entry gives when the service starts: `-PATH` is optional, a glob
    matches files in order, each read inside the root with the size cap (src/core/execute.c)."""
    import glob

    optional = entry.startswith("-")
    pattern = entry[1:] if optional else entry
    if not pattern.startswith("/"):
        return [], None if optional else f"EnvironmentFile={entry}: not an absolute path; the service would not start"
    matches = glob_in(root, pattern) if glob.has_magic(pattern) else [pattern]
    found = []
    for shown in matches:
        real = real_path(root, shown)
        if real is not None and os.path.isfile(real):
            text = read_capped(real).decode("utf-8", errors="surrogateescape")
            found.append((shown, unitfile.parse_env_file(text)))
    if not found and not optional:
        return [], f"EnvironmentFile={entry}: no such file; the service would fail to start"
    return found, None


def working_directory(values: list[str]) -> str:
    """The service's working directory from its WorkingDirectory= values, the last one winning."""
    value = (values[-1] if values else "").lstrip("-")
    return value if value.startswith("/") else "/"


def probe_unit(root: str, unit: str, scope: str = "system") -> UnitState:
    """Load `unit` like systemd: its main file, then each drop-in name from the highest-priority dir."""
    dirs = unit_dirs(scope)
    main = next((f for d in dirs if (f := read_unit_file(root, f"{d}/{unit}"))), None)
    by_name: dict[str, str] = {}
    for prefix in _dropin_prefixes(unit):
        for d in dirs:
            dropin_dir = f"{d}/{prefix}.d"
            for name in list_dir(root, dropin_dir):
                if name.endswith(".conf") and name not in by_name:
                    by_name[name] = f"{dropin_dir}/{name}"
    dropins = {name: parsed for name, path in by_name.items() if (parsed := read_unit_file(root, path)) is not None}
    entries = {v for f in [main, *dropins.values()] if f for v in f.service("EnvironmentFile") if v}
    env_files = {entry: read_environment_file(root, entry) for entry in sorted(entries)}
    return _merged(unit, scope, main, by_name, dropins, env_files)


def with_dropin(state: UnitState, path: str, text: str | None) -> UnitState:
    """The unit as systemd would load it once `path` holds `text` (None: removed); pure, reads nothing."""
    name = os.path.basename(path)
    dirs = unit_dirs(state.scope)
    by_name = dict(state.dropin_paths)
    dropins = {os.path.basename(f.path): f for f in state.dropins}
    if name not in by_name or _priority(by_name[name], dirs) >= _priority(path, dirs):
        by_name[name] = path
        if text is None:
            dropins.pop(name, None)
        else:
            dropins[name] = UnitFile.parsed(path, text)
    return _merged(state.unit, state.scope, state.unit_file, by_name, dropins, state.env_files)


def _merged(unit: str, scope: str, main: UnitFile | None, by_name: dict[str, str],
            dropins: dict[str, UnitFile], env_files: dict[str, EnvFiles] | None = None) -> UnitState:
    """Pure: the unit's settings merged in file order; EnvironmentFile= contents (read by the probe)
    override Environment= (systemd.exec(5)), UnsetEnvironment= still applies last."""
    ordered = [dropins[name] for name in sorted(dropins)]
    files = ([main] if main else []) + ordered
    pairs = [(f.path, list(f.settings)) for f in files if f is main or f.has_service_section]
    environment = unitfile.merge_environment(pairs)
    directives = unitfile.last_values(pairs)
    env_files = env_files or {}
    read = [env_files[e] for e in directives.get("EnvironmentFile", ("", []))[1] if e in env_files]
    unitfile.apply_environment_files(environment, [found for files_, _ in read for found in files_])
    return UnitState(
        unit=unit,
        scope=scope,
        unit_file=main,
        dropins=ordered,
        environment=environment,
        directives=directives,
        dropin_paths=dict(by_name),
        env_files=dict(env_files),
        problems=[problem for _, problem in read if problem],
    )


def _priority(path: str, dirs: tuple[str, ...]) -> int:
    for index, d in enumerate(dirs):
        if path.startswith(d + "/"):
            return index
    return len(dirs)


def _dropin_prefixes(unit: str) -> list[str]:
    """Drop-in directory names for a unit, most specific first: `a-b-c.service`, `a-b-.service`, …"""
    stem, _, suffix = unit.rpartition(".")
    prefixes = [unit]
    parts = stem.split("-")
    for i in range(len(parts) - 1, 0, -1):
        prefixes.append("-".join(parts[:i]) + "-." + suffix)
    prefixes.append(suffix)
    return prefixes


def probe(root: str, profile: Profile) -> HostState:
    """Read every path the profile touches or depends on; never writes."""
    watched = [path for _, path in profile.managed_paths()] + [LD_SO_PRELOAD, LD_SO_CONF]
    paths = {path: read_state(root, path) for path in watched}
    unsafe = {path: problem for path in watched if (problem := parent_problem(root, path))}
    dropin_dir = os.path.dirname(profile.dropin_path)
    dir_state = read_state(root, dropin_dir)
    problem = None
    if dir_state.kind not in ("absent", "dir"):
        problem = f"{dropin_dir} is a {dir_state.describe()}, not a directory"
    return HostState(
        root=root,
        paths=paths,
        unsafe_parents=unsafe,
        unit=probe_unit(root, profile.service.unit, profile.service.scope),
        dropin_dir_problem=problem,
        ld_dirs=ldconfig_dirs(root),
        missing_targets=_missing_targets(root, profile),
        nvidia=nvidia(root),
        pci=pci_devices(root),
        euid=os.geteuid(),
    )


def _missing_targets(root: str, profile: Profile) -> dict[str, str]:
    """Present symlinks of the profile whose target does not exist inside the root (chroot semantics)."""
    from fixer.facts.linker import resolve_in_root

    missing = {}
    for link in profile.symlinks:
        if link.state == "present":
            target = posixpath.join(posixpath.dirname(link.path), link.target)
            if resolve_in_root(root, target) is None:
                missing[link.path] = link.target
    return missing

