#!/usr/bin/env bash
# Whole-process verify, side by side in one run, all on loopback (issue 14):
#   docker notarize verify IMAGE       through the docker CLI (which runs the
#                                      plugin twice: metadata, then the command)
#   docker-notarize verify IMAGE       the plugin run standalone
#   cosign verify --key (offline)      the peer: a key-signed image, no
#                                      transparency log (--insecure-ignore-tlog)
#   crane digest IMAGE                 the floor: process start plus one
#                                      registry round trip
#   docker --version                   the docker CLI alone
#   docker-notarize docker-cli-plugin-metadata   the plugin's metadata answer
# The registry is crane's (go-containerregistry), the ledger notarize-ledger;
# the image is signed by both tools. Timing by bench/roundrobin (default:
# every command once per round, wall and CPU time), TIMER=hyperfine (apt;
# each command's runs one after the other), or TIMER=loop (a shell loop over
# `date +%s%N`, less precise, same for every row).
#
# Usage: bench/verify-bench.sh         (RUNS=40 WARMUP=5 to tune)
#        BASELINE=REF bench/verify-bench.sh   also times the plugin built from
#        git REF (e.g. HEAD~3), through the docker CLI and standalone, in the
#        same run: before/after figures for a change.
#        DELAY=5ms bench/verify-bench.sh   times every command against the
#        registry and the ledger as if they were remote: each behind
#        bench/delayproxy, which adds DELAY each way (a 10 ms round trip, a
#        round trip more per new connection). Signing is done directly.
#        LEDGER_TLS=1 bench/verify-bench.sh   the ledger serves HTTPS (a
#        certificate made for the run, trusted through NOTARIZE_LEDGER_CA).
#        STARTUP=1 bench/verify-bench.sh   also times where a verify's start-up
#        goes (issue 14), with probes built from HEAD in a scratch worktree:
#          startup-allinits  the plugin, exiting from package main's init
#                            (every package init, no command)
#          startup-early     the plugin, exiting from an init that imports
#                            only what a verify itself needs (ledgerclient,
#                            notarize, go-containerregistry's transport and
#                            authn, docker/cli/cli/config, pflag): what a
#                            verify fast path run from a package init, as
#                            cmd/docker-notarize/internal/fastmeta runs the
#                            metadata, would still pay (Go initialises
#                            packages in import-path order, each once its
#                            imports are done)
#          startup-slim      a binary linking only those packages (no
#                            docker/cli command package, no cobra), exiting
#                            from the same init: the start-up floor of a
#                            verify in a binary of its own
#          startup-version   the plugin's --version: every init, the docker
#                            CLI object and the command tree, no network
# cosign (v2.6.5) and crane (v0.22.1) are built once with `go install` into
# ${NOTARIZE_BENCH_CACHE:-~/.cache/notarize-bench}/bin (cosign takes minutes
# the first time). Prints a table: mean and σ per command, and the ratios the
# issue asks for.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/notarize-vbench.XXXXXX")
. "$ROOT/bench/lib.sh"
CACHE=${NOTARIZE_BENCH_CACHE:-$HOME/.cache/notarize-bench}
BIN=$WORK/bin
RUNS=${RUNS:-40}
WARMUP=${WARMUP:-5}
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
PIDS=()
mkdir -p "$BIN" "$CACHE/bin" "$WORK/logs"

trap cleanup EXIT INT TERM # bench/lib.sh
start() { local n=$1; shift; "$@" >"$WORK/logs/$n.log" 2>&1 & PIDS+=($!); }

