#!/usr/bin/env bash
# Ledger ingest, whole process, side by side in one run (issue 14):
#   tessera      bench/tesserapeer: bare Tessera on POSIX storage (its own
#                conformance personality) with the ledger's batching and
#                checkpoint settings; appends the bytes it is sent and answers
#                once a published checkpoint covers them. No parse, no
#                signature check, no duplicate detection, no index, no map.
#   ledger       notarize-ledger as it ships (verifiable index on, its GOGC),
#                from an empty data directory (a new one for every step); rate
#                limits off (one load generator on loopback stands for many
#                clients).
#   ledger-big   the same binary on a copy of a large ledger (BIG=DIR, a data
#                directory, e.g. bench/verify-1m.sh's 1,000,000-entry one),
#                which is what a ledger in service pays per statement. It is
#                sent WARM statements (default 3×N) before the first round,
#                untimed: a ledger in service has its block caches full and
#                its heap at its peak, a copy just started does not (at
#                1,000,000 entries the heap grows to ~1.5 GB over the first
#                ~90,000 statements, pebble's 384 MiB of block caches being
#                Go memory in a static build, and every new page is a fault:
#                after 30,000 statements a static build still paid 8-12 %
#                more CPU per statement than a cgo one, after 90,000 the
#                same).
# bench/ingestgen is the load generator: C clients (one connection each, one
# statement at a time), N real statements (ECDSA P-256, 256 keys, fresh
# digests) signed before the clock starts, HTTP/1.1 spoken directly so its own
# CPU stays small; it prints the server's CPU per statement (/proc) and its own.
# Rows alternate for ROUNDS rounds, so the machine's load falls on each alike.
# ENGINES (default pebble, the engine of a new data directory; "bbolt pebble"
# for both, ENGINE=bbolt for bbolt alone) runs the ledger rows with each
# index engine (--index-engine): rows ledger and ledger-big (bbolt),
# ledger-pebble and ledger-big-pebble; the copy of BIG (a bbolt ledger, as
# bench/fill1m builds) for a pebble row is migrated first (notarize-ledger
# migrate-index, its time printed) and its old bbolt files removed.
#
# The binaries are built as the Makefile ships them: CGO_ENABLED=0, static
# (earlier rounds of this script measured a cgo build).
#
# With BASELINE=REF every ledger row also runs notarize-ledger built from
# REF (row@base, on a copy of its own, run beside the row in each round,
# before it in odd rounds and after it in even ones), so a change is
# measured against the code before it in one run.
#
# ingestgen signs every run (the warm-up and each row's round) with 256 new
# keys, so that for the ledger each run is a rotation to keys it has not
# seen; KEY_SEED=S derives them from S instead (ingestgen -key-seed), the
# same keys in every run: signers that keep their keys, whose tables of
# multiples (notarize.KeyCache) the warm-up built.
#
# Usage: bench/ingest-bench.sh          (C="256 1024" N=30000 ROUNDS=2 BIG=DIR ENGINES="bbolt pebble" WARM=N BASELINE=REF KEY_SEED=S to tune)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/notarize-ingest.XXXXXX")
. "$ROOT/bench/lib.sh"
BIN=$WORK/bin
C=${C:-256 1024}
N=${N:-30000}
ROUNDS=${ROUNDS:-2}
BIG=${BIG:-}
WARM=${WARM:-$((3 * N))}
ENGINES=${ENGINES:-${ENGINE:-pebble}}
KEYGEN=()
[[ -n ${KEY_SEED:-} ]] && KEYGEN=(-key-seed "$KEY_SEED")
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
PIDS=()
mkdir -p "$BIN" "$WORK/logs"

trap cleanup EXIT INT TERM # bench/lib.sh

echo "== build"
(cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -o "$BIN/" ./cmd/notarize-ledger ./bench/tesserapeer ./bench/ingestgen)
if [[ -n ${BASELINE:-} ]]; then
  build_baseline "$BASELINE"
fi

# serve NAME PORT CMD...: starts a server, waits until it answers, sets SPID.
serve() {
  local name=$1 port=$2; shift 2
  "$@" >"$WORK/logs/$name.log" 2>&1 &
  SPID=$!
  PIDS+=("$SPID")
  wait_http "http://127.0.0.1:$port/checkpoint" "$SPID"
}
ledger() { # ledger NAME DATA [ENGINE]: notarize-ledger on DATA
  local port try
  for try in 1 2 3; do # another process may take the free port first
    port=$(free_port)
    serve "$1" "$port" "$(ledger_bin "$1")" --data "$2" --addr "127.0.0.1:$port" \
      --rate-key 0 --rate-client 0 --rate-key-digest 0 ${3:+--index-engine "$3"} && break
    echo "   $1 did not start on port $port (try $try): $(tail -1 "$WORK/logs/$1.log")"
    [[ $try == 3 ]] && exit 1
  done
  URL_OF[$1]="http://127.0.0.1:$port/api/v1/entries"
  PID_OF[$1]=$SPID
}
declare -A URL_OF=() PID_OF=()
engine_of() { [[ ${1%@base} == *-pebble ]] && echo pebble || echo bbolt; }

