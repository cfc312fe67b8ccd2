"""Rules over the service sandbox: settings that hide from the shim what it needs to reach the device."""

from __future__ import annotations

from fixer.doctor.rules.base import Context, Finding, finding, rule

TRUE = {"yes", "true", "1", "on"}
CAP_PAGEMAP = "CAP_SYS_ADMIN"  # the shim's /proc/self/pagemap reads; CAP_IPC_LOCK is LimitMEMLOCK's job
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

    def add(key: str, severity: str, summary: str, evidence: str, why: str, fix: str, setting: str | None = None) -> None:
        where = host.directive_origin.get(key)
        shown = f"{where}: {evidence}" if where else evidence
        out.append(finding(f"sandbox-{key.lower()}", severity, summary, [shown], why, fix,  # type: ignore[arg-type]
                           setting or f"service.directives.{key}"))

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
    bounding = d.get("CapabilityBoundingSet")
    user = host.user
    runs_as_root = user in (None, "root", "0")
    if bounding and runs_as_root and any(v.strip() and not v.strip().startswith("~") for v in bounding):
        add("CapabilityBoundingSet", "warning", "CapabilityBoundingSet= narrows the capabilities of a unit that runs as root",
            "CapabilityBoundingSet=" + " ".join(bounding),
            "A listed bounding set replaces systemd's full default: the root service loses DAC_OVERRIDE, CHOWN, "
            "FOWNER and NET_BIND_SERVICE, so models owned by another user become unreadable and ports below "
            "1024 fail. The shim needs none of this narrowing.",
            "Remove CapabilityBoundingSet= from the drop-in that sets it (the shipped profiles no longer set it).")
    if not runs_as_root and CAP_PAGEMAP not in (_caps(d.get("AmbientCapabilities")) or set()):
        add("AmbientCapabilities", "info", f"the service runs as {user} without ambient {CAP_PAGEMAP}",
            f"User={user}; AmbientCapabilities=" + " ".join(d.get("AmbientCapabilities", [])),
            "The reference shim read /proc/self/pagemap, which needs CAP_SYS_ADMIN. The grant is opt-in: ambient "
            "CAP_SYS_ADMIN reaches every runner that parses untrusted GGUF files (CAP_IPC_LOCK is covered by "
            "LimitMEMLOCK=infinity). Grant it only if the shim's own log reports a pagemap/permission failure.",
            f"vgpu-fix apply --set shim_capabilities={CAP_PAGEMAP}", "vars.shim_capabilities")
    if (_last(d.get("NoNewPrivileges")) or "").lower() in TRUE:
        add("NoNewPrivileges", "warning", "NoNewPrivileges=yes blocks the capabilities the shim needs",
            "NoNewPrivileges=yes", "It also implies other restrictions (no file capabilities on exec) that the "
            "reference shim configuration turns off.", "Set NoNewPrivileges=no.")
    if (_last(d.get("ProtectKernelTunables")) or "").lower() in TRUE:
        add("ProtectKernelTunables", "error", "ProtectKernelTunables=yes makes /sys read-only for the service",
            "ProtectKernelTunables=yes", "The shim writes to the device's files under /sys/devices (reached "
            f"through {PCI_DIR}); a read-only /sys makes its device setup fail, and ReadWritePaths={PCI_DIR}/ "
            "cannot reopen it (its entries are symlinks).", "Set ProtectKernelTunables=no.")
    writable = " ".join(d.get("ReadWritePaths", []))
    if PCI_DIR in writable:
        add("ReadWritePaths", "info", f"ReadWritePaths={PCI_DIR}/ has no effect",
            f"ReadWritePaths={writable}",
            f"The entries of {PCI_DIR} are symlinks into /sys/devices, which stays read-only under "
            "ProtectKernelTunables=yes whatever this list says (systemd mounts the directory of links, not what "
            "they point to). ProtectKernelTunables=no is what keeps the device's files writable.",
            f"Remove {PCI_DIR} from ReadWritePaths= and set ProtectKernelTunables=no (or list the device's real "
            "/sys/devices/... path).", "service.directives.ProtectKernelTunables")
    return out
