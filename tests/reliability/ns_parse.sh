#!/bin/bash
# Runs as PID 1 of a private mount+pid namespace (see test_unit_parsing.py):
#   unshare --mount --pid --fork --propagation private bash ns_parse.sh ID TREE OUT WORK UNIT...
# Copies TREE (unit files and EnvironmentFile= files, laid out from /) over the throw-away overlays,
# starts a real `systemd --user`, starts each UNIT and records the environment its process really got.
set -euo pipefail
ID=$1 TREE=$2 OUT=$3 W=$4
shift 4
source "$(dirname "$0")/ns_manager.sh"
ns_overlays
ns_cgroup
# Existing directories keep their metadata: "/" itself is not an overlay (cp -a would give it TREE's mode).
tar -C "$TREE" -cf - . | tar -C / -xf - --no-overwrite-dir
ns_manager
[ -S "$XDG_RUNTIME_DIR/systemd/private" ] || { echo "systemd --user did not start" >&2; exit 3; }
for unit in "$@"; do
  if systemctl --user start "$unit" 2> "$OUT/$unit.err"; then
    pid=$(systemctl --user show -p MainPID --value "$unit")
    tr '\0' '\n' < "/proc/$pid/environ" > "$OUT/$unit.environ"
  else
    echo failed > "$OUT/$unit.failed"
  fi
done
for unit in "$@"; do systemctl --user stop "$unit" 2>/dev/null || true; done
ns_stop
echo done > "$OUT/finished"
