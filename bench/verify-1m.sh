#!/usr/bin/env bash
# Whole-process `docker-notarize verify IMAGE` on a 1,000,000-entry ledger,
# with the verifiable index and without it (issue 11's cost bound: with the
# map, verify stays within 1.2x of its time without it). All on loopback.
#
# Rows of ONE hyperfine run (each row's ledger is started by hyperfine's
# --setup and stopped by its --cleanup; one ledger runs at a time):
#   map      notarize-ledger and docker-notarize of REF (default HEAD) on the
#            1M ledger: a current lookup with its map proof, the root entry's
#            inclusion, and the tail after the newest root (the root alone
#            on an idle ledger)
#   nomap    the same ledger data served by REF's notarize-ledger built with
#            the map off, and verified by REF's docker-notarize built without
#            the completeness step: REF minus the map, nothing else (see
#            patch_nomap below; a client of the commit before the map,
#            47b1610^, would also lack 100+ later start-up changes)
#   small    map binaries on a 1,000-entry ledger (size sensitivity)
# Then the tail case, a second hyperfine run: map, nomap and strict while a
# feeder submits TAIL_RATE statements/s over HTTP (the tail after the newest
# map root then holds up to ~1,024 entries: a root is committed every 1,024
# entries or 2 s); a sampler records the tail length seen by lookups. The
# map row's client takes a recent root as the proof (--max-index-lag, 10 s
# by default: the anchored check, no tail read); the strict row's is REF's
# client with the default set to 0, reading the whole tail.
#
# The ledgers are built once per ledger format, in-process by bench/fill1m
# (ledger.New on POSIX storage, statements signed by KEYS keys, submitted
# through Ledger.Submit, the map folded and committed by the ledger's own
# follower), and kept in ${NOTARIZE_BENCH_1M:-~/.cache/notarize/bench-1m}/KEY
# (KEY: the git blobs of the on-disk format's code at REF and the image
# digest). The 1M build takes ~10-20 minutes of both cores; it runs under
# nice -n 10 with CLIENTS concurrent submissions. REBUILD=1 builds again.
# The tail case appends to the cached 1M ledger (a few thousand entries per
# run).
#
# Usage: bench/verify-1m.sh        (RUNS=40 WARMUP=5 TAIL_RATE=600 N=1000000
#                                   KEYS=300 SMALL_N=1000 CLIENTS=128 REF=HEAD
#                                   SKIP_TAIL=1 PROFILE_RUNS=100 to tune;
#                                   CADENCE=256,500ms adds a tail row whose
#                                   ledger commits map roots at that cadence;
#                                   PROFILE_DIR=D keeps CPU profiles of the
#                                   lookups, from bench/currentprof;
#                                   PROFILE_VERIFY=1 profiles verify's own
#                                   call, CurrentWithRevocations)
# Prints a table: median, mean, σ per row, map/nomap ratios (the bound is
# <= 1.2x), the load average before and after.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
REF=${REF:-HEAD}
N=${N:-1000000}
KEYS=${KEYS:-300}
SMALL_N=${SMALL_N:-1000}
CLIENTS=${CLIENTS:-128}
RUNS=${RUNS:-40}
WARMUP=${WARMUP:-5}
TAIL_RATE=${TAIL_RATE:-600}
PROFILE_RUNS=${PROFILE_RUNS:-100}
CACHE=${NOTARIZE_BENCH_1M:-$HOME/.cache/notarize/bench-1m}
TOOLS=${NOTARIZE_BENCH_CACHE:-$HOME/.cache/notarize-bench}/bin
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/notarize-v1m.XXXXXX")
. "$ROOT/bench/lib.sh"
BIN=$WORK/bin
PIDS=()
mkdir -p "$BIN/map" "$BIN/nomap" "$CACHE" "$TOOLS" "$WORK/logs" "$WORK/rows"

