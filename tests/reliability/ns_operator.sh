#!/bin/bash
# Runs as PID 1 of a private mount+pid namespace (see tests/reliability/test_operator_live.py):
#   bash ns_operator.sh ID REPO PROFILE OUT WORK
# The namespace of ns_manager.sh with journald and a real `systemd --user` running a stand-in
# ollama.service (user scope) on the seed's broken host, laid out on the namespace's own / .
# tests/reliability/operator_live.py then drives vgpu-fix on that live root as an operator would:
# through a pseudo-terminal (confirmation), without one, and the upgrade watch through the manager.
set -euo pipefail
ID=$1 REPO=$2 PROFILE=$3 OUT=$4 W=$5
PY=${PYTHON:-python3}
source "$(dirname "$0")/ns_manager.sh"
ns_overlays
ns_cgroup
ns_journald

ns_seed_host
ns_standin_unit 'time=2026-02-26T04:45:48.892-05:00 level=INFO source=types.go:60 msg="inference compute" id=cpu library=cpu'

ns_manager
ns_wait_bus || true
systemctl --user start ollama.service
set +e
(cd "$REPO" && PYTHONPATH=$REPO $PY -m tests.reliability.operator_live "$PROFILE" "$OUT") > "$OUT/driver.log" 2>&1
echo $? > "$OUT/driver.rc"
set -e
ns_stop
echo done > "$OUT/finished"
