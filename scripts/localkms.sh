#!/usr/bin/env bash
# Installs and runs nsmithuk/local-kms, an AWS-KMS-compatible server, on
# loopback: the KMS of the plugin's `key generate --kms awskms://…` tests.
#
#   scripts/localkms.sh install              # build local-kms once; prints its directory
#   scripts/localkms.sh start DIR PORT       # start it on 127.0.0.1:PORT (0: a free one), data in DIR;
#                                            # prints its URL
#   scripts/localkms.sh stop DIR
#
# The binary is built from the module at a pinned pseudo-version (the module
# has no tagged release), patched to listen on 127.0.0.1 only (upstream binds
# every interface), into ${NOTARIZE_CACHE:-~/.cache/notarize}/bin, so a
# second run is instant; the tests look for it there (or on PATH). local-kms keeps its keys in DIR
# (KMS_DATA_PATH) and makes no outbound call. Clients reach it with an
# endpoint in the key URI (awskms://127.0.0.1:PORT/alias/NAME) and any
# static credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_REGION).
set -euo pipefail
. "$(dirname "$0")/lib/server.sh" # stop_server

readonly LOCALKMS_MODULE=github.com/nsmithuk/local-kms
readonly LOCALKMS_VERSION=v0.0.0-20260228092603-2a5e92d09ab6
readonly LOOPBACK_PATCH=loopback1
readonly EXIT_UNAVAILABLE=77
CACHE=${NOTARIZE_CACHE:-$HOME/.cache/notarize}
BINDIR=$CACHE/bin

usage() {
  echo "usage: $0 install | start DIR PORT | stop DIR" >&2
  exit 2
}

loud() {
  {
    echo "################################################################################"
    echo "## scripts/localkms.sh: $*"
    echo "################################################################################"
  } >&2
}

install_bin() {
  if [ -x "$BINDIR/local-kms" ] &&
    [ "$(cat "$BINDIR/.local-kms-version" 2>/dev/null)" = "$LOCALKMS_VERSION+$LOOPBACK_PATCH" ]; then
    echo "$BINDIR"
    return 0
  fi
  if ! command -v go >/dev/null; then
    loud "go is not installed: cannot build local-kms. KMS tests will be SKIPPED."
    exit "$EXIT_UNAVAILABLE"
  fi
  mkdir -p "$BINDIR"
  echo "building local-kms $LOCALKMS_VERSION into $BINDIR (about a minute the first time)" >&2
  local src work
  if ! src=$(GOTOOLCHAIN=${GOTOOLCHAIN:-local} GOFLAGS=-mod=mod go mod download -json "$LOCALKMS_MODULE@$LOCALKMS_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p') || [ -z "$src" ]; then
    loud "go mod download $LOCALKMS_MODULE@$LOCALKMS_VERSION failed. KMS tests will be SKIPPED."
    exit "$EXIT_UNAVAILABLE"
  fi
  # local-kms listens on every interface (":PORT"), with no option to
  # change it; the copy built here listens on loopback only.
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  cp -R "$src/." "$work/"
  chmod -R u+w "$work"
  sed -i 's|addr := ":"+port|addr := "127.0.0.1:"+port|; s|Local KMS started on 0.0.0.0:|Local KMS started on 127.0.0.1:|' "$work/src/server.go"
  if ! grep -q 'addr := "127.0.0.1:"+port' "$work/src/server.go"; then
    loud "local-kms $LOCALKMS_VERSION: the loopback patch no longer applies. KMS tests will be SKIPPED."
    exit "$EXIT_UNAVAILABLE"
  fi
  if ! (cd "$work" && GOTOOLCHAIN=${GOTOOLCHAIN:-local} GOFLAGS=-mod=mod go build -buildvcs=false -trimpath -o "$BINDIR/local-kms" .) >&2; then
    loud "go build of $LOCALKMS_MODULE@$LOCALKMS_VERSION failed. KMS tests will be SKIPPED."
    exit "$EXIT_UNAVAILABLE"
  fi
  echo "$LOCALKMS_VERSION+$LOOPBACK_PATCH" >"$BINDIR/.local-kms-version"
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

start_kms() {
  local dir=$1 port=$2
  install_bin >/dev/null
  mkdir -p "$dir/data"
  dir=$(cd "$dir" && pwd)
  if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
    echo "local-kms in $dir already running (pid $(cat "$dir/pid"))" >&2
    exit 1
  fi
  PORT=$port KMS_DATA_PATH=$dir/data \
    "$BINDIR/local-kms" >>"$dir/local-kms.log" 2>&1 &
  echo $! >"$dir/pid"
  if [ "$port" = 0 ]; then # a free port: local-kms logs the one it took
    local i
    for i in $(seq 1 100); do
      port=$(sed -n 's/.*Local KMS started on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$dir/local-kms.log" | tail -n 1)
      [ -n "$port" ] && break
      sleep 0.1
    done
    port=${port:-0}
  fi
  if ! wait_listening "$port" "$(cat "$dir/pid")"; then
    tail -n 20 "$dir/local-kms.log" >&2
    echo "local-kms did not start on 127.0.0.1:$port (log: $dir/local-kms.log)" >&2
    exit 1
  fi
  echo "http://127.0.0.1:$port"
}

case ${1:-} in
install) install_bin ;;
start) [ $# -eq 3 ] || usage; start_kms "$2" "$3" ;;
stop) [ $# -eq 2 ] || usage; stop_server "$2" ;;
*) usage ;;
esac
