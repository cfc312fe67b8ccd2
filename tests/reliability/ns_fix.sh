#!/bin/bash
# Runs as PID 1 of a private mount+pid namespace (see test_fix_service_level.py):
#   bash ns_fix.sh ID REPO NATIVE_JSON LLAMA_SERVER KIND OUT WORK [MODE]
# The host of KIND (tests/native/host_kinds.py) laid out at / over the throw-away overlays of
# ns_manager.sh, with tmpfs views of /sys/devices, /sys/bus/pci and /sys/module holding its PCI device
# (and, for a passthrough host, the bound nvidia driver); journald and a real `systemd --user` run
# ollama.service (user scope; the stand-in ollama of tests/native/ollama_v032.c, version 0.32.15) whose
# `serve` logs v0.32.15's real "inference compute" lines: the GPU line when its environment lets the
# loader find the CUDA driver library (libcuda.so.1 in an LD_LIBRARY_PATH directory, a preloaded file, or
# a bound nvidia module), else the CPU line; MODE cpu: always the CPU line (a host the choice cannot help).
# Then `vgpu-fix fix` runs on the live root: first without --yes and without a terminal (refused), then
# with --yes.
set -euo pipefail
ID=$1 REPO=$2 NATIVE=$3 SERVER=$4 KIND=$5 OUT=$6 W=$7 MODE=${8:-auto}
PY=${PYTHON:-python3}
source "$(dirname "$0")/ns_manager.sh"
ns_overlays
ns_cgroup
for d in /sys/devices /sys/bus/pci /sys/module; do mount -t tmpfs -o mode=0755 tmpfs "$d"; done
# Where a driver package installs libcuda.so.<version>: throw-away too.
mkdir -p "$W/driverlib/upper" "$W/driverlib/work"
mount -t overlay overlay -o "lowerdir=/usr/lib/x86_64-linux-gnu,upperdir=$W/driverlib/upper,workdir=$W/driverlib/work" \
  /usr/lib/x86_64-linux-gnu
ns_journald

(cd "$REPO" && PYTHONPATH=$REPO $PY -m tests.native.host_kinds "$KIND" / "$NATIVE" "$SERVER")
LC_ALL=C ldconfig -X  # -X: no links made in the machine's own dirs; what the driver package's and Ollama's installers leave: a current cache
mkdir -p /etc/standin /etc/systemd/user
cp "$(dirname "$0")/standin_lines/"v0.32-*.log /etc/standin/
echo "$MODE" > /etc/standin/mode
cat > /usr/local/bin/ollama-serve-standin <<'STANDIN'
#!/bin/sh
say() { while IFS= read -r line; do printf '%s\n' "$line"; done < "$1"; }
gpu=
[ -d /sys/module/nvidia ] && gpu=1
read -r mode < /etc/standin/mode
IFS=': '
for d in ${LD_LIBRARY_PATH:-}; do [ -e "$d/libcuda.so.1" ] && gpu=1; done
for p in ${LD_PRELOAD:-}; do [ -e "$p" ] && gpu=1; done
unset IFS
if [ -n "$gpu" ] && [ "$mode" != cpu ]; then say /etc/standin/v0.32-gpu.log; else say /etc/standin/v0.32-cpu.log; fi
exec sleep 3600
STANDIN
chmod 0755 /usr/local/bin/ollama-serve-standin
# The stock unit as a user unit (a user manager cannot switch User=/Group=), serve through the stand-in.
grep -v -e '^User=' -e '^Group=' /etc/systemd/system/ollama.service \
  | sed 's|^\[Service\]$|[Service]\nEnvironment=STANDIN_SERVE=/usr/local/bin/ollama-serve-standin|' \
  > /etc/systemd/user/ollama.service
rm /etc/systemd/system/ollama.service

ns_manager
ns_wait_bus || true
systemctl --user start ollama.service
sleep 1
set +e
(cd "$REPO" && PYTHONPATH=$REPO $PY -m fixer fix --json) < /dev/null > "$OUT/unconfirmed.json" 2>&1
echo $? > "$OUT/unconfirmed.rc"
systemctl --user show -p DropInPaths --value ollama.service > "$OUT/unconfirmed.dropins"
(cd "$REPO" && PYTHONPATH=$REPO $PY -m fixer fix --yes --service-timeout 8 --json) > "$OUT/fix.json" 2> "$OUT/fix.err"
echo $? > "$OUT/fix.rc"
set -e
systemctl --user show -p DropInPaths --value ollama.service > "$OUT/dropins"
(cd "$REPO" && PYTHONPATH=$REPO $PY -m fixer history show 1 --json) > "$OUT/history.json" 2>&1 || true
(cd "$REPO" && PYTHONPATH=$REPO $PY -m fixer status --json) > "$OUT/status.json" 2>&1 || true
ns_stop
echo done > "$OUT/finished"
