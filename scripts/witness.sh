#!/usr/bin/env bash
# Installs and runs transparency-dev/witness's omniwitness, a C2SP
# tlog-witness server, on loopback: the witnesses of a notarize ledger in
# tests, benchmarks and `make run-witnessed`.
#
#   scripts/witness.sh install                    # build omniwitness + generate_keys once; prints their directory
#   scripts/witness.sh start DIR PORT ORIGIN VKEY [LOG_URL]
#       # starts one witness for the ledger ORIGIN / VKEY (its checkpoint
#       # verifier key) on 127.0.0.1:PORT; prints its witness-policy line
#       #   witness NAME COSIGNATURE-VKEY http://127.0.0.1:PORT
#   scripts/witness.sh stop DIR
#
# The binaries are installed with `go install` from the module at a pinned
# pseudo-version (the module has no tagged release) into
# ${NOTARIZE_CACHE:-~/.cache/notarize}/bin, so a second run is instant; the
# tests look for them there (or on PATH).
#
# `start` keeps everything of one witness in DIR: its key (witness.key,
# witness.pub, made once with generate_keys), its SQLite database
# (witness.db), the additional-logs YAML naming the ledger (logs.yaml), its
# log (witness.log) and its pid. Starting again on an existing DIR keeps the
# key and the database: that is a witness restart. The witness makes no
# outbound call: no bastion, no distributor, no public witness-network
# config; the ledger pushes its checkpoints to it (POST /add-checkpoint).
set -euo pipefail
. "$(dirname "$0")/lib/server.sh" # stop_server

readonly WITNESS_MODULE=github.com/transparency-dev/witness
readonly WITNESS_VERSION=v0.0.0-20260720115447-2e1c6971d19e
readonly EXIT_UNAVAILABLE=77
CACHE=${NOTARIZE_CACHE:-$HOME/.cache/notarize}
BINDIR=$CACHE/bin

usage() {
  echo "usage: $0 install | start DIR PORT ORIGIN VKEY [LOG_URL] | stop DIR" >&2
  exit 2
}

loud() {
  {
    echo "################################################################################"
    echo "## scripts/witness.sh: $*"
    echo "################################################################################"
  } >&2
}

install_bins() {
  if [ -x "$BINDIR/omniwitness" ] && [ -x "$BINDIR/generate_keys" ] &&
    [ "$(cat "$BINDIR/.witness-version" 2>/dev/null)" = "$WITNESS_VERSION" ]; then
    echo "$BINDIR"
    return 0
  fi
  if ! command -v go >/dev/null; then
    loud "go is not installed: cannot build omniwitness. Witness tests will be SKIPPED."
    exit "$EXIT_UNAVAILABLE"
  fi
  mkdir -p "$BINDIR"
  echo "installing omniwitness and generate_keys $WITNESS_VERSION into $BINDIR (about 2-3 min the first time)" >&2
  if ! GOTOOLCHAIN=${GOTOOLCHAIN:-local} GOBIN=$BINDIR GOFLAGS=-buildvcs=false go install -trimpath \
    "$WITNESS_MODULE/cmd/omniwitness@$WITNESS_VERSION" \
    "$WITNESS_MODULE/cmd/generate_keys@$WITNESS_VERSION" >&2; then
    loud "go install $WITNESS_MODULE@$WITNESS_VERSION failed. Witness tests will be SKIPPED."
    exit "$EXIT_UNAVAILABLE"
  fi
  echo "$WITNESS_VERSION" >"$BINDIR/.witness-version"
  echo "$BINDIR"
}

wait_listening() { # wait_listening PORT PID: up to 10 s
  local i
  for i in $(seq 1 100); do
    if ! kill -0 "$2" 2>/dev/null; then return 1; fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

start_witness() {
  local dir=$1 port=$2 origin=$3 vkey=$4 url=${5:-http://127.0.0.1/}
  install_bins >/dev/null
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
    echo "witness in $dir already running (pid $(cat "$dir/pid"))" >&2
    exit 1
  fi
  if [ ! -f "$dir/witness.key" ]; then
    "$BINDIR/generate_keys" --origin "localhost/witness-$port" \
      --out_priv "$dir/witness.key" --out_pub "$dir/witness.pub"
  fi
  cat >"$dir/logs.yaml" <<EOF
# Written by scripts/witness.sh: the one log this witness cosigns.
Logs:
  - Origin: "$origin"
    URL: "$url"
    PublicKey: "$vkey"
EOF
  "$BINDIR/omniwitness" --listen "127.0.0.1:$port" --metrics_listen "" \
    --private_key_path "$dir/witness.key" --db_file "$dir/witness.db" \
    --additional_logs "$dir/logs.yaml" >>"$dir/witness.log" 2>&1 &
  echo $! >"$dir/pid"
  if ! wait_listening "$port" "$(cat "$dir/pid")"; then
    tail -n 20 "$dir/witness.log" >&2
    echo "omniwitness did not start on 127.0.0.1:$port (log: $dir/witness.log)" >&2
    exit 1
  fi
  local pub name
  pub=$(cat "$dir/witness.pub")
  name=${pub%%+*}
  echo "witness ${name//[^A-Za-z0-9_.-]/_} $pub http://127.0.0.1:$port"
}

case ${1:-} in
install) install_bins ;;
start) [ $# -ge 5 ] || usage; start_witness "$2" "$3" "$4" "$5" "${6:-}" ;;
stop) [ $# -eq 2 ] || usage; stop_server "$2" ;;
*) usage ;;
esac