# fresh NAME: starts the row NAME on an empty data directory (tessera,
# ledger) or, once, on the copy of BIG (ledger-big), and sets URL_OF/PID_OF.
fresh() {
  local port; port=$(free_port)
  case ${1%@base} in # a row@base starts as its row does, with REF's binary (ledger_bin)
  tessera)
    if [[ -n ${PID_OF[tessera]:-} ]]; then kill -TERM "${PID_OF[tessera]}"; wait "${PID_OF[tessera]}" 2>/dev/null || true; fi
    rm -rf "$WORK/tessera"
    serve tessera "$port" "$BIN/tesserapeer" -dir "$WORK/tessera" -addr "127.0.0.1:$port"
    URL_OF[tessera]="http://127.0.0.1:$port/add" PID_OF[tessera]=$SPID ;;
  ledger | ledger-pebble)
    if [[ -n ${PID_OF[$1]:-} ]]; then kill -TERM "${PID_OF[$1]}"; wait "${PID_OF[$1]}" 2>/dev/null || true; fi
    rm -rf "$WORK/$1"
    ledger "$1" "$WORK/$1" "$(engine_of "$1")" ;;
  ledger-big | ledger-big-pebble)
    [[ -n ${PID_OF[$1]:-} ]] && return 0
    echo "   copying $BIG ($(du -sh "$BIG" | cut -f1))"
    cp -r "$BIG" "$WORK/$1"
    if [[ ${1%@base} == *-pebble && -e $WORK/$1/index.db ]]; then # a pebble BIG is used as it is
      local t0; t0=$(date +%s.%N)
      "$BIN/notarize-ledger" migrate-index --data "$WORK/$1" --to pebble | sed 's/^/   /'
      echo "   migration to pebble: $(echo "$(date +%s.%N) - $t0" | bc) s; $(du -sh "$WORK/$1/index.pebble" | cut -f1) index, $(du -sh "$WORK/$1/vindex.pebble" | cut -f1) map (bbolt: $(du -sh "$WORK/$1/index.db.bbolt-old" | cut -f1), $(du -sh "$WORK/$1/vindex.db.bbolt-old" | cut -f1))"
      rm -f "$WORK/$1"/*.bbolt-old
    fi
    ledger "$1" "$WORK/$1" "$(engine_of "$1")"
    if [[ $WARM -gt 0 ]]; then
      echo "   warming $1: $WARM statements, untimed"
      "$BIN/ingestgen" "${KEYGEN[@]}" -name warm -url "${URL_OF[$1]}" -c "$((WARM < 1024 ? WARM : 1024))" -n "$WARM" |
        awk -F'\t' '{printf "   warm-up: %s stmts/s, errors %s\n", $2, $5}' # ingestgen needs N >= its clients
    fi ;;
  esac
}

echo "== servers"
ROWS=(tessera)
for e in $ENGINES; do
  sfx=; [[ $e == pebble ]] && sfx=-pebble
  for row in "ledger$sfx" ${BIG:+"ledger-big$sfx"}; do
    [[ -n ${BASELINE:-} ]] && ROWS+=("$row@base")
    ROWS+=("$row")
  done
done
for row in "${ROWS[@]}"; do fresh "$row"; done

echo "== ingest: $N statements per row and round, $ROUNDS rounds, load $(cut -d' ' -f1-3 /proc/loadavg)"
RESULTS=$WORK/results.tsv
for r in $(seq 1 "$ROUNDS"); do
  ORDER=("${ROWS[@]}")
  if ((r % 2 == 0)); then # a row and its @base twin swap places every other round
    for i in "${!ORDER[@]}"; do
      if [[ ${ROWS[i]} == *@base ]]; then ORDER[i]=${ROWS[i + 1]} ORDER[i + 1]=${ROWS[i]}; fi
    done
  fi
  for c in $C; do
    for row in "${ORDER[@]}"; do
      fresh "$row" # tessera and ledger start empty at every step; ledger-big keeps growing by N (small beside BIG)
      "$BIN/ingestgen" "${KEYGEN[@]}" -name "$row c=$c" -url "${URL_OF[$row]}" -c "$c" -n "$N" -pid "${PID_OF[$row]}" | tee -a "$RESULTS" |
        awk -F'\t' -v r="$r" '{printf "   round %s  %-26s %6s stmts/s  p50 %7s ms  p99 %7s ms  errors %s  server %5s µs/stmt  generator %3s µs/stmt\n", r, $1, $2, $3, $4, $5, $6, $7}'
    done
  done
done
echo "== medians over $ROUNDS rounds (load $(cut -d' ' -f1-3 /proc/loadavg))"
sort -t$'\t' -k1,1 "$RESULTS" | awk -F'\t' '
  function med(s,   a, n, i, j, x) { # insertion sort: asort is gawk'\''s, and Debian'\''s awk is mawk
    n = split(s, a, " ")
    for (i = 2; i <= n; i++) { x = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > x; j--) a[j+1] = a[j]; a[j+1] = x }
    return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
  }
  { k = $1; rate[k] = rate[k] " " $2; p50[k] = p50[k] " " $3; p99[k] = p99[k] " " $4; cpu[k] = cpu[k] " " $6; gen[k] = gen[k] " " $7; errs[k] += $5 }
  END {
    printf "| %-26s | %10s | %8s | %8s | %14s | %11s | %6s |\n", "row", "stmts/s", "p50 ms", "p99 ms", "server µs/stmt", "gen µs/stmt", "errors"
    for (k in rate) printf "| %-26s | %10.0f | %8.1f | %8.1f | %14.0f | %11.0f | %6d |\n", k, med(rate[k]), med(p50[k]), med(p99[k]), med(cpu[k]), med(gen[k]), errs[k]
  }'