echo "== build"
# The plugin and, since issue 14, its KMS helper (cmd/notarize-kms), which
# is installed next to it as `make install` does.
# Since issue 14's verify-only build, the plugin as `make build` builds it:
# docker-notarize (tag notarize_verifyonly, no cgo) and the full CLI,
# notarize-cli, beside it; a tree from before, its one binary.
build_plugin() { # SRC OUT
  (cd "$1" && go build -trimpath -ldflags '-s -w' -o "$2/" ./cmd/docker-notarize $([[ -d cmd/notarize-kms ]] && echo ./cmd/notarize-kms)
    if [[ -f cmd/docker-notarize/main_verifyonly.go ]]; then
      mv "$2/docker-notarize" "$2/notarize-cli"
      CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -tags notarize_verifyonly -o "$2/docker-notarize" ./cmd/docker-notarize
    fi)
}
(cd "$ROOT" && go build -trimpath -ldflags '-s -w' -o "$BIN/" ./cmd/notarize-ledger ./bench/roundrobin ./bench/delayproxy)
build_plugin "$ROOT" "$BIN"
if [[ -n ${BASELINE:-} ]]; then
  echo "   baseline plugin from $BASELINE"
  git -C "$ROOT" worktree add --detach "$WORK/baseline" "$BASELINE" >/dev/null
  mkdir -p "$BIN/baseline"
  build_plugin "$WORK/baseline" "$BIN/baseline"
  git -C "$ROOT" worktree remove --force "$WORK/baseline"
fi
if [[ -n ${STARTUP:-} ]]; then
  echo "   start-up probes from HEAD"
  git -C "$ROOT" worktree add --detach "$WORK/startup" HEAD >/dev/null
  P=$WORK/startup/cmd/docker-notarize
  mkdir -p "$P/internal/zzstartup/slim"
  cat >"$P/internal/zzstartup/zzstartup.go" <<'EOF'
// Package zzstartup is a start-up probe (bench/verify-bench.sh STARTUP=1):
// it imports what a verify itself needs and exits from its init.
package zzstartup

import (
	"os"

	_ "github.com/docker/cli/cli/config"
	_ "github.com/google/go-containerregistry/pkg/authn"
	_ "github.com/google/go-containerregistry/pkg/name"
	_ "github.com/google/go-containerregistry/pkg/v1/remote/transport"
	_ "github.com/notarize/docker-notarize/ledgerclient"
	_ "github.com/notarize/docker-notarize/notarize"
	_ "github.com/spf13/pflag"
)

func init() {
	if len(os.Args) == 2 && os.Args[1] == "zz-startup-early" {
		os.Exit(0)
	}
}
EOF
  cat >"$P/internal/zzstartup/slim/main.go" <<'EOF'
package main

import _ "github.com/notarize/docker-notarize/cmd/docker-notarize/internal/zzstartup"

func main() {}
EOF
  cat >"$P/zz_startup.go" <<'EOF'
package main

import (
	"os"

	_ "github.com/notarize/docker-notarize/cmd/docker-notarize/internal/zzstartup"
)

func init() {
	if len(os.Args) == 2 && os.Args[1] == "zz-startup-main" {
		os.Exit(0)
	}
}
EOF
  mkdir -p "$BIN/startup"
  (cd "$WORK/startup" && go build -trimpath -ldflags '-s -w' -o "$BIN/startup/docker-notarize" ./cmd/docker-notarize &&
    go build -trimpath -ldflags '-s -w' -o "$BIN/startup/slim" ./cmd/docker-notarize/internal/zzstartup/slim)
  git -C "$ROOT" worktree remove --force "$WORK/startup"
fi
for tool in crane:github.com/google/go-containerregistry/cmd/crane@v0.22.1 cosign:github.com/sigstore/cosign/v2/cmd/cosign@v2.6.5; do
  name=${tool%%:*}
  if [[ ! -x $CACHE/bin/$name ]]; then
    echo "   building $name (once)"
    GOBIN=$CACHE/bin GOFLAGS=-trimpath go install "${tool#*:}"
  fi
done
export PATH=$BIN:$CACHE/bin:$PATH

