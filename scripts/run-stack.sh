#!/usr/bin/env bash
# Runs a ledger and a trust-enforcing proxy in the foreground on embedded
# defaults (`make run`); Ctrl-C or SIGTERM stops everything it started, and
# `make stop` (scripts/stop-stack.sh) does the same from another terminal.
#
#   BIN=./bin DATA=./.notarize LEDGER_ADDR=127.0.0.1:7070 PROXY_ADDR=127.0.0.1:5000 scripts/run-stack.sh
#
# PROXY_FLAGS adds flags to notarize-proxy, e.g. another upstream:
#   make run PROXY_FLAGS="--upstream local=http://127.0.0.1:5001"
# The banner, printed once the proxy is up, lists the upstreams it serves.
#
# Before anything is written or generated it checks that every port it needs
# is free, and that no other run-stack.sh runs on DATA; it fails fast if not.
# The pids of the script and of every process it started are in DATA/run/
# (NAME.pid) while it runs; scripts/stop-stack.sh reads them.
#
# STORAGE=mysql (`make run-mysql`) runs the ledger on a throwaway MariaDB
# (scripts/mariadb.sh; data in DATA/mariadb, port MARIADB_PORT, default 3307)
# with the checkpoint key DATA/ledger-mysql.key (made once, its origin unique
# per key); the MariaDB server is stopped with the rest.
#
# WITNESSES=N (1-5; `make run-witnessed` is WITNESSES=3) also starts N local
# omniwitness processes (scripts/witness.sh; ports WITNESS_PORT,
# WITNESS_PORT+1, …, default 7081; data in DATA/witnesses/wI) and runs the
# ledger with the witness policy DATA/witnesses/policy: a majority of them
# must cosign every checkpoint. The proxy gets the same policy when it has
# --witness-policy. The ledger's key is made before its first start (the
# witnesses must know it); an existing ledger is witnessed from its size.
#
# Without POLICY, it writes DATA/policy.yaml once: every key of your key store
# (NOTARIZE_HOME/keys/*.pub) is a signer and everything is enforced; with no key
# yet, everything is served in audit mode (decisions logged, nothing refused).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/bin}
DATA=${DATA:-$ROOT/.notarize}
LEDGER_ADDR=${LEDGER_ADDR:-127.0.0.1:7070}
PROXY_ADDR=${PROXY_ADDR:-127.0.0.1:5000}
KEYS=${NOTARIZE_HOME:-${DOCKER_CONFIG:-$HOME/.docker}/notarize}/keys
POLICY=${POLICY:-$DATA/policy.yaml}
WITNESSES=${WITNESSES:-0}
WITNESS_PORT=${WITNESS_PORT:-7081}
STORAGE=${STORAGE:-posix}
MARIADB_PORT=${MARIADB_PORT:-3307}
RUN=$DATA/run

die() { echo "run-stack: $*" >&2; exit 1; }

# --- Checks: nothing is written, generated or started before they pass.
[[ $WITNESSES =~ ^[0-5]$ ]] || die "WITNESSES=$WITNESSES: want 0 to 5"
[[ $STORAGE == posix || $STORAGE == mysql ]] || die "STORAGE=$STORAGE: want posix or mysql"
if [[ -f $RUN/stack.pid ]] && kill -0 "$(cat "$RUN/stack.pid")" 2>/dev/null; then
  die "already running on $DATA (pid $(cat "$RUN/stack.pid")); stop it with 'make stop'"