cleanup() {
  local rc=$?
  set +e
  [[ -x $WORK/ctl.sh ]] && "$WORK/ctl.sh" stop
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  git -C "$ROOT" worktree remove --force "$WORK/src" 2>/dev/null
  [[ $rc -eq 0 ]] && rm -rf "$WORK" || echo "logs kept in $WORK/logs"
  exit $rc
}
trap cleanup EXIT INT TERM

# patch_nomap turns the verifiable index off in a source tree: the ledger
# starts no map follower (its answers carry no map proof, as before the
# map) and the client skips the completeness step (verifyComplete). Each
# edit must apply exactly once, or the script stops.
patch_nomap() {
  local src=$1
  perl -0pi -e 's/(func \(l \*Ledger\) startMap\([^)]*\) error \{\n\tif )l\.cfg\.noMap( \{)/${1}true${2}/ or die "ledger/vindex.go: startMap not found\n"' "$src/ledger/vindex.go"
  perl -0pi -e 's/(func \(c \*Client\) verifyComplete\([^\n]*\) \(Completeness, error\) \{\n)/${1}\tif true {\n\t\treturn Completeness{}, nil \/\/ bench: no completeness step\n\t}\n/ or die "ledgerclient/vindex.go: verifyComplete not found\n"' "$src/ledgerclient/vindex.go"
  perl -0pi -e 's/(func \(c \*Client\) verifyLookupComplete\([^\n]*\) \(Completeness, error\) \{\n)/${1}\tif true {\n\t\treturn Completeness{}, nil \/\/ bench: no completeness step (verify'"'"'s revocation lookups)\n\t}\n/ or die "ledgerclient/vindex.go: verifyLookupComplete not found\n"' "$src/ledgerclient/vindex.go"
}