REG_PORT=$(free_port); LEDGER_PORT=$(free_port)
LEDGER_SCHEME=http LEDGER_TLS_ARGS=()
if [[ -n ${LEDGER_TLS:-} ]]; then
  # The ledger serves HTTPS with a certificate for 127.0.0.1 that every
  # client trusts through NOTARIZE_LEDGER_CA (curl through CURL_CA_BUNDLE).
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$WORK/ledger-tls.key" -out "$WORK/ledger-tls.crt" 2>/dev/null
  LEDGER_SCHEME=https LEDGER_TLS_ARGS=(--tls-cert "$WORK/ledger-tls.crt" --tls-key "$WORK/ledger-tls.key")
  export NOTARIZE_LEDGER_CA=$WORK/ledger-tls.crt CURL_CA_BUNDLE=$WORK/ledger-tls.crt
fi
start registry crane registry serve --address "127.0.0.1:$REG_PORT"
start ledger notarize-ledger --addr "127.0.0.1:$LEDGER_PORT" --data "$WORK/ledger" "${LEDGER_TLS_ARGS[@]}"
wait_http "http://127.0.0.1:$REG_PORT/v2/"
wait_http "$LEDGER_SCHEME://127.0.0.1:$LEDGER_PORT/api/v1/info"

echo "== image, signed by docker notarize and by cosign"
IMAGE=127.0.0.1:$REG_PORT/bench/app:v1
mkdir -p "$WORK/layer/etc"; echo bench >"$WORK/layer/etc/bench"
tar -C "$WORK/layer" -cf "$WORK/layer.tar" .
crane append --insecure -f "$WORK/layer.tar" -t "$IMAGE" >/dev/null
DIGEST=$(crane digest --insecure "$IMAGE")

export DOCKER_CONFIG=$WORK/docker DOCKER_CLI_HINTS=false
export NOTARIZE_HOME=$WORK/home NOTARIZE_PASSWORD=bench NOTARIZE_LEDGER=$LEDGER_SCHEME://127.0.0.1:$LEDGER_PORT
export NOTARIZE_LEDGER_KEY="$(cat "$WORK/ledger/ledger.pub")"
install_plugin() { # DIR BINDIR: the plugin, the full CLI and the KMS helper, as make install does
  mkdir -p "$1"
  for b in docker-notarize notarize-cli notarize-kms; do
    [[ -x $2/$b ]] && install -m 0755 "$2/$b" "$1/$b"
  done
  return 0
}
install_plugin "$DOCKER_CONFIG/cli-plugins" "$BIN"
if [[ -n ${BASELINE:-} ]]; then
  install_plugin "$WORK/docker-baseline/cli-plugins" "$BIN/baseline"
fi
docker-notarize key generate --name release >/dev/null
docker-notarize sign "$IMAGE" >/dev/null 2>&1

export COSIGN_PASSWORD=bench COSIGN_YES=true TUF_ROOT=$WORK/tuf SIGSTORE_NO_CACHE=true
(cd "$WORK" && cosign generate-key-pair >/dev/null 2>&1)
cosign sign --key "$WORK/cosign.key" --tlog-upload=false --allow-insecure-registry "${IMAGE%:*}@$DIGEST" >"$WORK/logs/cosign-sign.log" 2>&1

if [[ -n ${DELAY:-} ]]; then
  # Every timed command reaches the registry and the ledger through a
  # delay proxy: the image's name carries the proxy's address.
  RP=$(free_port); LP=$(free_port)
  start delay-registry delayproxy -listen "127.0.0.1:$RP" -to "127.0.0.1:$REG_PORT" -delay "$DELAY"
  start delay-ledger delayproxy -listen "127.0.0.1:$LP" -to "127.0.0.1:$LEDGER_PORT" -delay "$DELAY"
  wait_http "http://127.0.0.1:$RP/v2/"
  wait_http "$LEDGER_SCHEME://127.0.0.1:$LP/api/v1/info"
  IMAGE=127.0.0.1:$RP/bench/app:v1
  export NOTARIZE_LEDGER=$LEDGER_SCHEME://127.0.0.1:$LP
  echo "   every command below reaches the registry and the ledger $DELAY away (each way)"
