"""What `fix` decides from, read from a root with doctor's and verify's readers: one line per fact."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

UNIT = "ollama.service"
# Exported entry points that make a file a driver, runtime or NVML library (whatever its name).
ENTRY_POINTS = {
    "driver": ("cuInit", "cuDriverGetVersion"),
    "runtime": ("cudaGetDeviceCount",),
    "nvml": ("nvmlInit_v2",),  # nvmlSystemGetDriverVersion is optional: without it Ollama reads driver 0
}
LOADER_HOOKS = frozenset({"dlopen", "dlmopen", "dlsym", "dlvsym", "dlclose"})
VENDOR_DIRS = ("/opt/*/lib", "/opt/*/lib64", "/opt/*/*/lib", "/opt/*/*/lib64")
NVIDIA_VENDOR = "0x10de"
MAX_FILES_PER_DIR = 256


@dataclass(frozen=True)
class Shim:
    """A file in a shim directory that exports CUDA driver, runtime or NVML entry points."""

    path: str
    soname: str | None
    roles: tuple[str, ...]
    interposes: tuple[str, ...]  # libc entry points it defines (fixer.facts.elf.INTERPOSABLE)

    @property
    def runtime_major(self) -> str | None:
        """The CUDA major of a runtime library, from its SONAME (libcudart.so.13 -> "13")."""
        name = self.soname or ""
        return name.rsplit(".", 1)[-1] if name.startswith("libcudart.so.") else None

    @property
    def hooks_loader(self) -> bool:
        return bool(LOADER_HOOKS & set(self.interposes))


@dataclass
class Evidence:
    """Every fact `fix` chooses from; `lines` holds the sentence each choice cites, by id."""

    root: str
    unit: str = UNIT
    scope: str = "system"
    unit_file: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    group: str | None = None
    installation: dict = field(default_factory=dict)
    ollama_bin: str = ""
    ollama_lib: str = ""
    folders: list[str] = field(default_factory=list)  # CUDA library folders holding a backend
    unpinned_folder: str = ""  # the folder Ollama picks without OLLAMA_LLM_LIBRARY ("" when none)
    nvidia_present: bool = False
    nvidia_version: str | None = None
    gpus: list[dict] = field(default_factory=list)  # NVIDIA-vendor display devices not bound to a driver
    pci_readable: bool = False
    shims: list[Shim] = field(default_factory=list)
    driver_version: int | None = None  # what the driver shim's cuDriverGetVersion answered
    nvml_version: str | None = None  # what the NVML shim's nvmlSystemGetDriverVersion answered
    logged_driver: int | None = None  # the driver major the service logged ("inference compute" driver=)
    external: list[dict] = field(default_factory=list)  # doctor's findings outside the guest
    lines: dict[str, str] = field(default_factory=dict)

    def shim_for(self, role: str, directory: str | None = None) -> Shim | None:
        """The first file exporting `role`'s entry points (in `directory` when given); a driver shim
        whose SONAME is libcuda.so.1 first."""
        found = [s for s in self.shims if role in s.roles and (directory is None or os.path.dirname(s.path) == directory)]
        found.sort(key=lambda s: (role == "driver" and s.soname != "libcuda.so.1", role == "driver" and "runtime" in s.roles, s.path))
        return found[0] if found else None

    def to_dict(self) -> dict:
        out = asdict(self)
        out["shims"] = [{**asdict(s), "roles": list(s.roles), "interposes": list(s.interposes)} for s in self.shims]
        out["lines"] = [{"id": k, "line": v} for k, v in self.lines.items()]
        return out


def gather(root: str, *, probe: bool = False, log_text: str | None = None, journal: bool = False,
           timeout: float = 20.0, probe_user: str | None = None) -> Evidence:
    """Read the evidence under `root` (never writes). With `probe`, the driver and NVML shims found are
    asked for their versions the way verify's native probe asks (the root's files run, sandboxed);
    `log_text` or, with `journal`, the unit's journal (live root) is read the way doctor reads it. A copy's
    shims run as `probe_user` (default nobody), the live root's as this process."""
    from fixer.doctor.snapshot import gather as host_facts

    ev = Evidence(root)
    _gather_unit(ev)
    _gather_install(ev)
    facts = host_facts(root, UNIT, ev.ollama_lib)
    ev.nvidia_present = bool(facts.nvidia and facts.nvidia.present)
    ev.nvidia_version = facts.nvidia.version if facts.nvidia else None
    ev.lines["nvidia"] = ("a real NVIDIA driver: " + "; ".join(facts.nvidia.evidence)) if ev.nvidia_present else \
        "no NVIDIA kernel driver bound and no driver package's libcuda.so.<version> installed"
    _gather_pci(ev)
    _gather_shims(ev, facts)
    if log_text is None and journal:
        log_text = _journal(ev)
    _gather_log(ev, facts, log_text)
    if probe and not ev.nvidia_present:
        _read_versions(ev, timeout, probe_user)
    else:
        ev.lines["versions"] = ("the driver's own version stands (no shim asked)" if ev.nvidia_present else
                                "the shims' versions were not read: " + ("--no-probe" if root == "/" else
                                                                          "a copy's files run only with --probe"))
    ev.lines["choice"] = _ollama_choice(ev)
    return ev


