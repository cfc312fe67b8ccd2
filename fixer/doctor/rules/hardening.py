"""Rules over the service sandbox: settings that hide from the shim what it needs to reach the device."""

from __future__ import annotations

from fixer.doctor.rules.base import Context, Finding, finding, rule

TRUE = {"yes", "true", "1", "on"}
NEEDED_CAPS = ("CAP_SYS_ADMIN", "CAP_IPC_LOCK")
PCI_DIR = "/sys/bus/pci/devices"


def _last(values: list[str] | None) -> str | None:
    return values[-1].strip() if values else None


def _caps(values: list[str] | None) -> set[str] | None:
    """The capability set a list of CapabilityBoundingSet=/AmbientCapabilities= lines leaves."""
    if values is None:
        return None
    caps: set[str] = set()
    for value in values:
        words = value.split()
        if words and words[0].startswith("~"):
            words[0] = words[0][1:]
            caps -= set(words)
        else:
            caps |= set(words)
    return caps


@rule
def sandbox(ctx: Context) -> list[Finding]:
    host = ctx.host
    if host is None or not host.shim_host or host.unit_path is None:
        return []
    d = host.directives
    out: list[Finding] = []

    def add(key: str, severity: str, summary: str, evidence: str, why: str, fix: str) -> None:
        where = host.directive_origin.get(key)
        shown = f"{where}: {evidence}" if where else evidence
        out.append(finding(f"sandbox-{key.lower()}", severity, summary, [shown], why, fix, f"service.directives.{key}"))  # type: ignore[arg-type]

    if (_last(d.get("PrivateDevices")) or "").lower() in TRUE:
        add("PrivateDevices", "error", "PrivateDevices=yes hides the GPU device nodes from the service",
            "PrivateDevices=" + (_last(d.get("PrivateDevices")) or ""),
            "With a private /dev the service sees only pseudo-devices; the shim cannot open the nodes it "
            "uses to reach the para-virtual device.", "Set PrivateDevices=no.")
    memlock = _last(d.get("LimitMEMLOCK"))
    if memlock is None or memlock.lower() not in ("infinity", "unlimited"):
        add("LimitMEMLOCK", "warning", "locked-memory limit is not raised for the service",
            f"LimitMEMLOCK={memlock}" if memlock else "LimitMEMLOCK not set (the default is 8 MiB or less)",
            "The shim pins host memory for transfers; with the default limit its allocations fail and the "
            "backend reports no usable device.", "Set LimitMEMLOCK=infinity.")
    bounding = _caps(d.get("CapabilityBoundingSet"))
    if bounding is not None and (missing := [c for c in NEEDED_CAPS if c not in bounding]):
        add("CapabilityBoundingSet", "warning", f"the capability bounding set drops {', '.join(missing)}",
            "CapabilityBoundingSet=" + " ".join(d["CapabilityBoundingSet"]),
            "The shim maps the device's PCI resources and locks memory; without these capabilities those "
            "calls fail inside the service even when they work from a root shell.",
            f"Include {' '.join(NEEDED_CAPS)} in CapabilityBoundingSet=.")
    user = host.user
    if user not in (None, "root", "0"):
        ambient = _caps(d.get("AmbientCapabilities")) or set()
        if missing := [c for c in NEEDED_CAPS if c not in ambient]:
            add("AmbientCapabilities", "warning", f"the service runs as {user} without {', '.join(missing)}",
                f"User={user}; AmbientCapabilities=" + " ".join(d.get("AmbientCapabilities", [])),
                "A non-root service user only holds capabilities granted as ambient ones; the shim needs "
                "them to map the device and lock memory.", f"Set AmbientCapabilities={' '.join(NEEDED_CAPS)}.")
    if (_last(d.get("NoNewPrivileges")) or "").lower() in TRUE:
        add("NoNewPrivileges", "warning", "NoNewPrivileges=yes blocks the capabilities the shim needs",
            "NoNewPrivileges=yes", "It also implies other restrictions (no file capabilities on exec) that the "
            "reference shim configuration turns off.", "Set NoNewPrivileges=no.")
    if (_last(d.get("ProtectKernelTunables")) or "").lower() in TRUE:
        add("ProtectKernelTunables", "error", "ProtectKernelTunables=yes makes /sys read-only for the service",
            "ProtectKernelTunables=yes", "The shim writes to the device's files under /sys/bus/pci/devices; a "
            "read-only /sys makes its device setup fail.", "Set ProtectKernelTunables=no.")
    writable = " ".join(d.get("ReadWritePaths", []))
    if PCI_DIR not in writable:
        add("ReadWritePaths", "info", f"{PCI_DIR} is not listed in ReadWritePaths=",
            f"ReadWritePaths={writable}" if writable else "ReadWritePaths not set",
            "Any Protect*= hardening (now or added later) leaves /sys read-only unless the PCI device "
            "directory is listed; the configuration proven on shim hosts lists it.",
            f"Add ReadWritePaths={PCI_DIR}/.")
    return out