fi
COSIGN=(cosign verify --key "$WORK/cosign.pub" --insecure-ignore-tlog=true --allow-insecure-registry --output text "$IMAGE")
declare -A CMD=(
  [docker-notarize-cli]="docker notarize verify $IMAGE"
  [standalone]="docker-notarize verify $IMAGE"
  [cosign]="${COSIGN[*]}"
  [crane-digest]="crane digest --insecure $IMAGE"
  [docker-version]="docker --version"
  [metadata]="docker-notarize docker-cli-plugin-metadata"
)
ORDER=(docker-notarize-cli standalone cosign crane-digest docker-version metadata)
if [[ -x $BIN/notarize-cli ]]; then
  # The full CLI alone (what `go install ./cmd/docker-notarize` installs),
  # run standalone: the verify-only build's gain in the same run.
  CMD[full-standalone]="$BIN/notarize-cli verify $IMAGE"
  ORDER+=(full-standalone)
fi
if [[ -n ${BASELINE:-} ]]; then
  CMD[baseline-cli]="env DOCKER_CONFIG=$WORK/docker-baseline docker notarize verify $IMAGE"
  CMD[baseline-standalone]="$BIN/baseline/docker-notarize verify $IMAGE"
  CMD[baseline-metadata]="$BIN/baseline/docker-notarize docker-cli-plugin-metadata"
  ORDER+=(baseline-cli baseline-standalone baseline-metadata)
fi
if [[ -n ${STARTUP:-} ]]; then
  CMD[startup-allinits]="$BIN/startup/docker-notarize zz-startup-main"
  CMD[startup-early]="$BIN/startup/docker-notarize zz-startup-early"
  CMD[startup-slim]="$BIN/startup/slim zz-startup-early"
  CMD[startup-version]="$BIN/startup/docker-notarize --version"
  ORDER+=(startup-allinits startup-early startup-slim startup-version)
fi
for k in "${ORDER[@]}"; do # every command must succeed before it is timed
  if ! ${CMD[$k]} >"$WORK/logs/check-$k.log" 2>&1; then
    echo "$k failed: ${CMD[$k]}" >&2; cat "$WORK/logs/check-$k.log" >&2; exit 1
  fi
done

RESULTS=$WORK/results.tsv
: >"$RESULTS"
if [[ ${TIMER:-roundrobin} == roundrobin ]]; then
  # One run of each command per round: on a shared machine the load falls
  # on every row alike, so the ratios hold when the absolute times drift.
  # Columns: name, median wall, mean wall, σ, median CPU (user + sys).
  echo "== timing ($RUNS rounds after $WARMUP warm-up rounds; each round runs every command once, in turn)"
  args=()
  for k in "${ORDER[@]}"; do args+=("$k=${CMD[$k]}"); done
  "$BIN/roundrobin" -rounds "$RUNS" -warmup "$WARMUP" "${args[@]}" | awk -F'\t' -v OFS='\t' '{print $1, $3, $4, $2, $5}' >"$RESULTS"
elif command -v hyperfine >/dev/null; then
  echo "== timing ($RUNS runs each after $WARMUP warm-up runs, by hyperfine, command after command)"
  args=()
  for k in "${ORDER[@]}"; do args+=(-n "$k" "${CMD[$k]}"); done
  hyperfine -N -w "$WARMUP" -r "$RUNS" --export-json "$WORK/h.json" "${args[@]}" >"$WORK/logs/hyperfine.log"
  jq -r '.results[] | [.command, (.mean * 1000), (.stddev * 1000), (.median * 1000), ((.user + .system) * 1000)] | @tsv' "$WORK/h.json" >"$RESULTS"
