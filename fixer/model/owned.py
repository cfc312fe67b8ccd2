"""Paths vgpu-fix itself owns inside a root: no profile section may claim them (facts/ reads them too)."""

STATE_DIR = "/var/lib/vgpu-fix"  # vgpu-fix's own journal and lock
LD_SO_PRELOAD = "/etc/ld.so.preload"
LD_SO_CONF = "/etc/ld.so.conf"
LD_SO_CACHE = "/etc/ld.so.cache"
