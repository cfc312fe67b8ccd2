# Sourced by the namespace scripts, which run as PID 1 of a private mount+pid namespace (see
# tests/reliability/namespace.py). Throw-away overlays (tmpfs upper dirs) over /etc /usr/local /opt
# /var, a tmpfs on /run, a private cgroup, optionally a journald, and a real `systemd --user` that
# lives where logind would put root's manager (user.slice/user-0.slice/user@0.service), so that
# journald files its units' output under _SYSTEMD_USER_UNIT as on a real host.

ns_overlays() {  # W: an empty directory the caller owns
  mount -t tmpfs -o mode=0700 tmpfs "$W"
  for d in etc usr/local opt var; do
    n=${d//\//_}; mkdir -p "$W/$n/upper" "$W/$n/work"
    mount -t overlay overlay -o "lowerdir=/$d,upperdir=$W/$n/upper,workdir=$W/$n/work" "/$d"
  done
  mount -t proc proc /proc   # this pid namespace's own view
  mount -t tmpfs -o mode=0755 tmpfs /run
  mkdir -p /run/systemd/system "$W/xdg" "$W/home"
  chmod 0700 "$W/xdg"
  # What PID 1 makes at boot; InaccessiblePaths= mounts these over what a unit must not see.
  mkdir -p /run/systemd/inaccessible
  mkdir -m 0000 /run/systemd/inaccessible/dir
  install -m 0000 /dev/null /run/systemd/inaccessible/reg
  mkfifo -m 0000 /run/systemd/inaccessible/fifo
  mknod -m 0000 /run/systemd/inaccessible/chr c 0 0
  mknod -m 0000 /run/systemd/inaccessible/blk b 0 0
  export XDG_RUNTIME_DIR=$W/xdg HOME=$W/home XDG_CONFIG_HOME=$W/home/.config XDG_DATA_HOME=$W/home/.local/share
  unset DBUS_SESSION_BUS_ADDRESS
}

ns_hierarchies() {  # the cgroup hierarchies a manager uses here: v1 name=systemd + unified, or v2
  if [ -d /sys/fs/cgroup/systemd ]; then
    for h in systemd unified; do [ -d "/sys/fs/cgroup/$h" ] && echo "/sys/fs/cgroup/$h"; done
  elif [ -f /sys/fs/cgroup/cgroup.procs ]; then
    echo /sys/fs/cgroup
  fi
}

ns_cgroup() {  # ID: the private cgroup for everything in the namespace (the caller removes it)
  for h in $(ns_hierarchies); do mkdir -p "$h/$ID"; echo $$ > "$h/$ID/cgroup.procs"; done
}

ns_journald() {  # a journald of the namespace's own: volatile, no kernel log
  mkdir -p /etc/systemd/journald.conf.d
  printf '[Journal]\nStorage=volatile\nReadKMsg=no\nForwardToSyslog=no\n' > /etc/systemd/journald.conf.d/ns.conf
  /lib/systemd/systemd-journald > "$OUT/journald.log" 2>&1 &
  JOURNALD=$!
  for _ in $(seq 100); do [ -S /run/systemd/journal/stdout ] && break; sleep 0.05; done
}

ns_manager() {  # a real systemd --user as root's manager; MANAGER: its pid
  (
    for h in $(ns_hierarchies); do
      u="$h/$ID/user.slice/user-0.slice/user@0.service"; mkdir -p "$u"; echo $BASHPID > "$u/cgroup.procs"
    done
    exec /lib/systemd/systemd --user
  ) > "$OUT/manager.log" 2>&1 &
  MANAGER=$!
  for _ in $(seq 100); do [ -S "$XDG_RUNTIME_DIR/systemd/private" ] && break; sleep 0.1; done
}

ns_wait_bus() {  # the session bus the manager socket-activates (systemd-run --wait needs it)
  for _ in $(seq 100); do [ -S "$XDG_RUNTIME_DIR/bus" ] && return 0; sleep 0.1; done
  return 1
}

ns_stop() {
  systemctl --user stop ollama.service 2>/dev/null || true
  kill -TERM "$MANAGER" 2>/dev/null || true
  wait "$MANAGER" 2>/dev/null || true
  if [ -n "${JOURNALD:-}" ]; then kill -TERM "$JOURNALD" 2>/dev/null || true; wait "$JOURNALD" 2>/dev/null || true; fi
}

ns_seed_host() {  # the seed's broken host on / for a user-scope stand-in: no system unit, no global preload
  PYTHONPATH=$REPO $PY -c 'from fixer.demo import build_seed_host; build_seed_host("/")'
  rm -f /etc/systemd/system/ollama.service /etc/ld.so.preload
  mkdir -p /etc/systemd/user/ollama.service.d
  cp /etc/systemd/system/ollama.service.d/override.conf /etc/systemd/user/ollama.service.d/override.conf
}

ns_standin_unit() {  # a user-scope ollama.service whose "ollama serve" stays up; LINE: logged first, if given
  mkdir -p /etc/systemd/user/ollama.service.d /usr/local/bin
  { echo '#!/bin/sh'; [ -n "${1:-}" ] && printf "echo '%s'\n" "$1"; echo 'exec sleep 3600'; } > /usr/local/bin/ollama-standin
  chmod 0755 /usr/local/bin/ollama-standin
  cat > /etc/systemd/user/ollama.service <<'UNIT'
[Unit]
Description=Ollama stand-in
[Service]
ExecStart=/usr/local/bin/ollama-standin serve
Environment="PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
UNIT
}