else
  echo "== timing ($RUNS runs each after $WARMUP warm-up runs, shell loop)"
  for k in "${ORDER[@]}"; do
    for _ in $(seq "$WARMUP"); do ${CMD[$k]} >/dev/null 2>&1; done
    ts=()
    for _ in $(seq "$RUNS"); do
      s=$(date +%s%N); ${CMD[$k]} >/dev/null 2>&1; e=$(date +%s%N); ts+=($(((e - s) / 1000)))
    done
    printf '%s\n' "${ts[@]}" | sort -n | awk -v k="$k" '{a[NR] = $1 / 1000; s += a[NR]; q += a[NR] * a[NR]}
      END {m = s / NR; printf "%s\t%f\t%f\t%f\t0\n", k, m, sqrt(q / NR - m * m), a[int((NR + 1) / 2)]}' >>"$RESULTS"
  done
fi
awk -F'\t' '{printf "   %-22s mean %7.1f ms  σ %5.1f ms  median %7.1f ms  CPU %6.1f ms\n", $1, $2, $3, $4, $5}' "$RESULTS"
echo "   load average: $(cut -d' ' -f1-3 /proc/loadavg)"

ratios() { # COLUMN LABEL
  awk -F'\t' -v col="$1" -v label="$2" '{m[$1] = $col}
    END {
      if (m["cosign"] == 0) exit
      print "== ratios (" label ")"
      printf "   docker notarize verify / cosign   %5.2fx   (target <= 0.5x)\n", m["docker-notarize-cli"] / m["cosign"]
      printf "   docker-notarize verify / cosign   %5.2fx   (target <= 0.25x)\n", m["standalone"] / m["cosign"]
      printf "   docker-notarize verify / floor    %5.2fx   (target <= 1.2x; floor = crane digest)\n", m["standalone"] / m["crane-digest"]
      # The docker CLI runs the plugin twice (strace -f -e execve): its
      # metadata, then the command.
      printf "   docker notarize verify - docker --version - metadata - standalone = %.1f ms (the docker CLI'"'"'s plugin handling)\n",
        m["docker-notarize-cli"] - m["docker-version"] - m["metadata"] - m["standalone"]
      if ("full-standalone" in m)
        printf "   the full CLI alone (go install), standalone: / cosign %5.2fx, / floor %5.2fx; the verify-only build / it %5.2fx\n",
          m["full-standalone"] / m["cosign"], m["full-standalone"] / m["crane-digest"], m["standalone"] / m["full-standalone"]
      if ("baseline-cli" in m) {
        printf "   baseline: docker notarize verify / cosign %5.2fx, standalone / cosign %5.2fx, standalone / floor %5.2fx\n",
          m["baseline-cli"] / m["cosign"], m["baseline-standalone"] / m["cosign"], m["baseline-standalone"] / m["crane-digest"]
        printf "   this tree vs baseline: through docker %5.2fx, standalone %5.2fx, metadata %5.2fx\n",
          m["docker-notarize-cli"] / m["baseline-cli"], m["standalone"] / m["baseline-standalone"], m["metadata"] / m["baseline-metadata"]
      }
      if ("startup-allinits" in m) {
        printf "   start-up: every init %.1f ms; from an early init %.1f ms (a fast path saves %.1f); a verify-only binary %.1f ms (saves %.1f)\n",
          m["startup-allinits"], m["startup-early"], m["startup-allinits"] - m["startup-early"], m["startup-slim"], m["startup-allinits"] - m["startup-slim"]
        printf "   start-up: the docker CLI object and the command tree (--version - every init) %.1f ms; the verify itself (standalone - --version) %.1f ms\n",
          m["startup-version"] - m["startup-allinits"], m["standalone"] - m["startup-version"]
        printf "   best case of an in-process fast path: standalone / floor %5.2fx\n",
          (m["standalone"] - (m["startup-allinits"] - m["startup-early"]) - (m["startup-version"] - m["startup-allinits"])) / m["crane-digest"]
      }
    }' "$RESULTS"
}
ratios 4 "median wall time"
ratios 5 "median CPU time, user + system"
