"""Rules over the GPU's driver: a shim setup on a host whose GPU a real NVIDIA driver holds."""

from __future__ import annotations

from fixer.doctor.rules.base import Context, Finding, finding, rule


@rule
def nvidia_driver_on_shim_host(ctx: Context) -> list[Finding]:
    host = ctx.host
    if host is None or not host.shim_host or host.nvidia is None or not host.nvidia.present:
        return []
    return [finding(
        "nvidia-driver-with-shims", "error",
        "shims are set up, but a real NVIDIA driver is bound or installed",
        list(host.nvidia.evidence),
        "Para-virtual shims belong on guests whose /dev/nvidia* nodes are fake. Here an NVIDIA kernel driver holds "
        "a device (a GRID/vGPU guest, a HAMi host or a real GPU): the shim profiles would hide it, and their plan "
        "refuses this host. The old h100-vgpu blacklist would have broken it at the next reboot.",
        "Use passthrough-gpu (it removes what the h100-vgpu profiles installed), or remove the driver only if "
        "the host really is a para-virtual shim guest.",
    )]