def _gather_unit(ev: Evidence) -> None:
    """The unit as systemd merges it (system scope, else a user unit), its program and settings."""
    from fixer.doctor.snapshot import exec_argv
    from fixer.facts.host import probe_unit
    from fixer.ollama import layout

    unit = probe_unit(ev.root, UNIT, "system")
    if unit.unit_file is None and (user := probe_unit(ev.root, UNIT, "user")).unit_file is not None:
        ev.scope, unit = "user", user
    ev.unit_file = unit.unit_file.path if unit.unit_file else None
    ev.env = unit.environment.effective()
    group = unit.directives.get("Group")
    ev.group = (group[1][-1] if group and group[1] else None) or (unit.user if unit.user != "root" else None)
    argv = exec_argv(unit.exec_start)
    ev.ollama_bin = argv[0] if argv and argv[0].startswith("/") else layout.OLLAMA_BIN
    origin = {k: v for k, v in unit.environment.origin.items() if k in ev.env}
    sets = ", ".join(f"{k}={ev.env[k]} ({origin.get(k, '?')})" for k in sorted(ev.env)
                     if k.startswith(("LD_", "OLLAMA_LLM", "CUDA_")))
    ev.lines["unit"] = (f"{UNIT} ({ev.scope} scope): {ev.unit_file or 'no unit file'}; "
                        f"ExecStart={unit.exec_start or '(none)'}; {'sets ' + sets if sets else 'sets no loader or library variable'}")
    ev.lines["group"] = (f"{UNIT} runs as group {ev.group} (Group=/User=)" if ev.group
                         else f"{UNIT} names no Group= or User=: the profile's group")


def _gather_install(ev: Evidence) -> None:
    """The Ollama the unit runs: its version and generation, its install tree, the CUDA folders shipped."""
    from fixer.ollama import detect, layout

    ev.ollama_lib = layout.guess_lib(ev.root, ev.ollama_bin)
    found = detect.detect(ev.root, ev.ollama_bin, ev.ollama_lib)
    ev.installation = found.to_dict()
    ev.lines["installation"] = f"{found.describe()}: binary {ev.ollama_bin}, install tree {ev.ollama_lib}"
    ev.folders = [f for f in layout.library_folders(ev.root, ev.ollama_lib) if f.startswith("cuda")]
    ev.lines["folders"] = f"CUDA folders shipped in {ev.ollama_lib}: {', '.join(ev.folders) or 'none'}"


