"""Explain why Ollama runs on the CPU: host facts and log events through the rules, to a verdict."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fixer.doctor.rules.base import SEVERITY_ORDER, Context, Finding

if TYPE_CHECKING:
    from fixer.doctor.snapshot import HostFacts
    from fixer.model.profile import Profile
    from fixer.ollama.logs import LogSummary

# Which finding names the cause when several fire (most fundamental first).
PRIORITY = (
    "no-gpu-visible",
    "snap-ollama",
    "llm-library-invalid",
    "llama-server-missing",
    "nvidia-driver-gate",
    "cuda-arch-not-compiled",
    "integrated-gpu-dropped",
    "runner-crashed-in-init",
    "llama-server-discovery-failed",
    "backend-never-loaded",
    "no-gpu-library-tried",
    "exec-start-wrapper",
    "ld-so-preload-shim",
    "preload-interposes-dlopen",
    "libcuda-unresolvable",
    "shim-soname",
    "shim-missing-exports",
    "cudart-replaced",
    "shim-shadows-bundled",
    "devices-filtered",
    "discovery-timeout",
    "env-shadowed",
    "cuda-init-failed-logged",
    "loader-error-logged",
    "backend-load-failed-logged",
    "sandbox-privatedevices",
    "sandbox-protectkerneltunables",
)
SHIM_PROFILE, CUDA13_PROFILE, PASSTHROUGH_PROFILE = (
    "h100-vgpu",
    "h100-vgpu-cuda13",
    "passthrough-gpu",
)


@dataclass
class Diagnosis:
    root: str
    findings: list[Finding]
    verdict: str
    suggested_profile: str | None
    events: dict | None = None
    host: dict | None = None
    log_seen: bool = False
    installation: dict | None = None  # fixer.ollama.detect.Installation.to_dict()
    profile: str | None = None

    @property
    def ok(self) -> bool:
        return not any(f.severity in ("error", "external") for f in self.findings)

    def to_dict(self) -> dict:
        return {
            "format_version": 1,
            "command": "doctor",
            "profile": self.profile,
            "root": self.root,
            "changed": False,
            "failed": not self.ok,
            "msg": self.verdict,
            "exit_code": 0 if self.ok else 10,  # ExitCode.PROBLEM_FOUND
            "verdict": self.verdict,
            "suggested_profile": self.suggested_profile,
            "findings": [f.to_dict() for f in self.findings],
            "events": self.events,
            "host": self.host,
            "installation": self.installation,
        }


def run_rules(ctx: Context) -> list[Finding]:
    from fixer.doctor.rules import RULES

    found: list[Finding] = []
    for rule in RULES:
        found.extend(rule(ctx))
    return sort_findings(found)


def sort_findings(findings: list[Finding]) -> list[Finding]:
    def key(f: Finding) -> tuple[int, int]:
        rank = PRIORITY.index(f.id) if f.id in PRIORITY else len(PRIORITY)
        return SEVERITY_ORDER[f.severity], rank

    return sorted(findings, key=key)


def suggest_profile(findings: list[Finding], host: HostFacts | None, available: set[str] | None = None,
                    requested: str | None = None, log: LogSummary | None = None) -> str | None:
    """The shipped profile that fixes what was found, or None (nothing fixable, or outside reach).
    Never h100-vgpu-preload: the library-path strategy of h100-vgpu is what worked on shim hosts, and a
    preload replaces Ollama's bundled runtime. h100-vgpu-cuda13 only when the shim reports a CUDA 13
    driver in Ollama's log, never because cuda_v13 happens to be pinned."""
    if any(f.severity == "external" for f in findings):
        return None
    if not any(f.fixable and f.severity in ("error", "warning") for f in findings):
        return None
    if requested:
        return requested
    choice = PASSTHROUGH_PROFILE
    if host is not None and host.shim_host:
        choice = CUDA13_PROFILE if (reported_driver_major(log) or 0) >= 13 else SHIM_PROFILE
    elif host is None:
        choice = SHIM_PROFILE
    if available is not None and choice not in available:
        return None
    return choice


def reported_driver_major(log: LogSummary | None) -> int | None:
    """The CUDA driver major the shim reported to Ollama (`driver=13.0` on an "inference compute" line)."""
    majors = []
    for dev in (log.gpu_devices if log is not None else []):
        head = str(dev.data.get("driver") or "").split(".")[0]
        if head.isdigit():
            majors.append(int(head))
    return max(majors) if majors else None


def verdict(findings: list[Finding], log: LogSummary | None, profile: str | None) -> str:
    external = [f for f in findings if f.severity == "external"]
    if external:
        return (f"Outside this host's reach: {external[0].summary}. No profile can fix this from inside the guest "
                "(and installing the NVIDIA driver would not help).")
    errors = [f for f in findings if f.severity == "error"]
    setting = errors[0].fix.setting or "" if errors else ""
    override = f" --set {setting[5:]}" if setting.startswith("vars.") and "=" in setting else ""
    tail = f" — run `vgpu-fix plan --profile {profile}{override}`" if profile else ""
    unfixable = [f for f in errors if not f.fixable]
    if unfixable and profile:
        tail += f" (it cannot fix: {'; '.join(f.summary for f in unfixable[:2])})"
    if log is not None and log.gpu_devices and not errors:
        dev = log.gpu_devices[0].data
        warnings = [f for f in findings if f.severity == "warning"]
        extra = f"; {len(warnings)} warning(s){tail}" if warnings else ""
        return (f"GPU in use: {dev.get('description') or dev.get('name') or dev.get('id')} via "
                f"{dev.get('library')} ({dev.get('libdirs', '?')}, driver {dev.get('driver', '?')}){extra}.")
    if errors:
        state = "CPU fallback" if log is not None and log.cpu_fallback else "Problem"
        return f"{state}: {errors[0].summary}{tail}."
    warnings = [f for f in findings if f.severity == "warning"]
    if warnings:
        return f"No blocking problem found; {len(warnings)} warning(s), first: {warnings[0].summary}{tail}."
    if log is None:
        return "No problem found in the host configuration (give Ollama's log with --log FILE, or run on the live root, where the journal is read, to check what it did)."
    return "No problem found."


