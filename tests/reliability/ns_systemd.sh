#!/bin/bash
# Runs as PID 1 of a private mount+pid namespace (see test_service_manager.py):
#   unshare --mount --pid --fork --propagation private bash ns_systemd.sh ID REPO PROFILE OUT WORK
# The namespace of ns_manager.sh with a real `systemd --user`; then vgpu-fix apply/rollback on the
# live root through it. Everything written lands in tmpfs and vanishes with the namespace; the caller
# removes the cgroup.
set -euo pipefail
ID=$1 REPO=$2 PROFILE=$3 OUT=$4 W=$5  # W: an empty directory the caller owns
PY=${PYTHON:-python3}
source "$(dirname "$0")/ns_manager.sh"
ns_overlays
ns_cgroup

# The unit under test: a stand-in ollama that just stays up, and the seed's hand-made override.conf.
mkdir -p /etc/systemd/user/ollama.service.d /opt/vgpu/lib /usr/local/lib/ollama/cuda_v12
for f in libvgpu-cuda.so libvgpu-cudart.so libvgpu-nvml.so; do echo placeholder > "/opt/vgpu/lib/$f"; done
ns_standin_unit
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

ns_manager
systemctl --user start ollama.service

snapshot() {  # what the manager says, the process's real environment, and what fixer's probe computed
  systemctl --user show -p Environment -p UnsetEnvironment -p DropInPaths -p NeedDaemonReload -p ActiveState -p MainPID \
    ollama.service > "$OUT/$1.show"
  pid=$(systemctl --user show -p MainPID --value ollama.service)
  tr '\0' '\n' < "/proc/$pid/environ" > "$OUT/$1.environ"
  PYTHONPATH=$REPO $PY -c '
import json, sys
from fixer.facts.host import probe_unit
u = probe_unit("/", "ollama.service", "user")
json.dump({"values": u.environment.values, "unset": sorted(u.environment.unset),
           "effective": u.environment.effective(), "dropins": [d.path for d in u.dropins]}, sys.stdout)
' > "$OUT/$1.probe.json"
}

snapshot before
set +e
(cd "$REPO" && PYTHONPATH=$REPO $PY -m fixer apply --root / --profile "$PROFILE" --no-verify --yes) > "$OUT/apply.out" 2>&1
echo $? > "$OUT/apply.rc"
snapshot applied
(cd "$REPO" && PYTHONPATH=$REPO $PY -m fixer rollback --root / --yes) > "$OUT/rollback.out" 2>&1
echo $? > "$OUT/rollback.rc"
set -e
snapshot rolled_back

ns_stop
echo done > "$OUT/finished"
