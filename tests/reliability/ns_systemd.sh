#!/bin/bash
# Runs as PID 1 of a private mount+pid namespace (see test_service_manager.py):
#   unshare --mount --pid --fork --propagation private bash ns_systemd.sh ID REPO PROFILE OUT WORK
# Throw-away overlays (tmpfs upper dirs) over /etc /usr/local /opt /var, a tmpfs on /run, a private
# cgroup, a real `systemd --user`; then vgpu-fix apply/rollback on the live root through it.
# Everything written lands in tmpfs and vanishes with the namespace; the caller removes the cgroup.
set -euo pipefail
ID=$1 REPO=$2 PROFILE=$3 OUT=$4 W=$5  # W: an empty directory the caller owns
PY=${PYTHON:-python3}
mount -t tmpfs -o mode=0700 tmpfs "$W"
for d in etc usr/local opt var; do
  n=${d//\//_}; mkdir -p "$W/$n/upper" "$W/$n/work"
  mount -t overlay overlay -o "lowerdir=/$d,upperdir=$W/$n/upper,workdir=$W/$n/work" "/$d"
done
mount -t proc proc /proc   # this pid namespace's own view
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/systemd/system "$W/xdg" "$W/home"
chmod 0700 "$W/xdg"
export XDG_RUNTIME_DIR=$W/xdg HOME=$W/home XDG_CONFIG_HOME=$W/home/.config XDG_DATA_HOME=$W/home/.local/share
unset DBUS_SESSION_BUS_ADDRESS

for h in systemd unified; do  # a private cgroup for the manager and everything it starts
  if [ -d "/sys/fs/cgroup/$h" ]; then mkdir -p "/sys/fs/cgroup/$h/$ID"; echo $$ > "/sys/fs/cgroup/$h/$ID/cgroup.procs"; fi
done
if [ ! -d /sys/fs/cgroup/systemd ] && [ -f /sys/fs/cgroup/cgroup.procs ]; then
  mkdir -p "/sys/fs/cgroup/$ID"; echo $$ > "/sys/fs/cgroup/$ID/cgroup.procs"
fi

# The unit under test: a stand-in ollama that just stays up, and the seed's hand-made override.conf.
mkdir -p /etc/systemd/user/ollama.service.d /opt/vgpu/lib /usr/local/lib/ollama/cuda_v12
for f in libvgpu-cuda.so libvgpu-cudart.so libvgpu-nvml.so; do echo placeholder > "/opt/vgpu/lib/$f"; done
cat > /usr/local/bin/ollama-standin <<'SH'
#!/bin/sh
exec sleep 3600
SH
chmod 0755 /usr/local/bin/ollama-standin
cat > /etc/systemd/user/ollama.service <<'UNIT'
[Unit]
Description=Ollama stand-in
[Service]
ExecStart=/usr/local/bin/ollama-standin serve
Environment="PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
UNIT
cat > /etc/systemd/user/ollama.service.d/override.conf <<'CONF'
[Service]
Environment="OLLAMA_LLM_LIBRARY=cpu"
Environment="OLLAMA_NUM_GPU=999"
Environment="LD_PRELOAD=/opt/vgpu/lib/libvgpu-cuda.so:/opt/vgpu/lib/libvgpu-cudart.so"
Environment="OLLAMA_DEBUG=1"
CONF
# A hand-made drop-in that sorts after ours and shadows one of our settings.
cat > /etc/systemd/user/ollama.service.d/zzz-local.conf <<'CONF'
[Service]
Environment="OLLAMA_LOAD_TIMEOUT=1m"
CONF

/lib/systemd/systemd --user > "$OUT/manager.log" 2>&1 &
MANAGER=$!
for _ in $(seq 100); do [ -S "$XDG_RUNTIME_DIR/systemd/private" ] && break; sleep 0.1; done
systemctl --user start ollama.service

snapshot() {  # what the manager says, the process's real environment, and what fixer's probe computed
  systemctl --user show -p Environment -p UnsetEnvironment -p DropInPaths -p NeedDaemonReload -p ActiveState -p MainPID \
    ollama.service > "$OUT/$1.show"
  pid=$(systemctl --user show -p MainPID --value ollama.service)
  tr '\0' '\n' < "/proc/$pid/environ" > "$OUT/$1.environ"
  PYTHONPATH=$REPO $PY -c '
import json, sys
from fixer.host import probe_unit
u = probe_unit("/", "ollama.service", "user")
json.dump({"values": u.environment.values, "unset": sorted(u.environment.unset),
           "effective": u.environment.effective(), "dropins": [d.path for d in u.dropins]}, sys.stdout)
' > "$OUT/$1.probe.json"
}

snapshot before
set +e
(cd "$REPO" && PYTHONPATH=$REPO $PY -m fixer apply --root / --profile "$PROFILE" --no-verify) > "$OUT/apply.out" 2>&1
echo $? > "$OUT/apply.rc"
snapshot applied
(cd "$REPO" && PYTHONPATH=$REPO $PY -m fixer rollback --root /) > "$OUT/rollback.out" 2>&1
echo $? > "$OUT/rollback.rc"
set -e
snapshot rolled_back

systemctl --user stop ollama.service || true
kill -TERM "$MANAGER" 2>/dev/null || true
wait "$MANAGER" 2>/dev/null || true
echo done > "$OUT/finished"
