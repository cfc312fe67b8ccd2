"""Read-only probe of a host under a root: path states, the unit's drop-ins, its effective environment."""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field

from fixer.facts import systemd as unitfile
from fixer.facts.ldso import LD_SO_CONF, LD_SO_PRELOAD, ldconfig_dirs
from fixer.facts.nvidia import NvidiaFacts, PciDevice, nvidia, pci_devices
from fixer.facts.paths import PathState, host_path, list_dir, parent_problem, read_state
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

    @property
    def has_service_section(self) -> bool:
        return "[Service]" in [line.strip() for line in self.text.splitlines()]

    def service(self, key: str) -> list[str]:
        return [s.value for s in self.settings if s.section == "Service" and s.key == key]


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

    def state(self, path: str) -> PathState:
        return self.paths[path]


def unit_dirs(scope: str) -> tuple[str, ...]:
    return SYSTEM_UNIT_DIRS if scope == "system" else USER_UNIT_DIRS


def read_unit_file(root: str, path: str) -> UnitFile | None:
    state = read_state(root, path)
    if state.kind == "symlink":
        real = os.path.realpath(host_path(root, path))
        inside = root == "/" or real.startswith(os.path.realpath(root) + os.sep)
        if not inside or not os.path.isfile(real):
            return None
        with open(real, "rb") as fh:
            text = fh.read().decode("utf-8", errors="replace")
        return UnitFile(path, text, tuple(unitfile.parse(text)))
    if state.kind != "file":
        return None
    text = state.data.decode("utf-8", errors="replace")
    return UnitFile(path, text, tuple(unitfile.parse(text)))


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
    return _merged(unit, scope, main, by_name, dropins)


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
            dropins[name] = UnitFile(path, text, tuple(unitfile.parse(text)))
    return _merged(state.unit, state.scope, state.unit_file, by_name, dropins)


def _merged(unit: str, scope: str, main: UnitFile | None, by_name: dict[str, str],
            dropins: dict[str, UnitFile]) -> UnitState:
    ordered = [dropins[name] for name in sorted(dropins)]
    files = ([main] if main else []) + ordered
    pairs = [(f.path, list(f.settings)) for f in files if f is main or f.has_service_section]
    return UnitState(
        unit=unit,
        scope=scope,
        unit_file=main,
        dropins=ordered,
        environment=unitfile.merge_environment(pairs),
        directives=unitfile.last_values(pairs),
        dropin_paths=dict(by_name),
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

