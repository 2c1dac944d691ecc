#!/usr/bin/env bash
# Installs and runs the Versity S3 Gateway (versitygw, Apache-2.0), an
# S3-compatible object store, on loopback with its POSIX backend: the shared
# bucket of a fleet of notarize proxies in tests, benchmarks and
# `make run-fleet` (issue 15). MinIO is not used (AGPL).
#
#   scripts/versitygw.sh install             # build versitygw once; prints its directory
#   scripts/versitygw.sh installed           # exit 0 when built, 77 when not (no build)
#   scripts/versitygw.sh start DIR PORT      # start on 127.0.0.1:PORT; prints the S3 endpoint URL
#   scripts/versitygw.sh bucket ENDPOINT NAME  # create bucket NAME (idempotent)
#   scripts/versitygw.sh exists ENDPOINT BUCKET/KEY  # exit 0 when the object is there
#   scripts/versitygw.sh stop DIR
#
# install runs `go install` of the module at a pinned release into
# ${NOTARIZE_CACHE:-~/.cache/notarize}/bin (about 2 min cold on 2 cores, a
# ~45 MB binary; SeaweedFS, used before, took ~8); a second run is instant.
#
# start keeps everything of one server in DIR (objects under DIR/data, their
# metadata under DIR/meta, so the file system needs no extended attributes;
# the log, the pid). It refuses a port already in use, binds 127.0.0.1 only
# and checks every request's AWS signature: the one account is
# S3_ACCESS_KEY / S3_SECRET_KEY (defaults notarize / notarize-test-only),
# which bucket uses too and the callers give distribution's s3 driver. For
# tests and trials on loopback only.
set -euo pipefail
. "$(dirname "$0")/lib/server.sh" # stop_server

readonly VGW_PACKAGE=github.com/versity/versitygw/cmd/versitygw
readonly VGW_VERSION=v1.8.0
readonly EXIT_UNAVAILABLE=77
CACHE=${NOTARIZE_CACHE:-$HOME/.cache/notarize}
BINDIR=$CACHE/bin
S3_ACCESS_KEY=${S3_ACCESS_KEY:-notarize}
S3_SECRET_KEY=${S3_SECRET_KEY:-notarize-test-only}
# The SHA-256 of an empty body: S3's signature covers the payload's hash.
readonly EMPTY_SHA256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855

usage() {
  echo "usage: $0 install | installed | start DIR PORT | bucket ENDPOINT NAME | exists ENDPOINT BUCKET/KEY | stop DIR" >&2
  exit 2
}

loud() {
  {
    echo "################################################################################"
    echo "## scripts/versitygw.sh: $*"
    echo "################################################################################"
  } >&2
}

built() {
  [ -x "$BINDIR/versitygw" ] && [ "$(cat "$BINDIR/.versitygw-version" 2>/dev/null)" = "$VGW_VERSION" ]
}

