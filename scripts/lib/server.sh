# Sourced by the scripts that start a server of their own on loopback
# (localkms.sh, versitygw.sh, witness.sh), each keeping its pid in DIR/pid.

# stop_server DIR: TERM the server whose pid is in DIR/pid, KILL it if it
# is still running 5 s later, and remove the pid file. Nothing to stop is
# not an error.
stop_server() {
  local dir=$1 pid
  [ -f "$dir/pid" ] || return 0
  pid=$(cat "$dir/pid")
  if kill -TERM "$pid" 2>/dev/null; then
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/pid"
}
