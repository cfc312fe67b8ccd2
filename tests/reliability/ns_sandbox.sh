#!/bin/bash
# Runs as PID 1 of a private mount+pid namespace (see tests/verify/test_systemd_sandbox.py):
#   bash ns_sandbox.sh ID REPO PROFILE OUT WORK NATIVE_JSON
# The namespace of ns_manager.sh with journald and a real `systemd --user` whose ollama.service runs
# the stand-in `ollama serve` on a good fake vGPU host, except that the unit hides the shim directory
# (InaccessiblePaths=). verify --service before and after `apply` of PROFILE, whose drop-in resets
# that setting; each step's JSON, stderr and exit status land in OUT.
set -euo pipefail
ID=$1 REPO=$2 PROFILE=$3 OUT=$4 W=$5 NATIVE=$6
PY=${PYTHON:-python3}
source "$(dirname "$0")/ns_manager.sh"
ns_overlays
ns_cgroup
ns_journald

PYTHONPATH=$REPO $PY - "$NATIVE" <<'PY'
import json, sys
from pathlib import Path
from tests.native import layout
native = {k: Path(v) for k, v in json.load(open(sys.argv[1])).items()}
layout.lay_out_host(Path("/"), native)
layout.use_library_path(Path("/"))
PY
mkdir -p /etc/systemd/user
cat > /etc/systemd/user/ollama.service <<'UNIT'
[Unit]
Description=Ollama (stand-in) behind a sandbox that hides the vGPU shims
[Service]
ExecStart=/usr/local/bin/ollama serve
Environment="PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
Environment="LD_LIBRARY_PATH=/opt/vgpu/lib" "OLLAMA_LLM_LIBRARY=cuda_v12" "OLLAMA_HOST=127.0.0.1:0"
Environment="STANDIN_DISCOVERY_TIMEOUT=10"
LimitMEMLOCK=64K
InaccessiblePaths=/opt/vgpu/lib
UNIT

ns_manager
if ! ns_wait_bus; then echo "the user manager started no session bus (dbus.socket)" > "$OUT/skip"; ns_stop; exit 0; fi
systemctl --user start ollama.service

step() {  # NAME ARGS…: vgpu-fix ARGS, its JSON, stderr and exit status
  local name=$1; shift
  set +e
  (cd "$REPO" && PYTHONPATH=$REPO $PY -m fixer "$@") > "$OUT/$name.json" 2> "$OUT/$name.err"
  echo $? > "$OUT/$name.rc"
  set -e
}
step restricted verify --root / --profile "$PROFILE" --service --json --timeout 15
# The same load probe outside the unit's sandbox (live mode, no systemd-run).
PYTHONPATH=$REPO $PY - "$PROFILE" > "$OUT/outside.json" <<'PY'
import json, sys
from fixer.verify.loadprobe import run_load_probe
from fixer.profiles import load
from fixer.verify.layers import unit_environment
profile = load(sys.argv[1], "/")
env, user = unit_environment("/", profile)
print(json.dumps(run_load_probe("/", env, profile.verify, user=user, timeout=15).to_dict()))
PY
step apply apply --root / --profile "$PROFILE" --json --yes
step fixed verify --root / --profile "$PROFILE" --service --json --timeout 15

# A shim that hangs in cuInit, then one that crashes there: the transient unit's RuntimeMaxSec= and
# systemd-run's closing report must give the same verdicts as the other modes.
PYTHONPATH=$REPO $PY - "$PROFILE" "$NATIVE" > "$OUT/broken.json" <<'PY'
import json, sys
from pathlib import Path
from fixer.facts.host import probe_unit
from fixer.verify.loadprobe import run_load_probe
from fixer.profiles import load
from tests.native import layout
profile, native = load(sys.argv[1], "/"), json.load(open(sys.argv[2]))
unit = probe_unit("/", profile.service.unit, profile.service.scope)
found = {}
for shim in ("cuda-shim-hang", "cuda-shim-segv"):
    layout.place(Path("/"), f"{layout.SHIM_DIR}/libvgpu-cuda.so", Path(native[shim]))
    found[shim] = run_load_probe("/", unit.environment.effective(), profile.verify, timeout=3, unit=unit).to_dict()
layout.place(Path("/"), f"{layout.SHIM_DIR}/libvgpu-cuda.so", Path(native["cuda-shim"]))
print(json.dumps(found))
PY
systemctl --user list-units --all --plain --no-legend 'vgpu-fix-probe-*' > "$OUT/leftover.units"
ls -d /run/vgpu-fix-probe-* > "$OUT/leftover.scratch" 2>/dev/null || true
ns_stop
echo done > "$OUT/finished"