install_bin() {
  if built; then
    echo "$BINDIR"
    return 0
  fi
  if ! command -v go >/dev/null; then
    loud "go is not installed: cannot build versitygw. S3 tests will be SKIPPED."
    exit "$EXIT_UNAVAILABLE"
  fi
  mkdir -p "$BINDIR"
  echo "building versitygw $VGW_VERSION into $BINDIR (about 2 min the first time)" >&2
  # Without cgo and with -trimpath, as `make build` builds the ledger and
  # the proxy: the standard library compiles once on a fresh machine. -s -w:
  # no symbol table or DWARF, a shorter link.
  if ! (cd /tmp && GOBIN=$BINDIR GOTOOLCHAIN=${GOTOOLCHAIN:-local} CGO_ENABLED=0 GOFLAGS= \
    go install -trimpath -ldflags="-s -w" "$VGW_PACKAGE@$VGW_VERSION" >&2); then
    loud "go install $VGW_PACKAGE@$VGW_VERSION failed. S3 tests will be SKIPPED."
    exit "$EXIT_UNAVAILABLE"
  fi
  echo "$VGW_VERSION" >"$BINDIR/.versitygw-version"
  # SeaweedFS, the S3 server before versitygw, left a ~230 MB binary here.
  rm -f "$BINDIR/weed" "$BINDIR/.weed-version"
  echo "$BINDIR"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_healthy() { # wait_healthy PORT PID SECONDS
  local i
  for i in $(seq 1 $(($3 * 10))); do
    if ! kill -0 "$2" 2>/dev/null; then return 1; fi
    if curl -fsS -o /dev/null "http://127.0.0.1:$1/health" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

start_server() {
  local dir=$1 port=$2
  install_bin >/dev/null
  mkdir -p "$dir/data" "$dir/meta"
  dir=$(cd "$dir" && pwd)
  if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
    echo "versitygw in $dir already running (pid $(cat "$dir/pid"))" >&2
    exit 1
  fi
  # Another server on the port would answer the health check in its place.
  if port_in_use "$port"; then
    echo "127.0.0.1:$port is already in use: versitygw not started" >&2
    exit 1
  fi
  # The credentials go through the environment, not argv (ps shows argv),
  # under the names versitygw reads first (ROOT_ACCESS_KEY_ID before
  # ROOT_ACCESS_KEY), the others unset.
  env -u ROOT_ACCESS_KEY -u ROOT_SECRET_KEY ROOT_ACCESS_KEY_ID="$S3_ACCESS_KEY" ROOT_SECRET_ACCESS_KEY="$S3_SECRET_KEY" \
    "$BINDIR/versitygw" --port "127.0.0.1:$port" --quiet --health /health \
    posix --sidecar "$dir/meta" "$dir/data" >>"$dir/versitygw.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$dir/pid"
  if ! wait_healthy "$port" "$pid" 30 || ! kill -0 "$pid" 2>/dev/null; then
    tail -n 30 "$dir/versitygw.log" >&2
    echo "versitygw did not start S3 on 127.0.0.1:$port (log: $dir/versitygw.log)" >&2
    exit 1
  fi
  echo "http://127.0.0.1:$port"
}

# signed_curl ARGS...: curl with the account's SigV4 signature; the
# credentials reach curl on stdin, not in argv.
signed_curl() {
  printf 'user = "%s:%s"\n' "$S3_ACCESS_KEY" "$S3_SECRET_KEY" |
    curl -K - --aws-sigv4 "aws:amz:us-east-1:s3" -H "x-amz-content-sha256: $EMPTY_SHA256" "$@"
}

# make_bucket ENDPOINT NAME: a signed PUT /NAME. 200 (created) and 409
# (exists: BucketAlreadyOwnedByYou) are success.
make_bucket() {
  local endpoint=$1 name=$2 code out
  out=$(mktemp)
  code=$(signed_curl -s -o "$out" -w '%{http_code}' -X PUT "$endpoint/$name" || true)
  case $code in
  200) rm -f "$out"; return 0 ;;
  409) if grep -q BucketAlreadyOwnedByYou "$out"; then rm -f "$out"; return 0; fi ;;
  esac
  echo "cannot create bucket $name at $endpoint (HTTP $code): $(head -c 500 "$out")" >&2
  rm -f "$out"
  exit 1
}

case ${1:-} in
install) install_bin ;;
installed)
  if built; then
    echo "$BINDIR"
  else
    echo "versitygw $VGW_VERSION is not built in $BINDIR: run $0 install" >&2
    exit "$EXIT_UNAVAILABLE"
  fi
  ;;
start) [ $# -eq 3 ] || usage; start_server "$2" "$3" ;;
bucket) [ $# -eq 3 ] || usage; make_bucket "$2" "$3" ;;
exists) [ $# -eq 3 ] || usage; signed_curl -fsS -o /dev/null -I "$2/$3" 2>/dev/null ;;
stop) [ $# -eq 2 ] || usage; stop_server "$2" ;;
*) usage ;;
esac
