#!/usr/bin/env bash
# The two index engines of a POSIX ledger side by side, on what ingest
# (bench/ingest-bench.sh) does not measure: start-up, memory, and the
# lookups a verify makes. It backs notarize-ledger's default engine for new
# data directories (pebble since round seventeen; docs/BENCHMARKS.md).
#
# Rows, for each engine (bbolt, pebble), alternated for ROUNDS rounds:
#   empty  a new data directory: time from exec to the first /checkpoint
#          answer, and RSS then
#   big    with BIG=DIR (a bbolt ledger, e.g. bench/fill1m's; its
#          summary.json beside it names the subject, key and verifier):
#          copied once per engine (the pebble copy migrated with
#          notarize-ledger migrate-index), then per round: start-up, RSS,
#          and R lookups each of a signed digest (hit), of a digest no
#          one signed (miss) and of a new unsigned digest each time (vary:
#          many images, whose proofs take different paths in the map) by
#          bench/currentprof -verify, the call
#          `docker notarize verify` makes (a fresh client per lookup, the
#          current statement and the key's revocations proven complete
#          against the map); median wall per lookup, the ledger's CPU per
#          lookup (/proc), and its RSS after.
# With BASELINE=REF each engine also runs notarize-ledger built from REF
# (rows ENGINE@base, on the same copies, alternated with this tree's, the
# order reversed every other round): before and after a change, in one
# run. "RSS after" is the ledger's after all of a round's lookups.
# The binaries are built as the Makefile ships them (CGO_ENABLED=0).
#
# Usage: bench/engine-bench.sh      (BIG=DIR ROUNDS=3 R=200 BASELINE=REF ENGINES=pebble to tune)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/notarize-engines.XXXXXX")
. "$ROOT/bench/lib.sh"
BIN=$WORK/bin
ROUNDS=${ROUNDS:-3}
R=${R:-200}
BIG=${BIG:-}
ENGINES=${ENGINES:-bbolt pebble}
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
PIDS=()
mkdir -p "$BIN" "$WORK/logs"

trap cleanup EXIT INT TERM # bench/lib.sh

if [[ -n $BIG ]]; then
  SUMMARY=$BIG/../summary.json
  [[ -f $SUMMARY ]] || { echo "BIG=$BIG: no summary.json beside it (bench/fill1m writes one)" >&2; exit 1; }
  json() { sed -n 's/.*"'"$1"'":"\{0,1\}\([^",}]*\).*/\1/p' "$SUMMARY"; }
  SUBJECT=$(json subject) KEYID=$(json testKeyID) VKEY=$(json verifierKey)
  MISS=sha256:$(head -c 32 /dev/urandom | sha256sum | cut -d' ' -f1)
fi

echo "== build"
(cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -o "$BIN/" ./cmd/notarize-ledger ./bench/currentprof)
VARIANTS=$ENGINES
if [[ -n ${BASELINE:-} ]]; then
  build_baseline "$BASELINE"
  VARIANTS=$(for e in $ENGINES; do echo "$e@base $e"; done)
fi
engine() { echo "${1%@base}"; }                                            # engine VARIANT

rss_mb() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' /proc/"$1"/status; }

# start NAME DATA VARIANT: starts notarize-ledger (VARIANT: an engine, or
# ENGINE@base for the BASELINE build), sets URL, LPID and UP
# (seconds from exec to the first /checkpoint answer).
start() {
  local port try t0 _
  for try in 1 2 3; do # another process may take the free port first
    port=$(free_port)
    t0=$(date +%s.%N)
    "$(ledger_bin "$3")" --data "$2" --addr "127.0.0.1:$port" --index-engine "$(engine "$3")" --log-level warn >"$WORK/logs/$1.log" 2>&1 &
    LPID=$!
    PIDS+=("$LPID")
    for _ in $(seq 1 6000); do # every 10 ms (wait_http's 100 ms would be the resolution)
      if curl -fsS -o /dev/null "http://127.0.0.1:$port/checkpoint" 2>/dev/null; then
        UP=$(printf '%.3f' "$(echo "$(date +%s.%N) - $t0" | bc)")
        URL=http://127.0.0.1:$port
        return 0
      fi
      kill -0 "$LPID" 2>/dev/null || break
      sleep 0.01
    done
    echo "   $1 did not start on port $port (try $try): $(tail -1 "$WORK/logs/$1.log")"
  done
  exit 1
}
stop() { kill -TERM "$LPID"; wait "$LPID" 2>/dev/null || true; }