def _available_profiles(root: str) -> set[str] | None:
    try:
        from fixer.profiles import list_profiles

        names = {name for name, _, _ in list_profiles(root)}
    except Exception:  # noqa: BLE001 - profile discovery must never break doctor
        return None
    return names or None


def profile_limits(profile: Profile) -> Finding:
    """What the profile in question says it cannot fix (its `cannot_fix` list), as an unfixable finding."""
    from fixer.doctor.rules.base import finding

    return finding("profile-cannot-fix", "info", f"what {profile.name} cannot fix",
                   list(profile.cannot_fix),
                   "A profile only changes configuration. The reference host also needed a patched Ollama and a "
                   "rebuilt backend; if the log still shows CPU fallback after the profile is applied and "
                   "verified, one of these is the likely cause.",
                   "Outside any profile: see the items listed (patched Ollama, rebuilt backend, host side).")


def _suggested_profile(name: str | None, root: str) -> Profile | None:
    if name is None:
        return None
    try:
        return _load_profile(name, root)
    except Exception:  # noqa: BLE001 - a broken site profile must never break doctor
        return None


def _load_profile(profile: Profile | str | None, root: str) -> Profile | None:
    if profile is None or not isinstance(profile, str):
        return profile
    from fixer.profiles import load

    return load(profile, root)


def diagnose(root: str, log_text: str | None, profile: Profile | str | None = None, *, probe_host: bool = True) -> Diagnosis:
    """Run every rule over the host under `root` and the log text; read-only."""
    from fixer.doctor.snapshot import gather
    from fixer.ollama.logs import summarize

    prof = _load_profile(profile, root)
    unit = prof.service.unit if prof else "ollama.service"
    lib = prof.verify.ollama_lib if prof else None
    host = gather(root, unit, lib) if probe_host else None
    log = summarize(log_text) if log_text is not None else None
    installation = _installation(root, prof, host)
    if log is not None and installation is not None and log.generation is None:
        log.generation, log.generation_evidence = installation.generation, f"installed: {installation.describe()}"
    ctx = Context(host=host, log=log, our_dropin=prof.service.dropin if prof else "zz-vgpu-fix.conf",
                  generation=installation.generation if installation is not None and installation.how in ("binary", "layout") else None)
    findings = run_rules(ctx)
    suggested = suggest_profile(findings, host, _available_profiles(root), prof.name if prof else None, log)
    limits = prof if prof is not None else _suggested_profile(suggested, root)
    if limits is not None and limits.cannot_fix:
        findings = sort_findings(findings + [profile_limits(limits)])
    return Diagnosis(
        root=root,
        findings=findings,
        verdict=verdict(findings, log, suggested),
        suggested_profile=suggested,
        events=log.to_dict() if log else None,
        host=_host_summary(host),
        log_seen=log is not None,
        installation=installation.to_dict() if installation else None,
        profile=prof.name if prof else None,
    )


def _installation(root: str, profile: Profile | None, host: HostFacts | None):
    """The Ollama installed under `root` (which generation's rules apply), when doctor reads the host."""
    if host is None:
        return None
    from fixer.facts.systemd import exec_argv
    from fixer.ollama import detect, layout

    argv = exec_argv(host.exec_start)
    binary = profile.verify.ollama_bin if profile else argv[0] if argv and argv[0].startswith("/") else layout.OLLAMA_BIN
    from fixer.facts.host import working_directory

    return detect.detect(root, binary, host.ollama_lib, working_directory(host.directives.get("WorkingDirectory", [])))


def _host_summary(host: HostFacts | None) -> dict | None:
    if host is None:
        return None
    return {
        "unit": host.unit_path,
        "dropins": [d.path for d in host.dropins],
        "exec_start": host.exec_start,
        "environment": host.env,
        "ollama_lib": host.ollama_lib if host.lib_present else None,
        "library_folders": host.ggml_dirs(),
        "preload": host.preload,
        "ld_so_preload": host.ld_so_preload,
        "shims": host.shim_paths(),
        "runner": _runner_summary(host),
    }


def _runner_summary(host: HostFacts) -> dict | None:
    """Where the runner's loader finds the CUDA libraries (fixer.facts.linker's answer for this root)."""
    res = host.runner
    if res is None:
        return None
    return {
        "library_path": res.library_path,
        "ld_so_cache": res.cache,
        "libraries": {name: {"path": lk.path, "found": lk.found, "origin": lk.origin} for name, lk in res.lookups.items()},
    }


def journal_text(root: str, unit: str = "ollama.service", scope: str = "system") -> str:
    """The unit's journal as `journalctl -o json` lines (live root only)."""
    from fixer import system
    from fixer.errors import InvalidInput

    if root != "/":
        raise InvalidInput("--journal reads the running system's journal; with --root give the log with --log FILE")
    return system.journal(unit, scope)