def _gather_pci(ev: Evidence) -> None:
    from fixer.facts.nvidia import pci_bus_readable, pci_devices

    ev.pci_readable = pci_bus_readable(ev.root)
    for dev in pci_devices(ev.root):
        if dev.vendor == NVIDIA_VENDOR and dev.cls.startswith("0x03") and not dev.nvidia_driver:
            ev.gpus.append({"address": dev.address, "vendor": dev.vendor, "device": dev.device, "class": dev.cls,
                            "driver": dev.driver})
    ev.lines["pci"] = ("para-virtual NVIDIA devices without a kernel driver: " + ", ".join(
        f"{g['address']} {g['vendor']}:{g['device']} class {g['class']}" for g in ev.gpus)) if ev.gpus else (
        "no NVIDIA-vendor display device without a kernel driver on the PCI bus" if ev.pci_readable
        else "no /sys/bus/pci/devices in the root: PCI ids not readable")


def _shim_dirs(ev: Evidence, facts) -> list[str]:
    """Where shims live: the unit's library path and preloads, /etc/ld.so.preload, ld.so.conf's own
    directories, vendor trees under /opt, and the folder of every shim-named file doctor saw; never
    Ollama's tree or the loader's trusted directories (a real driver package lives there)."""
    from fixer.facts.ldso import TRUSTED_DIRS
    from fixer.facts.libraries import directories

    from fixer.facts.ldso import split_preload
    from fixer.facts.linker import split_path_list

    preloads = [*split_preload(ev.env.get("LD_PRELOAD", "")), *facts.preload, *facts.ld_so_preload]
    dirs = [*split_path_list(ev.env.get("LD_LIBRARY_PATH")), *facts.library_path,
            *(os.path.dirname(p) for p in preloads if "/" in p),
            *facts.ld_cache_dirs, *(os.path.dirname(p) for p in facts.shim_paths() if "/" in p)]
    for pattern in VENDOR_DIRS:
        dirs += directories(ev.root, pattern)
    lib = ev.ollama_lib.rstrip("/")
    return [d for d in dict.fromkeys(os.path.normpath(d) for d in dirs if d.startswith("/"))
            if d not in TRUSTED_DIRS and d != lib and not d.startswith(lib + "/")]


def _gather_shims(ev: Evidence, facts) -> None:
    from fixer.facts.libraries import shared_objects

    for directory in _shim_dirs(ev, facts):
        for path, info in shared_objects(ev.root, directory, MAX_FILES_PER_DIR):
            exported = {d.name for d in info.defined}
            roles = tuple(r for r, names_ in ENTRY_POINTS.items() if set(names_) <= exported)
            if roles:
                ev.shims.append(Shim(path, info.soname, roles, tuple(info.interposes)))
    for role, names_ in ENTRY_POINTS.items():
        shims = [s for s in ev.shims if role in s.roles]
        ev.lines[f"shim:{role}"] = ("; ".join(
            f"{s.path} exports {', '.join(names_)} (SONAME {s.soname or 'none'})" for s in shims) if shims
            else f"no file in the shim directories exports {', '.join(names_)}")
    driver = ev.shim_for("driver")
    if driver is not None:
        ev.lines["interposes"] = (f"{driver.path} defines libc's {', '.join(driver.interposes)}" if driver.interposes
                                  else f"{driver.path} defines no libc loader or file entry point")


def _gather_log(ev: Evidence, facts, log_text: str | None) -> None:
    """doctor's rules over the same host facts and the service's log: the findings outside the guest,
    and the driver the service logged."""
    from fixer.doctor.rules.base import Context
    from fixer.doctor.verdict import reported_driver_major, run_rules
    from fixer.ollama.logs import summarize

    log = summarize(log_text) if log_text else None
    ev.logged_driver = reported_driver_major(log)
    if log is not None:
        ev.lines["log"] = (f"the service logged a GPU with driver {ev.logged_driver}" if ev.logged_driver
                           else "the service's log names no GPU driver")
    for finding in run_rules(Context(host=facts, log=log)):
        if finding.severity == "external":
            ev.external.append({"id": finding.id, "summary": finding.summary, "evidence": list(finding.evidence)})
            ev.lines[f"external:{finding.id}"] = f"doctor: {finding.summary} ({'; '.join(finding.evidence)})"


