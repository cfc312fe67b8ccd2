#!/bin/bash
# Runs as PID 1 of a private mount+pid namespace (see test_service_level.py):
#   bash ns_service_level.sh ID REPO PROFILE OUT WORK CASES...
# The namespace of ns_manager.sh with journald and a real `systemd --user` running a stand-in
# ollama.service (user scope, Restart=always) on the seed's broken host. The stand-in logs, with shell
# builtins from its main process, the real "inference compute" lines of the Ollama generation named in
# /etc/standin/generation: before vgpu-fix's drop-in (the seed's override still preloads the shims)
# always the GPU line, at start and again when the restart stops it (after the restart began), so that a
# previous instance's line that counted would turn a failure into a pass; after it,
# what /etc/standin/mode says (gpu, cpu, crash, silent). Each CASE is GENERATION:MODE; for each, vgpu-fix
# applies through the manager and, where the apply kept its changes, rolls back for the next case.
set -euo pipefail
ID=$1 REPO=$2 PROFILE=$3 OUT=$4 W=$5
shift 5
PY=${PYTHON:-python3}
source "$(dirname "$0")/ns_manager.sh"
ns_overlays
ns_cgroup
ns_journald

ns_seed_host
mkdir -p /usr/local/bin /etc/standin
cp "$(dirname "$0")/standin_lines/"*.log /etc/standin/
cat > /usr/local/bin/ollama-standin <<'STANDIN'
#!/bin/sh
say() { while IFS= read -r line; do printf '%s\n' "$line"; done < "$1"; }
gen=$(read -r g < /etc/standin/generation; printf %s "$g")
if [ -n "${LD_PRELOAD:-}" ]; then  # before the drop-in: the GPU line at start, and again when stopped
  trap 'say "/etc/standin/$gen-gpu.log"; exit 0' TERM
  say "/etc/standin/$gen-gpu.log"; sleep 3600 & wait $!; exit 0
fi
mode=$(read -r m < /etc/standin/mode; printf %s "$m")
case $mode in
  gpu|cpu) say "/etc/standin/$gen-$mode.log"; exec sleep 3600 ;;
  crash) say "/etc/standin/$gen-start.log"; printf 'SIGSEGV: segmentation violation\n'; exit 2 ;;
  silent) exec sleep 3600 ;;  # hangs before it logs anything (a shim constructor that never returns)
esac
STANDIN
chmod 0755 /usr/local/bin/ollama-standin
cat > /etc/systemd/user/ollama.service <<'UNIT'
[Unit]
Description=Ollama stand-in that logs a real Ollama's discovery lines
StartLimitIntervalSec=0
[Service]
ExecStart=/usr/local/bin/ollama-standin serve
Restart=always
RestartSec=1
Environment="PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
UNIT

ns_manager
ns_wait_bus || true
for case in "$@"; do
  gen=${case%%:*} mode=${case#*:} name=${case//:/-}
  echo "$gen" > /etc/standin/generation
  echo "$mode" > /etc/standin/mode
  systemctl --user restart ollama.service
  sleep 1
  systemctl --user show -p MainPID --value ollama.service > "$OUT/$name.before_pid"
  start=$(date +%s%N)
  set +e
  (cd "$REPO" && PYTHONPATH=$REPO $PY -m fixer apply --root / -p "$PROFILE" --yes --no-probe \
     --service-timeout 8 --json) > "$OUT/$name.json" 2> "$OUT/$name.err"
  echo $? > "$OUT/$name.rc"
  set -e
  echo $(( ($(date +%s%N) - start) / 1000000 )) > "$OUT/$name.ms"
  systemctl --user show -p DropInPaths --value ollama.service > "$OUT/$name.dropins"
  if [ "$(cat "$OUT/$name.rc")" = 0 ]; then
    (cd "$REPO" && PYTHONPATH=$REPO $PY -m fixer rollback --root / --yes --service-timeout 8 --json) \
      > "$OUT/$name.rollback.json" 2>&1 || true
  fi
done
ns_stop
echo done > "$OUT/finished"
