#!/usr/bin/env bash
# Installs and runs SeaweedFS, an Apache-2.0 S3-compatible object store, on
# loopback: the shared bucket of a fleet of notarize proxies in tests,
# benchmarks and `make run-fleet` (issue 15). MinIO is not used (AGPL).
#
#   scripts/seaweedfs.sh install             # build weed once; prints its directory
#   scripts/seaweedfs.sh installed           # exit 0 when built, 77 when not (no build)
#   scripts/seaweedfs.sh start DIR PORT      # start on 127.0.0.1; S3 on PORT;
#                                            # prints the S3 endpoint URL
#   scripts/seaweedfs.sh bucket ENDPOINT NAME  # create bucket NAME (idempotent)
#   scripts/seaweedfs.sh stop DIR
#
# SeaweedFS cannot be `go install`ed (its go.mod has replace directives), so
# install downloads the module at a pinned pseudo-version with `go mod
# download`, copies it somewhere writable and runs `go build ./weed` in it
# (about 8 min cold on 2 cores, a ~230 MB binary) into
# ${NOTARIZE_CACHE:-~/.cache/notarize}/bin/weed; a second run is instant.
#
# start keeps everything of one server in DIR (data, log, pid). The master,
# volume and filer servers take PORT+1..PORT+3 (and their gRPC ports
# +10000); everything binds 127.0.0.1 and S3 accepts anonymous requests
# (no identities configured): for tests on loopback only.
set -euo pipefail

readonly SEAWEED_MODULE=github.com/seaweedfs/seaweedfs
readonly SEAWEED_VERSION=v0.0.0-20261109003541-7506e5f91cd6
readonly EXIT_UNAVAILABLE=77
CACHE=${NOTARIZE_CACHE:-$HOME/.cache/notarize}
BINDIR=$CACHE/bin

usage() {
  echo "usage: $0 install | installed | start DIR PORT | bucket ENDPOINT NAME | stop DIR" >&2
  exit 2
}

loud() {
  {
    echo "################################################################################"
    echo "## scripts/seaweedfs.sh: $*"
    echo "################################################################################"
  } >&2
}

install_bin() {
  if [ -x "$BINDIR/weed" ] && [ "$(cat "$BINDIR/.weed-version" 2>/dev/null)" = "$SEAWEED_VERSION" ]; then
    echo "$BINDIR"
    return 0
  fi
  if ! command -v go >/dev/null; then
    loud "go is not installed: cannot build SeaweedFS. S3 tests will be SKIPPED."
    exit "$EXIT_UNAVAILABLE"
  fi
  mkdir -p "$BINDIR"
  echo "building SeaweedFS $SEAWEED_VERSION into $BINDIR (about 8 min the first time)" >&2
  local src work
  if ! src=$(cd /tmp && GOTOOLCHAIN=${GOTOOLCHAIN:-local} GOFLAGS=-mod=mod go mod download -json "$SEAWEED_MODULE@$SEAWEED_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p') || [ -z "$src" ]; then
    loud "go mod download $SEAWEED_MODULE@$SEAWEED_VERSION failed. S3 tests will be SKIPPED."
    exit "$EXIT_UNAVAILABLE"
  fi
  work=$(mktemp -d)
  trap 'rm -rf "${work:-}"' EXIT
  cp -r "$src/." "$work/"
  chmod -R u+w "$work"
  # -trimpath as `make build`: the standard library and the packages of the
  # module versions both use compile once on a fresh machine. -s -w: no
  # symbol table or DWARF, a shorter link of a large binary.
  if ! (cd "$work" && GOTOOLCHAIN=${GOTOOLCHAIN:-local} GOFLAGS=-buildvcs=false go build -trimpath -ldflags="-s -w" -o "$BINDIR/weed.new" ./weed >&2); then
    loud "go build of SeaweedFS failed. S3 tests will be SKIPPED."
    exit "$EXIT_UNAVAILABLE"
  fi
  mv "$BINDIR/weed.new" "$BINDIR/weed"
  echo "$SEAWEED_VERSION" >"$BINDIR/.weed-version"
  echo "$BINDIR"
}

wait_listening() { # wait_listening PORT PID SECONDS
  local i
  for i in $(seq 1 $(($3 * 10))); do
    if ! kill -0 "$2" 2>/dev/null; then return 1; fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

start_server() {
  local dir=$1 port=$2
  install_bin >/dev/null
  mkdir -p "$dir/data"
  dir=$(cd "$dir" && pwd)
  if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
    echo "SeaweedFS in $dir already running (pid $(cat "$dir/pid"))" >&2
    exit 1
  fi
  "$BINDIR/weed" server -dir="$dir/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -master.port=$((port + 1)) -master.volumeSizeLimitMB=256 -volume.port=$((port + 2)) -volume.max=1000 -volume.preStopSeconds=0 \
    -filer -filer.port=$((port + 3)) -s3 -s3.port="$port" \
    >>"$dir/weed.log" 2>&1 &
  echo $! >"$dir/pid"
  if ! wait_listening "$port" "$(cat "$dir/pid")" 60; then
    tail -n 30 "$dir/weed.log" >&2
    echo "SeaweedFS did not start S3 on 127.0.0.1:$port (log: $dir/weed.log)" >&2
    exit 1
  fi
  echo "http://127.0.0.1:$port"
}

# make_bucket ENDPOINT NAME: an anonymous PUT /NAME, retried while the
# filer is still coming up. 200 (created) and 409 (exists) are success.
make_bucket() {
  local endpoint=$1 name=$2 code i
  for i in $(seq 1 100); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT "$endpoint/$name" || true)
    case $code in 200 | 409) return 0 ;; esac
    sleep 0.2
  done
  echo "cannot create bucket $name at $endpoint (last HTTP $code)" >&2
  exit 1
}

# stop_server DIR: TERM, then KILL after a second. "weed server" stops its
# volume server on TERM (at once: -volume.preStopSeconds=0) but its master
# and filer keep running, so a longer grace only made every stop take its
# whole length (10 s, measured). Their data is a test's, or a blob cache
# (scripts/run-fleet.sh) whose blobs are hashed again when read.
stop_server() {
  local dir=$1 pid
  [ -f "$dir/pid" ] || return 0
  pid=$(cat "$dir/pid")
  if kill -TERM "$pid" 2>/dev/null; then
    for _ in $(seq 1 10); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/pid"
}

case ${1:-} in
install) install_bin ;;
installed)
  if [ -x "$BINDIR/weed" ] && [ "$(cat "$BINDIR/.weed-version" 2>/dev/null)" = "$SEAWEED_VERSION" ]; then
    echo "$BINDIR"
  else
    echo "SeaweedFS $SEAWEED_VERSION is not built in $BINDIR: run $0 install" >&2
    exit "$EXIT_UNAVAILABLE"
  fi
  ;;
start) [ $# -eq 3 ] || usage; start_server "$2" "$3" ;;
bucket) [ $# -eq 3 ] || usage; make_bucket "$2" "$3" ;;
stop) [ $# -eq 2 ] || usage; stop_server "$2" ;;
*) usage ;;
esac