def _journal(ev: Evidence) -> str | None:
    from fixer.doctor.verdict import journal_text
    from fixer.errors import FixerError

    try:
        return journal_text(ev.root, ev.unit, ev.scope)
    except FixerError as exc:
        ev.lines["log"] = f"the journal of {ev.unit} could not be read ({exc.message}): judged from host state only"
        return None


def _read_versions(ev: Evidence, timeout: float, probe_user: str | None = None) -> None:
    """The driver shim's cuDriverGetVersion and the NVML shim's nvmlSystemGetDriverVersion, read by verify's
    native probe with both preloaded (a dlopen by SONAME then finds the preloaded object)."""
    from fixer.model.profile import Verify
    from fixer.ollama.layout import BACKEND, CUDA_LIB
    from fixer.ollama.llama_server import read_native

    driver = ev.shim_for("driver")
    if driver is None:
        ev.lines["versions"] = "no driver shim to ask for its version"
        return
    nvml = ev.shim_for("nvml", os.path.dirname(driver.path))
    preload = [driver.path] + ([nvml.path] if nvml else [])
    spec = Verify(ollama_lib=ev.ollama_lib, library=CUDA_LIB, backend=BACKEND)
    user = None
    if ev.root != "/":  # an untrusted copy's code runs as the operator's probe account, never as root
        from fixer.probe.placement import PROBE_USER, probe_account

        user = probe_user or PROBE_USER
        probe_account(user)
    reading = read_native(ev.root, {"LD_PRELOAD": ":".join(preload)}, spec, user, timeout)
    cuda, nvml_said = reading.cuda or {}, reading.nvml or {}
    if isinstance(cuda.get("driver_version"), int):
        ev.driver_version = cuda["driver_version"]
    if nvml_said.get("ok"):
        ev.nvml_version = str(nvml_said.get("driver_version"))
    said = [f"{driver.path}: cuInit {cuda.get('cuInit', '?')}, cuDriverGetVersion = {ev.driver_version}"
            if ev.driver_version is not None else f"{driver.path}: {reading.error or cuda.get('error') or 'cuInit failed'}"]
    if nvml is not None:
        said.append(f"{nvml.path}: nvmlSystemGetDriverVersion = {ev.nvml_version!r}" if ev.nvml_version is not None
                    else f"{nvml.path}: {nvml_said.get('error') or 'NVML not readable'}")
    ev.lines["versions"] = f"native probe ({reading.mode}): " + "; ".join(said)


def _ollama_choice(ev: Evidence) -> str:
    """Which CUDA folder Ollama will use: the pinned one; unpinned, the newest one the driver can run."""
    if ev.nvidia_present:
        from fixer.facts.nvidia import chosen_library

        ev.unpinned_folder = chosen_library(ev.root, ev.ollama_lib)
        why = f"NVIDIA driver {ev.nvidia_version}"
    else:
        ev.unpinned_folder = "cuda_v13" if "cuda_v13" in ev.folders and (ev.driver_version or 0) >= 13000 else \
            ("cuda_v12" if "cuda_v12" in ev.folders else (ev.folders or [""])[-1])
        why = f"driver {ev.driver_version or 'not read'}"
    unpinned = f"unpinned, Ollama would use {ev.unpinned_folder or 'no CUDA folder'} ({why}; folders " \
               f"{', '.join(ev.folders) or 'none'})"
    pinned = ev.env.get("OLLAMA_LLM_LIBRARY")
    if pinned:
        return f"OLLAMA_LLM_LIBRARY={pinned}: Ollama uses {pinned if pinned in ev.folders else 'no CUDA folder'}; {unpinned}"
    return unpinned