fi
# port_busy HOST:PORT: something accepts connections there.
port_busy() {
  local host=${1%:*} port=${1##*:}
  [[ $host == "" || $host == 0.0.0.0 || $host == "[::]" ]] && host=127.0.0.1
  host=${host#[}; host=${host%]}
  (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}
who_listens() { # the process on port $1, when ss can tell
  command -v ss >/dev/null || return 0
  ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'users:(([^)]*))' | head -1 || true
}
need=("ledger LEDGER_ADDR $LEDGER_ADDR" "proxy PROXY_ADDR $PROXY_ADDR")
for i in $(seq 1 "$WITNESSES"); do need+=("witness-$i WITNESS_PORT 127.0.0.1:$((WITNESS_PORT + i - 1))"); done
if [[ $STORAGE == mysql ]] && ! { [[ -f $DATA/mariadb/mariadbd.pid ]] && kill -0 "$(cat "$DATA/mariadb/mariadbd.pid")" 2>/dev/null; }; then
  need+=("mariadb MARIADB_PORT 127.0.0.1:$MARIADB_PORT")
fi
for n in "${need[@]}"; do
  read -r what var addr <<<"$n"
  if port_busy "$addr"; then
    die "$addr (the $what) is already in use $(who_listens "${addr##*:}"); stop what runs there ('make stop' if it is an earlier 'make run') or choose another $var"
  fi
done
for b in notarize-ledger notarize-proxy; do [[ -x $BIN/$b ]] || die "$BIN/$b missing: run 'make build'"; done

mkdir -p "$DATA" "$RUN"
echo $$ >"$RUN/stack.pid"

# --- Stopping: everything started, newest first; pid files removed.
names=()
pids=()
witness_dirs=()
mariadb_started=
stopped=
stop() {
  [[ -n $stopped ]] && return
  stopped=1
  set +e
  local i pid
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[i]}" 2>/dev/null; done
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    pid=${pids[i]}
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "run-stack: ${names[i]} ($pid) did not stop in 15 s: killing it" >&2
      kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
    rm -f "$RUN/${names[i]}.pid"
  done
  for d in "${witness_dirs[@]}"; do "$ROOT/scripts/witness.sh" stop "$d"; done
  if [[ -n $mariadb_started ]]; then "$ROOT/scripts/mariadb.sh" stop "$DATA/mariadb"; fi
  rm -f "$RUN/stack.pid" "$RUN/mariadb.dir" "$RUN/witnesses"
  echo "run-stack: stopped" >&2
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

started() { # started NAME PID: remember a child to stop
  names+=("$1")
  pids+=("$2")
  echo "$2" >"$RUN/$1.pid"
}

# A policy this script wrote is written again on every start, so keys made
# since (docker notarize key generate) are enforced without further steps.
if [[ ! -f $POLICY ]] || head -1 "$POLICY" | grep -q '^# Written by scripts/run-stack.sh'; then
  shopt -s nullglob
  pubs=("$KEYS"/*.pub)
  mkdir -p "$DATA/keys"
  {
    echo "# Written by scripts/run-stack.sh; edit freely (see examples/policy.yaml)."
    echo "signers:"
    signers=()
    if ((${#pubs[@]})); then
      for p in "${pubs[@]}"; do
        n=$(basename "$p" .pub)
        cp "$p" "$DATA/keys/$n.pub"
        echo "  $n: {keys: [keys/$n.pub]}"
        signers+=("$n")
      done
      mode=enforce
    else
      cp "$ROOT/examples/keys/release.pub" "$DATA/keys/placeholder.pub"
      echo "  placeholder: {keys: [keys/placeholder.pub]}   # nobody holds this key"
      signers=(placeholder)
      mode=audit
    fi
    echo "rules:"
    echo "  - match: \"**\""
    echo "    require: [$(IFS=,; echo "${signers[*]}" | sed 's/,/, /g')]"
    echo "    mode: $mode"
  } >"$POLICY"
  echo "wrote $POLICY (mode $mode, signers: ${signers[*]})"
  if [[ $mode == audit ]]; then
    echo "  no key in $KEYS yet: run 'docker notarize key generate --name NAME' and restart to enforce"
  fi
fi

ledger_flags=(--data "$DATA/ledger")
ledger_env=()
ledger_pub=$DATA/ledger/ledger.pub
if [[ $STORAGE == mysql ]]; then
  if ! { [[ -f $DATA/mariadb/mariadbd.pid ]] && kill -0 "$(cat "$DATA/mariadb/mariadbd.pid")" 2>/dev/null; }; then
    "$ROOT/scripts/mariadb.sh" start "$DATA/mariadb" "$MARIADB_PORT" >/dev/null
    mariadb_started=1
    echo "$DATA/mariadb" >"$RUN/mariadb.dir"
  fi
  key=$DATA/ledger-mysql.key
  if [[ ! -f $key ]]; then
    "$BIN/notarize-ledger" keygen --origin "$(hostname)/notarize-ledger/$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')" --out "$key" >/dev/null
  fi
  ledger_flags=(--storage mysql --key-file "$key")
  ledger_env=(NOTARIZE_LEDGER_MYSQL_DSN="notarize:notarize@tcp(127.0.0.1:$MARIADB_PORT)/notarize")
  ledger_pub=$key.pub
fi

proxy_witness_flags=()
if ((WITNESSES > 0)); then
  mkdir -p "$DATA/witnesses"
  if [[ $STORAGE == posix && ! -f $DATA/ledger/ledger.key ]]; then
    mkdir -p "$DATA/ledger"
    # Unique per ledger, like the ledger's own default origin.
    "$BIN/notarize-ledger" keygen --origin "$(hostname)/notarize-ledger/$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')" \
      --out "$DATA/ledger/ledger.key" >/dev/null
  fi
  if [[ $STORAGE == posix ]]; then
    vkey=$(cat "$DATA/ledger/ledger.pub" 2>/dev/null || cat "$DATA/ledger/ledger.key.pub")
  else
    vkey=$(cat "$ledger_pub")
  fi
  origin=${vkey%%+*}
  policy=$DATA/witnesses/policy
  quorum=$((WITNESSES / 2 + 1))
  {
    echo "# Written by scripts/run-stack.sh: $quorum of $WITNESSES local witnesses."
    # The ledger's key: clients holding this policy take no other (a front
    # re-signing witnessed checkpoints with its own key is refused).
    echo "log $vkey http://$LEDGER_ADDR"
    wnames=()
    for i in $(seq 1 "$WITNESSES"); do
      d=$DATA/witnesses/w$i
      witness_dirs+=("$d")
      echo "$d" >>"$RUN/witnesses"
      line=$("$ROOT/scripts/witness.sh" start "$d" $((WITNESS_PORT + i - 1)) "$origin" "$vkey" "http://$LEDGER_ADDR")
      echo "$line"
      wnames+=("$(echo "$line" | cut -d' ' -f2)")
    done
    echo "group local-witnesses $quorum ${wnames[*]}"
    echo "quorum local-witnesses"
  } >"$policy.tmp"
  mv "$policy.tmp" "$policy"
  echo "started $WITNESSES witnesses; policy $policy (quorum $quorum)"
  ledger_flags+=(--witness-policy "$policy")
  proxy_help=$("$BIN/notarize-proxy" --help 2>&1 || true)
  if [[ $proxy_help == *-witness-policy* ]]; then
    proxy_witness_flags+=(--witness-policy "$policy")
  fi
fi

env ${ledger_env[@]+"${ledger_env[@]}"} "$BIN/notarize-ledger" --addr "$LEDGER_ADDR" "${ledger_flags[@]}" &
started ledger $!
up=
for _ in $(seq 1 300); do
  kill -0 "${pids[0]}" 2>/dev/null || die "the ledger exited during start-up (see its messages above)"
  if [[ -f $ledger_pub ]] && curl -fsS -o /dev/null "http://$LEDGER_ADDR/api/v1/info" 2>/dev/null; then up=1; break; fi
  sleep 0.1
done
[[ -n $up ]] || die "the ledger did not answer on http://$LEDGER_ADDR in 30 s"

# The proxy's log goes to the terminal and to DATA/run/proxy.log, where the
# banner finds the upstreams the proxy serves.
: >"$RUN/proxy.log"
# shellcheck disable=SC2086 # PROXY_FLAGS is split on purpose
"$BIN/notarize-proxy" --addr "$PROXY_ADDR" --data "$DATA/proxy" --policy "$POLICY" \
  --ledger "http://$LEDGER_ADDR" --ledger-key "$ledger_pub" ${proxy_witness_flags[@]+"${proxy_witness_flags[@]}"} ${PROXY_FLAGS:-} \
  2> >(tee -a "$RUN/proxy.log" >&2) &
started proxy $!
ups=
for _ in $(seq 1 300); do
  kill -0 "${pids[1]}" 2>/dev/null || die "the proxy exited during start-up (see its messages above)"
  ups=$(grep -m1 -o '"upstreams":\[[^]]*\]' "$RUN/proxy.log" 2>/dev/null || true)
  [[ -n $ups ]] && break
  sleep 0.1
done
[[ -n $ups ]] || die "the proxy did not start listening on $PROXY_ADDR in 30 s"
mapfile -t upstreams < <(grep -o '"[^"]*=[^"]*"' <<<"$ups" | tr -d '"')

{
  echo
  echo "Ledger http://$LEDGER_ADDR (key $ledger_pub); proxy http://$PROXY_ADDR, serving only these upstreams:"
  hub=
  for u in "${upstreams[@]}"; do
    n=${u%%=*}
    printf '  %-16s %-36s pull as %s/%s/NAME:TAG\n' "$n" "${u#*=}" "$PROXY_ADDR" "$n"
    [[ $n == docker.io ]] && hub=1
  done
  if [[ -n $hub ]]; then
    echo "Docker Engine, /etc/docker/daemon.json (Docker Hub images only):"
    echo "    {\"registry-mirrors\": [\"http://$PROXY_ADDR\"], \"insecure-registries\": [\"$PROXY_ADDR\"]}"
  fi
  echo "containerd, /etc/containerd/certs.d/HOST/hosts.toml, one per upstream (see examples/containerd):"
  for u in "${upstreams[@]}"; do
    n=${u%%=*}
    host=$n
    if [[ $n != *.* && $n != *:* && $n != localhost ]]; then host=${u#*=}; host=${host#*://}; host=${host%%/*}; fi
    echo "    $host/hosts.toml:  server = \"http://$PROXY_ADDR\"  [host.\"http://$PROXY_ADDR\"] capabilities = [\"pull\", \"resolve\"]"
  done
  echo "Sign with: NOTARIZE_LEDGER=http://$LEDGER_ADDR docker notarize sign IMAGE"
  echo "Decisions: the dashboard http://$PROXY_ADDR/ui/, the proxy's JSON log below, http://$PROXY_ADDR/metrics and /notarize/v1/stats"
  echo "Stop: Ctrl-C here, or 'make stop' from another terminal."
  echo
}
set +e
wait -n "${pids[@]}"
rc=$?
echo "run-stack: a process exited (status $rc); stopping the rest" >&2
exit "$rc"
