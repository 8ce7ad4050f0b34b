# Helpers shared by tests/env/{up,down}. Sourced, not run.
# shellcheck shell=bash
log() { printf '[env] %s\n' "$*" >&2; }

# pid_alive NAME: the process recorded for NAME is running and is still our binary.
pid_alive() {
  local f="$ENV_STATE/pids/$1" pid
  [ -f "$f" ] || return 1
  pid="$(cat "$f")"
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
  # Guard against pid reuse: the command line must mention our state dir or binary dir.
  tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qE "($ENV_BIN|$ENV_STATE|prometheus)" || return 1
}

# pid_running NAME: the process start just recorded for NAME still runs. Unlike pid_alive it does
# not look at the command line: right after start, the child may not have exec'd its binary yet
# (its command line is still this script's), and the pid was recorded moments ago.
pid_running() {
  local f="$ENV_STATE/pids/$1" pid
  [ -f "$f" ] || return 1
  pid="$(cat "$f")"
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
  ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null
}

# free_port: a TCP port on 127.0.0.1 nobody listens on (and that we did not hand out before).
# Ports are drawn below the kernel's ephemeral range (where outgoing connections take their
# local ports, which a listener then cannot bind even though nothing listens there).
declare -A _given_ports=()
_eph_low="$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)"
free_port() {
  local p span=$(( _eph_low - 1 - 15000 ))
  (( span > 1000 )) || span=1000
  for _ in $(seq 1 200); do
    p=$(( 15000 + RANDOM % span ))
    [ -n "${_given_ports[$p]:-}" ] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      _given_ports[$p]=1
      echo "$p"
      return 0
    fi
  done
  log "no free port found"; return 1
}

# start NAME BINARY ARGS...: start a component in its own session, log to logs/NAME.log.
start() {
  local name="$1"; shift
  mkdir -p "$ENV_STATE/cmd"
  printf '%q ' "$@" > "$ENV_STATE/cmd/$name"
  setsid "$@" >>"$ENV_STATE/logs/$name.log" 2>&1 < /dev/null &
  echo $! > "$ENV_STATE/pids/$name"
}

# fail NAME MESSAGE: report a failed start with the tail of the component's log.
fail() {
  log "$2"
  if [ -f "$ENV_STATE/logs/$1.log" ]; then
    log "last lines of $ENV_STATE/logs/$1.log:"
    tail -n 30 "$ENV_STATE/logs/$1.log" >&2
  fi
  exit 1
}

# wait_for NAME TIMEOUT_S COMMAND...: poll COMMAND until it succeeds, the component dies, or time runs out.
wait_for() {
  local name="$1" timeout="$2"; shift 2
  local deadline=$(( $(date +%s) + timeout ))
  until "$@" >/dev/null 2>&1; do
    pid_running "$name" || fail "$name" "$name exited during start-up"
    [ "$(date +%s)" -lt "$deadline" ] || fail "$name" "$name not ready after ${timeout}s"
    sleep 0.2
  done
}