# lookups NAME DIGEST: R verify lookups of DIGEST; prints the median wall
# (ms) and the ledger's CPU per lookup (µs).
lookups() {
  local c0 c1 out
  c0=$(cpu_ns "$LPID")
  out=$("$BIN/currentprof" -url "$URL" -key "$VKEY" -digest "$2" -keyid "$KEYID" -r "$R" -verify 2>&1) ||
    { echo "$1: currentprof failed: $out" >&2; exit 1; }
  c1=$(cpu_ns "$LPID")
  echo "$(sed -n 's/.*: median \([0-9.]*\) ms.*/\1/p' <<<"$out") $(((c1 - c0) / R / 1000))"
}

if [[ -n $BIG ]]; then
  echo "== copies of $BIG ($(du -sh "$BIG" | cut -f1))"
  for e in $ENGINES; do
    cp -r "$BIG" "$WORK/big-$e"
    if [[ $e == pebble ]]; then
      "$BIN/notarize-ledger" migrate-index --data "$WORK/big-$e" --to pebble | sed 's/^/   /'
      rm -rf "$WORK/big-$e"/*.bbolt-old
    fi
    echo "   $e: $(du -sh "$WORK/big-$e" | cut -f1)"
  done
fi

RESULTS=$WORK/results.tsv
echo "== $ROUNDS rounds, load $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$ROUNDS"); do
  order=$VARIANTS
  ((r % 2)) || order=$(tac <<<"$(tr ' ' '\n' <<<"$VARIANTS")") # every other round in reverse: neither runs first always
  for e in $order; do
    rm -rf "$WORK/empty-$e"
    start "empty-$e" "$WORK/empty-$e" "$e"
    printf 'empty\t%s\t%s\t%s\n' "$e" "$UP" "$(rss_mb "$LPID")" | tee -a "$RESULTS" |
      awk -F'\t' -v r="$r" '{printf "   round %s  empty %-6s  start-up %.3f s  RSS %s MB\n", r, $2, $3, $4}'
    stop
    [[ -z $BIG ]] && continue
    start "big-$e" "$WORK/big-$(engine "$e")" "$e"
    up=$UP rss0=$(rss_mb "$LPID")
    res=$(lookups "big-$e hit" "$SUBJECT") # not `res=$(…) && read`: set -e must see a failure
    read -r hit hitcpu <<<"$res"
    res=$(lookups "big-$e miss" "$MISS")
    read -r miss misscpu <<<"$res"
    res=$(lookups "big-$e vary" random)
    read -r vary varycpu <<<"$res"
    printf 'big\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$e" "$up" "$rss0" "$hit" "$hitcpu" "$miss" "$misscpu" "$(rss_mb "$LPID")" "$vary" "$varycpu" | tee -a "$RESULTS" |
      awk -F'\t' -v r="$r" '{printf "   round %s  big   %-6s  start-up %.3f s  RSS %s MB  hit %s ms (%s µs ledger CPU)  miss %s ms (%s µs)  vary %s ms (%s µs)  RSS after %s MB\n", r, $2, $3, $4, $5, $6, $7, $8, $10, $11, $9}'
    stop
  done
done

echo "== medians of $ROUNDS rounds"
median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
col() { awk -F'\t' -v k="$1" -v e="$2" -v c="$3" '$1 == k && $2 == e {print $c}' "$RESULTS" | median; }
printf '| row | engine | start-up s | RSS MB | hit ms | hit ledger µs | miss ms | miss ledger µs | vary ms | vary ledger µs | RSS after MB |\n|---|---|---|---|---|---|---|---|---|---|---|\n'
for e in $VARIANTS; do
  printf '| empty | %s | %s | %s | | | | | | | |\n' "$e" "$(col empty "$e" 3)" "$(col empty "$e" 4)"
done
if [[ -n $BIG ]]; then
  for e in $VARIANTS; do
    printf '| big | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$e" "$(col big "$e" 3)" "$(col big "$e" 4)" "$(col big "$e" 5)" \
      "$(col big "$e" 6)" "$(col big "$e" 7)" "$(col big "$e" 8)" "$(col big "$e" 10)" "$(col big "$e" 11)" "$(col big "$e" 9)"
  done
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