REV=$(git -C "$ROOT" rev-parse --short "$REF")
echo "== build ($REF, $REV)"
git -C "$ROOT" worktree add --detach "$WORK/src" "$REV" >/dev/null 2>&1
(cd "$WORK/src" && go build -trimpath -ldflags '-s -w' -o "$BIN/map/" ./cmd/notarize-ledger ./cmd/docker-notarize ./bench/fill1m ./bench/currentprof)
if [[ -n ${CADENCE:-} ]]; then # CADENCE=ENTRIES,INTERVAL: a ledger committing map roots at another cadence (tail-cadence row)
  mkdir -p "$BIN/cadence"
  perl -0pi -e 's/(DefaultMapCommitEntries\s*=\s*)1024/${1}'"${CADENCE%,*}"'/ or die "DefaultMapCommitEntries not found\n"; s/(DefaultMapCommitInterval\s*=\s*)2 \* time.Second/${1}'"$(echo "${CADENCE#*,}" | sed 's/ms$/ * time.Millisecond/; s/s$/ * time.Second/')"'/ or die "DefaultMapCommitInterval not found\n"' "$WORK/src/ledger/vindex.go"
  (cd "$WORK/src" && go build -trimpath -ldflags '-s -w' -o "$BIN/cadence/" ./cmd/notarize-ledger)
  git -C "$WORK/src" checkout -q -- ledger/vindex.go
fi
# strict: REF's docker-notarize reading every tail, as --max-index-lag 0 (the
# tail-strict row; a flag would need a wrapper process in hyperfine's -N runs).
perl -0pi -e 's/(const DefaultMaxIndexLag = )2 \* api.AnchorMaxAge/${1}0 * api.AnchorMaxAge/ or die "DefaultMaxIndexLag not found\n"' "$WORK/src/ledgerclient/config.go"
(cd "$WORK/src" && go build -trimpath -ldflags '-s -w' -o "$BIN/strict/" ./cmd/docker-notarize ./bench/currentprof)
git -C "$WORK/src" checkout -q -- ledgerclient/config.go
patch_nomap "$WORK/src"
(cd "$WORK/src" && go build -trimpath -ldflags '-s -w' -o "$BIN/nomap/" ./cmd/notarize-ledger ./cmd/docker-notarize ./bench/currentprof)
# The cache key: the code that decides what the ledger holds on disk (the
# POSIX driver, the map's tree and store, the entry formats, Tessera's version) and
# FILL_VERSION, raised when bench/fill1m changes what it logs.
FILL_VERSION=1
FORMAT=$({ git -C "$ROOT" ls-tree -r "$REV" -- vindex ledger/storage/posix notarize/entry.go notarize/statement.go notarize/maproot.go ledger/mapstore_bolt.go |
  grep -v '_test.go'; grep 'transparency-dev/tessera ' "$WORK/src/go.mod"; echo "fill $FILL_VERSION $N $KEYS $SMALL_N"; } | sha256sum | cut -c1-12)
git -C "$ROOT" worktree remove --force "$WORK/src"
if [[ ! -x $TOOLS/crane ]]; then
  echo "   building crane (once)"
  GOBIN=$TOOLS GOFLAGS=-trimpath go install github.com/google/go-containerregistry/cmd/crane@v0.22.1
fi
if ! command -v hyperfine >/dev/null && [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
  echo "   installing hyperfine (apt)"
  apt-get install -y -qq hyperfine >/dev/null 2>&1 || echo "   apt-get install hyperfine failed: timing with a shell loop"
fi
export PATH=$TOOLS:$PATH

REG_PORT=$(free_port); LEDGER_PORT=$(free_port)
crane registry serve --address "127.0.0.1:$REG_PORT" >"$WORK/logs/registry.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$REG_PORT/v2/"

echo "== image"
IMAGE=127.0.0.1:$REG_PORT/bench/app:v1
if [[ ! -s $CACHE/image.tar ]]; then # made once: every ledger below holds statements about its digest
  mkdir -p "$WORK/layer/etc"; echo bench-1m >"$WORK/layer/etc/bench"
  tar -C "$WORK/layer" -cf "$WORK/layer.tar" .
  crane append --insecure -f "$WORK/layer.tar" -t "$IMAGE" >/dev/null
  crane pull --insecure "$IMAGE" "$CACHE/image.tar.new" && mv "$CACHE/image.tar.new" "$CACHE/image.tar"
fi
crane push --insecure "$CACHE/image.tar" "$IMAGE" >/dev/null 2>&1
DIGEST=$(crane digest --insecure "$IMAGE")
echo "   $IMAGE = $DIGEST"

KEY=${CACHE_KEY:-$FORMAT-$(echo "$DIGEST" | cut -c8-19)} # CACHE_KEY=DIR reuses a ledger built by an earlier REF
# ledger NAME SIZE: the cached ledger of SIZE statements, built when missing.
ledger() {
  local name=$1 size=$2 dir=$CACHE/$KEY/$1
  if [[ -n ${REBUILD:-} && ! -e $WORK/rebuilt-$name ]]; then rm -rf "$dir"; touch "$WORK/rebuilt-$name"; fi
  if [[ ! -s $dir/summary.json ]]; then
    echo "   building the $name ledger: $size statements by $KEYS keys, $CLIENTS clients, nice -n 10 (load: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    rm -rf "$dir.tmp"; mkdir -p "$dir.tmp"
    local t0=$SECONDS
    GOGC=${GOGC:-400} nice -n 10 "$BIN/map/fill1m" -dir "$dir.tmp/data" -n "$size" -keys "$KEYS" -clients "$CLIENTS" \
      -subject "$DIGEST" -pub "$dir.tmp/test.pub" >"$dir.tmp/summary.json" 2> >(tee "$WORK/logs/fill-$name.log" >&2)
    echo "   built in $((SECONDS - t0)) s: $(cat "$dir.tmp/summary.json")" >&2
    rm -rf "$dir"; mv "$dir.tmp" "$dir"
  fi
  echo "$dir"
}
echo "== ledgers (cache $CACHE/$KEY)"
BIG=$(ledger big "$N")
SMALL=$(ledger small "$SMALL_N")
echo "   1M ledger: $(du -sh "$BIG/data" | cut -f1) on disk, $(jq -r .size "$BIG/summary.json") entries when built"

# ctl.sh start ROW | stop: the ledger (and, for tail rows, the feeder and
# the tail sampler) of one row; hyperfine's --setup and --cleanup call it.
cat >"$WORK/ctl.sh" <<EOF
#!/usr/bin/env bash
set -euo pipefail
W=$WORK
stop() {
  for f in "\$W"/run/*.pid; do
    [[ -e \$f ]] || continue
    pid=\$(cat "\$f"); rm -f "\$f"
    kill -TERM "\$pid" 2>/dev/null || continue
    for _ in \$(seq 1 600); do kill -0 "\$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "\$pid" 2>/dev/null || true # a ledger still draining after 60 s
    for _ in \$(seq 1 50); do kill -0 "\$pid" 2>/dev/null || break; sleep 0.1; done
  done
}
case \$1 in
stop) stop ;;
start)
  stop
  row=\$2; mkdir -p "\$W/run"
  case \$row in
  map|tail-map|tail-strict) bin=$BIN/map data=$BIG/data ;;
  tail-cadence) bin=$BIN/cadence data=$BIG/data ;;
  nomap|tail-nomap) bin=$BIN/nomap data=$BIG/data ;;
  small) bin=$BIN/map data=$SMALL/data ;;
  *) echo "unknown row \$row" >&2; exit 2 ;;
  esac
  ln -sfn "\$W/rows/\$row/home" "\$W/home"
  setsid "\$bin/notarize-ledger" --addr 127.0.0.1:$LEDGER_PORT --data "\$data" --log-level warn \\
    --rate-key 0 --rate-client 0 --rate-key-digest 0 >>"\$W/logs/ledger-\$row.log" 2>&1 </dev/null &
  echo \$! >"\$W/run/ledger.pid"
  for _ in \$(seq 1 600); do curl -fsS -o /dev/null http://127.0.0.1:$LEDGER_PORT/api/v1/info 2>/dev/null && break; sleep 0.1; done
  curl -fsS -o /dev/null http://127.0.0.1:$LEDGER_PORT/api/v1/info
  if [[ \$row == tail-* ]]; then
    setsid nice -n 5 $BIN/map/fill1m -submit http://127.0.0.1:$LEDGER_PORT -rate $TAIL_RATE -clients 256 -keys 50 \\
      >>"\$W/logs/feed-\$row.log" 2>&1 </dev/null &
    echo \$! >"\$W/run/feed.pid"
    setsid "\$W/sample.sh" "\$row" >>"\$W/logs/tail-\$row.tsv" 2>/dev/null </dev/null &
    echo \$! >"\$W/run/sample.pid"
    sleep 5 # the feed reaches its rate and the tail its steady range
  elif [[ \$row == nomap ]]; then
    sleep 3
  else # a tail left by an earlier run is folded and its root committed (every 2 s): wait for the root to be the last entry
    kid=\$(jq -r .testKeyID "\$data/../summary.json")
    for _ in \$(seq 1 300); do
      t=\$(curl -fsS "http://127.0.0.1:$LEDGER_PORT/api/v1/digests/$DIGEST/current?keyid=\$kid" 2>/dev/null |
        jq -r '(.checkpoint | split("\\n")[1] | tonumber) - (.map.rootIndex // -2) - 1' 2>/dev/null || echo x)
      [[ \$t == 0 ]] && break
      sleep 0.2
    done
  fi
  ;;
esac
EOF
chmod +x "$WORK/ctl.sh"

# sample.sh ROW: every 0.3 s, the tail a current lookup of the subject sees:
# checkpoint size - the size the map root covers (its entry's third line; 0
# when the root entry is the log's last), or the size (nomap).
TEST_KEY_ID=$(jq -r .testKeyID "$BIG/summary.json")
cat >"$WORK/sample.sh" <<EOF
#!/usr/bin/env bash
while :; do
  curl -fsS "http://127.0.0.1:$LEDGER_PORT/api/v1/digests/$DIGEST/current?keyid=$TEST_KEY_ID" 2>/dev/null |
    jq -r '[(.checkpoint | split("\n")[1] | tonumber), (.map.rootIndex // -1), (if .map.rootEntry then (.map.rootEntry | @base64d | split("\n")[2] | tonumber) else -1 end)] | "\(.[0])\t\(.[1])\t\(if .[1] < 0 then .[0] elif .[0] == .[1] + 1 and .[2] == .[1] then 0 else .[0] - .[2] end)"' || true
  sleep 0.3
done
EOF
chmod +x "$WORK/sample.sh"

echo "== client homes (the test key imported, the ledger key pinned), and one verify per row"
export NOTARIZE_HOME=$WORK/home NOTARIZE_LEDGER=http://127.0.0.1:$LEDGER_PORT DOCKER_CONFIG=$WORK/docker
ROWS=(map nomap small)
TAIL_ROWS=(tail-map tail-nomap tail-strict)
[[ -n ${CADENCE:-} ]] && TAIL_ROWS+=(tail-cadence)
[[ -n ${SKIP_TAIL:-} ]] && TAIL_ROWS=()
for row in "${ROWS[@]}" "${TAIL_ROWS[@]}"; do
  case $row in *nomap) b=$BIN/nomap ;; *strict) b=$BIN/strict ;; *) b=$BIN/map ;; esac
  case $row in small) l=$SMALL ;; *) l=$BIG ;; esac
  mkdir -p "$WORK/rows/$row/home"
  install -m 0755 "$b/docker-notarize" "$WORK/rows/$row/docker-notarize"
  "$WORK/ctl.sh" start "$row"
  d=$WORK/rows/$row/docker-notarize
  "$d" key import release "$l/test.pub" >/dev/null
  "$d" ledger trust "$NOTARIZE_LEDGER" --key "$(jq -r .verifierKey "$l/summary.json")" >/dev/null
  if ! "$d" verify "$IMAGE" >"$WORK/logs/check-$row.log" 2>&1; then
    echo "$row: verify failed (a change of the ledger's or the map's format? REBUILD=1 builds the ledgers again; notarize-ledger map-rebuild --data DIR folds the map again):" >&2; cat "$WORK/logs/check-$row.log" >&2; exit 1
  fi
  echo "   $row: $(head -1 "$WORK/logs/check-$row.log")"
  "$WORK/ctl.sh" stop
done

RESULTS=$WORK/results.tsv
: >"$RESULTS"
# timing NAME ROW...: one hyperfine run over ROWs (median, mean, σ in ms).
timing() {
  local name=$1; shift
  local rows; rows=$(IFS=,; echo "$*")
  if command -v hyperfine >/dev/null; then
    hyperfine -N -w "$WARMUP" -r "$RUNS" -L row "$rows" \
      --setup "$WORK/ctl.sh start {row}" --cleanup "$WORK/ctl.sh stop" \
      --export-json "$WORK/$name.json" -n '{row}' "$WORK/rows/{row}/docker-notarize verify $IMAGE" >"$WORK/logs/hyperfine-$name.log"
    jq -r '.results[] | [.command, (.median * 1000), (.mean * 1000), (.stddev * 1000)] | @tsv' "$WORK/$name.json" >>"$RESULTS"
  else
    for row in "$@"; do
      "$WORK/ctl.sh" start "$row"
      for _ in $(seq "$WARMUP"); do "$WORK/rows/$row/docker-notarize" verify "$IMAGE" >/dev/null 2>&1; done
      ts=()
      for _ in $(seq "$RUNS"); do
        s=$(date +%s%N); "$WORK/rows/$row/docker-notarize" verify "$IMAGE" >/dev/null 2>&1; e=$(date +%s%N); ts+=($(((e - s) / 1000)))
      done
      "$WORK/ctl.sh" stop
      printf '%s\n' "${ts[@]}" | sort -n | awk -v k="$row" '{a[NR] = $1 / 1000; s += a[NR]; q += a[NR] * a[NR]}
        END {m = s / NR; printf "%s\t%f\t%f\t%f\n", k, a[int((NR + 1) / 2)], m, sqrt(q / NR - m * m)}' >>"$RESULTS"
    done
  fi
}

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== timing: ${ROWS[*]} ($RUNS runs each after $WARMUP warm-ups, one hyperfine run; load $LOAD0)"
timing rows "${ROWS[@]}"
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
if ((${#TAIL_ROWS[@]})); then
  echo "== timing: ${TAIL_ROWS[*]} (while the ledger ingests $TAIL_RATE statements/s; load $LOAD1)"
  timing tail "${TAIL_ROWS[@]}"
fi
LOAD2=$(cut -d' ' -f1-3 /proc/loadavg)

echo "== results ($REV; ledgers of $(jq -r .size "$BIG/summary.json") entries when built (plus earlier tail runs') and $(jq -r .size "$SMALL/summary.json"))"
awk -F'\t' '{printf "   %-12s median %7.1f ms  mean %7.1f ms  σ %5.1f ms\n", $1, $2, $3, $4}' "$RESULTS"
awk -F'\t' '{m[$1] = $2}
  END {
    printf "   map / nomap             %5.2fx   (bound <= 1.2x)\n", m["map"] / m["nomap"]
    printf "   map 1M / map 1k         %5.2fx   (size sensitivity)\n", m["map"] / m["small"]
    if ("tail-map" in m)
      printf "   tail: map / nomap       %5.2fx   (while ingesting; bound <= 1.2x)\n", m["tail-map"] / m["tail-nomap"]
    if ("tail-strict" in m)
      printf "   tail: strict / nomap    %5.2fx   (--max-index-lag 0: the whole tail read)\n", m["tail-strict"] / m["tail-nomap"]
    if ("tail-cadence" in m)
      printf "   tail: cadence / nomap   %5.2fx   (map roots every %s)\n", m["tail-cadence"] / m["tail-nomap"], cadence
  }' cadence="${CADENCE:-}" "$RESULTS"
for row in "${TAIL_ROWS[@]}"; do
  f=$WORK/logs/tail-$row.tsv
  [[ $row != tail-nomap && -s $f ]] || continue # a nomap ledger has no root: its "tail" is the whole log
  cut -f3 "$f" | sort -n | awk -v r="$row" '{a[NR] = $1} END {printf "   %s: tail after the newest map root, %d samples: min %d, median %d, max %d entries\n", r, NR, a[1], a[int((NR + 1) / 2)], a[NR]}'
done
for row in "${TAIL_ROWS[@]}"; do
  grep -h 'fed' "$WORK/logs/feed-$row.log" 2>/dev/null | tail -1 | sed "s/^/   $row: /"
done
echo "   load average: before $LOAD0, after the rows $LOAD1, after the tail $LOAD2; $(nproc) cores"
if ((${#TAIL_ROWS[@]})); then
  # Where a lookup's time goes, in-process (bench/currentprof: the client's
  # Current, the call verify makes), same conditions as the tail rows.
  echo "== where the time goes: ledgerclient Current x $PROFILE_RUNS per row, requests timed by kind${PROFILE_DIR:+, CPU profiles in $PROFILE_DIR}"
  for row in "${ROWS[@]:0:2}" "${TAIL_ROWS[@]}"; do
    case $row in *nomap) b=$BIN/nomap ;; *strict) b=$BIN/strict ;; *) b=$BIN/map ;; esac
    "$WORK/ctl.sh" start "$row"
    "$b/currentprof" -url "$NOTARIZE_LEDGER" -key "$(jq -r .verifierKey "$BIG/summary.json")" -digest "$DIGEST" -keyid "$TEST_KEY_ID" \
      -r "$PROFILE_RUNS" ${PROFILE_VERIFY:+-verify} ${PROFILE_DIR:+-cpuprofile "$PROFILE_DIR/current-$row.pprof"} 2>&1 | sed "s/^/   $row: /" || echo "   $row: currentprof failed"
    "$WORK/ctl.sh" stop
  done
fi
