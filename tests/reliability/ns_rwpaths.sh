#!/bin/bash
# Runs as PID 1 of a private mount+pid namespace (see tests/reliability/test_readwritepaths.py):
#   bash ns_rwpaths.sh ID OUT WORK DEVICE
# A real `systemd --user` runs one transient service per sandbox setting and records whether the PCI
# DEVICE's `uevent` attribute is writable inside it (access(2) answers EROFS on a read-only mount; nothing
# is written). OUT/NAME.rc holds 0 (writable) or 1 (read-only) for each NAME.
set -euo pipefail
ID=$1 OUT=$2 W=$3 DEV=$4
source "$(dirname "$0")/ns_manager.sh"
ns_overlays
ns_cgroup
ns_manager
if ! ns_wait_bus; then echo "the user manager started no session bus (dbus.socket)" > "$OUT/skip"; ns_stop; exit 0; fi
REAL=$(readlink -f "/sys/bus/pci/devices/$DEV")
probe() {  # NAME PROPERTIES…
  local name=$1; shift
  local args=()
  for p in "$@"; do args+=("--property=$p"); done
  set +e
  systemd-run --user --wait --pipe --quiet --collect "${args[@]}" /bin/sh -c "test -w /sys/bus/pci/devices/$DEV/uevent" \
    > "$OUT/$name.out" 2>&1
  echo $? > "$OUT/$name.rc"
  set -e
}
probe open
probe protected ProtectKernelTunables=yes
probe old_profile ProtectKernelTunables=yes ReadWritePaths=-/sys/bus/pci/devices/
probe real_syspath ProtectKernelTunables=yes "ReadWritePaths=-$REAL"
probe new_profile ProtectKernelTunables=no
echo "$REAL" > "$OUT/syspath"
ns_stop
echo done > "$OUT/finished"
