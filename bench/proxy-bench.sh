#!/usr/bin/env bash
# Side-by-side benchmark, one run, all on loopback:
#   direct      distribution's registry (v3.1.2) serving the image
#   notarize    notarize-proxy in front of it (verifies and decides every manifest)
#   dist-proxy  distribution's own pull-through cache (proxy.remoteurl) in front
#               of it, which checks nothing
# Manifest GETs by tag and by digest (requests/s, p50, p99), and blob throughput
# cold (first pull, through the cache fill) and warm. Then the Go benchmarks of
# the replica (decision cost with 1,000,000 statements, catch-up speed).
#
# The fleet rows (issue 15; FLEET=0 skips them) put the blob caches in S3
# buckets on one local S3 server, versitygw (scripts/versitygw.sh; built once):
#   notarize-s3       notarize-proxy A with storage: s3 (streams)
#   notarize-s3-b     notarize-proxy B on A's bucket: its cold pull is its first
#                     pull of a blob A cached, read from the bucket (re-hashed);
#                     the script checks that B made no upstream blob GET
#   notarize-s3-redir notarize-proxy C on the bucket with redirect: {disable:
#                     false}: blobs answered with a 307 to a presigned URL
#   dist-proxy-s3     distribution's pull-through cache with storage: s3
#
# Usage: bench/proxy-bench.sh        (C=16 D=5s BLOB_MB=256 SKIP_GO=1 FLEET=0 MANIFESTS=0 PERF=DIR
#                                    CLIENTS="bytes verify crane containerd" ROUNDS=1 to tune; needs curl and jq;
#                                    the containerd client needs root)
# Each cold pull also prints the CPU seconds per GB of the serving process
# and of the upstream (from /proc), which a loaded machine changes less than
# the throughput.
# distribution's registry is built once with `go install …@v3.1.2` into
# ${NOTARIZE_BENCH_CACHE:-~/.cache/notarize-bench}/bin (a few minutes the first time).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/notarize-bench.XXXXXX")
. "$ROOT/bench/lib.sh"
CACHE=${NOTARIZE_BENCH_CACHE:-$HOME/.cache/notarize-bench}
BIN=$WORK/bin
C=${C:-16}
D=${D:-5s}
BLOB_MB=${BLOB_MB:-256}
export BLOB_MB
export GOTOOLCHAIN=${GOTOOLCHAIN:-local} OTEL_TRACES_EXPORTER=none
PIDS=()
declare -A METRICS=()
mkdir -p "$BIN" "$CACHE/bin" "$WORK/logs"

trap cleanup EXIT INT TERM # bench/lib.sh
declare -A PID_OF=()
start() { local n=$1; shift; "$@" >"$WORK/logs/$n.log" 2>&1 & PIDS+=($!); PID_OF[$n]=$!; }

echo "== build"
(cd "$ROOT" && go build -o "$BIN/" ./cmd/notarize-ledger ./cmd/notarize-proxy ./cmd/docker-notarize \
  && go build -o "$BIN/crane" github.com/google/go-containerregistry/cmd/crane \
  && go build -o "$BIN/loadgen" bench/loadgen.go)
if [[ ! -x $CACHE/bin/registry ]]; then
  echo "   building distribution's registry v3.1.2 (once)"
  GOBIN=$CACHE/bin GOFLAGS=-mod=mod go install github.com/distribution/distribution/v3/cmd/registry@v3.1.2
fi
export PATH=$BIN:$PATH

UP_PORT=$(free_port); DP_PORT=$(free_port); NP_PORT=$(free_port); LEDGER_PORT=$(free_port)
regconf() { # regconf PORT DIR [REMOTE]
  cat <<EOF
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $2}, delete: {enabled: false}}
http: {addr: 127.0.0.1:$1}
EOF
  [[ -n ${3:-} ]] && echo "proxy: {remoteurl: $3}"
  return 0
}
regconf "$UP_PORT" "$WORK/up" >"$WORK/up.yml"
regconf "$DP_PORT" "$WORK/dp" "http://127.0.0.1:$UP_PORT" >"$WORK/dp.yml"
start upstream "$CACHE/bin/registry" serve "$WORK/up.yml"
start ledger notarize-ledger --addr "127.0.0.1:$LEDGER_PORT" --data "$WORK/ledger"
wait_http "http://127.0.0.1:$UP_PORT/v2/"
start dist-proxy "$CACHE/bin/registry" serve "$WORK/dp.yml" # pings its remote at start
wait_http "http://127.0.0.1:$DP_PORT/v2/"
wait_http "http://127.0.0.1:$LEDGER_PORT/api/v1/info"

echo "== image, blob of $BLOB_MB MiB, signature"
UP=127.0.0.1:$UP_PORT
mkdir -p "$WORK/layer/etc"; echo bench >"$WORK/layer/etc/bench"
tar -C "$WORK/layer" -cf "$WORK/layer.tar" .
crane append --insecure -f "$WORK/layer.tar" -t "$UP/bench/app:v1" >/dev/null
# One blob per kind of client (CLIENTS) and round (ROUNDS), so that each has
# a cold pull of its own on every target.
if [[ -z ${CLIENTS:-} ]]; then
  CLIENTS="bytes verify crane"
  if [[ $(id -u) == 0 ]] && command -v containerd >/dev/null && command -v ctr >/dev/null; then
    CLIENTS+=" containerd"
  else
    echo "   (no containerd client: it needs root, containerd and ctr)"
  fi
fi
CLIENTS=($CLIENTS)
ROUNDS=${ROUNDS:-1}
for k in "${CLIENTS[@]}"; do
  [[ $k == @(bytes|verify|crane|containerd) ]] || { echo "unknown client kind $k (CLIENTS: bytes verify crane containerd)" >&2; exit 2; }
done
declare -A BLOB_OF=()
for kr in $(for r in $(seq 1 "$ROUNDS"); do for k in "${CLIENTS[@]}"; do echo "$k.$r"; done; done); do
  head -c $((BLOB_MB << 20)) /dev/urandom >"$WORK/blob"
  d=sha256:$(sha256sum "$WORK/blob" | cut -d' ' -f1)
  loc=$(curl -fsS -D - -o /dev/null -X POST "http://$UP/v2/bench/app/blobs/uploads/" | tr -d '\r' | awk -F': ' 'tolower($1)=="location"{print $2}')
  [[ $loc == http* ]] || loc="http://$UP$loc"
  sep='?'; [[ $loc == *\?* ]] && sep='&'
  curl -fsS -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$WORK/blob" "$loc${sep}digest=$d" -o /dev/null
  rm -f "$WORK/blob"
  BLOB_OF[$kr]=$d
done
BLOB=${BLOB_OF[${CLIENTS[0]}.1]}
# The blobs are layers of bench/app:v1: notarize-proxy serves only the blobs
# of a manifest it allowed for the repository (the warm-up pulls it).
crane manifest --insecure "$UP/bench/app:v1" |
  jq -c --argjson s $((BLOB_MB << 20)) --arg ds "${BLOB_OF[*]}" \
    '.layers += [($ds | split(" ")[]) as $d | {mediaType: .layers[0].mediaType, digest: $d, size: $s}]' >"$WORK/manifest.json"
curl -fsS -X PUT -H "Content-Type: $(jq -r .mediaType "$WORK/manifest.json")" --data-binary "@$WORK/manifest.json" \
  "http://$UP/v2/bench/app/manifests/v1" -o /dev/null
DIGEST=$(crane digest --insecure "$UP/bench/app:v1")
# containerd fetches images, not blobs: its blobs are the one layer of an
# image each, tagged containerd.ROUND.
for kr in "${!BLOB_OF[@]}"; do
  [[ $kr == containerd.* ]] || continue
  jq -c --arg d "${BLOB_OF[$kr]}" --argjson s $((BLOB_MB << 20)) '.layers = [{mediaType: .layers[0].mediaType, digest: $d, size: $s}]' \
    "$WORK/manifest.json" >"$WORK/manifest-$kr.json"
  curl -fsS -X PUT -H "Content-Type: $(jq -r .mediaType "$WORK/manifest.json")" --data-binary "@$WORK/manifest-$kr.json" \
    "http://$UP/v2/bench/app/manifests/$kr" -o /dev/null
done
export NOTARIZE_HOME=$WORK/home NOTARIZE_PASSWORD=bench NOTARIZE_LEDGER=http://127.0.0.1:$LEDGER_PORT
docker-notarize key generate --name release >/dev/null
docker-notarize key export release >"$WORK/release.pub"
for tag in v1 $(printf '%s\n' "${!BLOB_OF[@]}" | grep '^containerd\.' || true); do
  docker-notarize sign "$UP/bench/app:$tag" >/dev/null 2>&1
done
printf 'signers: {release: {keys: [release.pub]}}\nrules: [{match: "**", require: [release]}]\n' >"$WORK/policy.yaml"
start notarize-proxy notarize-proxy --addr "127.0.0.1:$NP_PORT" --data "$WORK/np" --upstream "local=http://$UP" \
  --policy "$WORK/policy.yaml" --ledger "$NOTARIZE_LEDGER" --ledger-key "$WORK/ledger/ledger.pub"
wait_http "http://127.0.0.1:$NP_PORT/healthz"

declare -A BASE=([direct]="http://$UP/v2/bench/app" [notarize]="http://127.0.0.1:$NP_PORT/v2/bench/app" [dist-proxy]="http://127.0.0.1:$DP_PORT/v2/bench/app")
ORDER=(direct notarize dist-proxy)
FLEET_ORDER=()
if [[ ${FLEET:-1} != 0 ]]; then
  echo "== fleet: versitygw (S3), three notarize-proxies on one bucket, distribution's pull-through cache on another"
  export S3_ACCESS_KEY=bench S3_SECRET_KEY=bench-local-only
  "$ROOT/scripts/versitygw.sh" install >/dev/null
  S3_PORT=$(free_port)
  S3=$("$ROOT/scripts/versitygw.sh" start "$WORK/s3" "$S3_PORT")
  PIDS+=("$(cat "$WORK/s3/pid")")
  "$ROOT/scripts/versitygw.sh" bucket "$S3" notarize-fleet
  "$ROOT/scripts/versitygw.sh" bucket "$S3" dist-fleet
  s3params() { echo "{region: us-east-1, bucket: $1, regionendpoint: \"$S3\", forcepathstyle: true, secure: false, accesskey: $S3_ACCESS_KEY, secretkey: $S3_SECRET_KEY}"; }
  printf 'storage:\n  s3: %s\n' "$(s3params notarize-fleet)" >"$WORK/np-s3.yaml"
  printf 'storage:\n  s3: %s\n  redirect: {disable: false}\n' "$(s3params notarize-fleet)" >"$WORK/np-s3-redir.yaml"
  for n in notarize-s3:np-s3 notarize-s3-b:np-s3 notarize-s3-redir:np-s3-redir; do
    name=${n%%:*} conf=${n#*:} port=$(free_port)
    start "$name" notarize-proxy --config "$WORK/$conf.yaml" --addr "127.0.0.1:$port" --data "$WORK/$name" --upstream "local=http://$UP" \
      --policy "$WORK/policy.yaml" --ledger "$NOTARIZE_LEDGER" --ledger-key "$WORK/ledger/ledger.pub"
    wait_http "http://127.0.0.1:$port/healthz"
    BASE[$name]="http://127.0.0.1:$port/v2/bench/app"
    METRICS[$name]="http://127.0.0.1:$port/metrics"
  done
  DS_PORT=$(free_port)
  regconf "$DS_PORT" "$WORK/ds" "http://127.0.0.1:$UP_PORT" | sed "s|^storage: .*|storage: {s3: $(s3params dist-fleet | sed 's/[&|]/\\&/g'), redirect: {disable: true}, delete: {enabled: false}}|" >"$WORK/ds.yml"
  start dist-proxy-s3 "$CACHE/bin/registry" serve "$WORK/ds.yml"
  wait_http "http://127.0.0.1:$DS_PORT/v2/"
  BASE[dist-proxy-s3]="http://127.0.0.1:$DS_PORT/v2/bench/app"
  FLEET_ORDER=(notarize-s3 notarize-s3-b dist-proxy-s3)
  ORDER+=(notarize-s3 notarize-s3-b notarize-s3-redir dist-proxy-s3)
fi
if [[ " ${CLIENTS[*]} " == *" containerd "* ]]; then
  echo "== containerd (its own root, content fetch only: no snapshots, no mounts)"
  CD=$WORK/containerd
  mkdir -p "$CD/root" "$CD/state"
  printf 'version = 2\nroot = "%s"\nstate = "%s"\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "%s"\n' \
    "$CD/root" "$CD/state" "$CD/containerd.sock" >"$CD/config.toml"
  start containerd containerd --config "$CD/config.toml"
  for _ in $(seq 1 300); do [[ -S $CD/containerd.sock ]] && break; sleep 0.1; done
  CTR=(ctr --address "$CD/containerd.sock" --namespace bench)
fi
for t in "${ORDER[@]}"; do # warm-up: transports, tokens, manifest caches
  curl -fsS -o /dev/null -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' "${BASE[$t]}/manifests/v1"
done

# prefault: on a VM whose host backs its memory on first touch and takes
# freed memory back (virtio-balloon's free page reporting, DAMON), a page
# the kernel has not used lately is ~10x slower to fill, and only the caches
# fill pages during a cold pull (their files): without this the caches' cold
# pulls measured that, not themselves (docs/BENCHMARKS.md, "a measuring
# trap"). Touching 4x the blob in tmpfs and freeing it just before the pull
# leaves the kernel recently used pages to take first. PREFAULT=0 skips it.
prefault() {
  [[ ${PREFAULT:-1} != 0 && -w /dev/shm ]] || return 0
  dd if=/dev/zero of=/dev/shm/notarize-bench-touch.$$ bs=1M count=$((BLOB_MB * 4)) status=none
  rm -f /dev/shm/notarize-bench-touch.$$
}

RESULTS=$WORK/results.tsv
: >"$RESULTS"
run() { loadgen "$@" | tee -a "$RESULTS" | awk -F'\t' '{printf "   %-28s %9s req/s  p50 %7s ms  p99 %7s ms  %8s MB/s  errors %s\n", $1, $2, $3, $4, $5, $6}'; }
if [[ ${MANIFESTS:-1} != 0 ]]; then
  echo "== manifests ($C workers, $D each; 2 shared cores: the load generator competes with the servers)"
  for t in "${ORDER[@]}"; do run -name "manifest-tag/$t" -c "$C" -d "$D" "${BASE[$t]}/manifests/v1"; done
  for t in "${ORDER[@]}"; do run -name "manifest-digest/$t" -c "$C" -d "$D" "${BASE[$t]}/manifests/$DIGEST"; done
fi
echo "== blob of $BLOB_MB MiB, cold, by kind of client: ${CLIENTS[*]}; $ROUNDS round(s)"
# bytes: reads and discards (the transfer alone); verify: hashes the body and
# checks the digest while it reads, as containerd's content store, dockerd and
# skopeo do before they keep a blob; crane: \`crane blob\`, a real client
# (ggcr checks the digest), wall time of the whole process; containerd:
# \`ctr content fetch\` of an image whose one layer is the blob, into
# containerd's content store (hashed and written to disk, as a pull by
# containerd or by dockerd with the containerd image store does before it
# unpacks), wall time of ctr, the blob's MB over it.
for r in $(seq 1 "$ROUNDS"); do
for k in "${CLIENTS[@]}"; do
for t in direct notarize dist-proxy "${FLEET_ORDER[@]}"; do
  b=${BLOB_OF[$k.$r]}
  if [[ $t == notarize-s3-b ]]; then # B's first pull of what A cached: wait for A's put into the bucket
    key=notarize/v1/blobs/sha256/${b:7:2}/${b#sha256:}
    for _ in $(seq 1 600); do "$ROOT/scripts/versitygw.sh" exists "$S3" "notarize-fleet/$key" && break; sleep 0.1; done
  fi
  # CPU seconds per GB of the serving process and of the upstream during the
  # pull (load slows a run down but adds little CPU to it: compare these
  # across runs); PERF=DIR records the serving process with perf(1) there.
  case $t in direct) srv=${PID_OF[upstream]} ;; notarize) srv=${PID_OF[notarize-proxy]} ;; *) srv=${PID_OF[$t]} ;; esac
  # Write back what the uploads and the last pull left dirty first, so that
  # it is not written during this pull, on the same two cores and disk.
  sync
  prefault
  s0=$(cpu_ns "$srv") u0=$(cpu_ns "${PID_OF[upstream]}") perf_pid=
  if [[ -n ${PERF:-} && $t != direct ]]; then
    mkdir -p "$PERF"; perf record -q -g -p "$srv" -o "$PERF/cold-$k-$t-$r.data" 2>/dev/null & perf_pid=$!; sleep 0.5
  fi
  name=blob-cold/$t; [[ $k == bytes ]] || name=blob-cold-$k/$t
  case $k in
    bytes) run -name "$name" -once -c 1 -d 10m "${BASE[$t]}/blobs/$b" ;;
    verify) run -name "$name" -once -c 1 -d 10m -verify "${BASE[$t]}/blobs/$b" ;;
    crane | containerd)
      ref=${BASE[$t]#http://}; ref=${ref/\/v2\//\/}
      t0=$(date +%s%N)
      if [[ $k == crane ]]; then
        crane blob --insecure "$ref@$b" >/dev/null
      else # the image's manifest, config and this layer, into containerd's content store
        "${CTR[@]}" content fetch --plain-http "$ref:$k.$r" >/dev/null
      fi
      ms=$((($(date +%s%N) - t0) / 1000000))
      if [[ $k == containerd ]]; then # the next target fetches all of it again: the manifest and config too
        "${CTR[@]}" content rm "$b" "sha256:$(sha256sum <"$WORK/manifest-$k.$r.json" | cut -d' ' -f1)" \
          "$(jq -r .config.digest "$WORK/manifest-$k.$r.json")" >/dev/null
      fi
      printf '%s\t1\t%s\t%s\t%.0f\t0\n' "$name" "$ms" "$ms" "$(awk -v mb="$BLOB_MB" -v ms="$ms" 'BEGIN {print mb * 1048576 / 1e6 / (ms / 1000)}')" |
        tee -a "$RESULTS" | awk -F'\t' '{printf "   %-28s %9s req/s  p50 %7s ms  p99 %7s ms  %8s MB/s  errors %s\n", $1, $2, $3, $4, $5, $6}' ;;
  esac
  awk -F'\t' 'END {exit $6 != 0}' "$RESULTS" || { echo "FAIL: $name: the pull failed (with verify: the client refused the bytes)" >&2; exit 1; }
  [[ -n $perf_pid ]] && { kill -INT "$perf_pid" 2>/dev/null || true; wait "$perf_pid" || true; }
  s1=$(cpu_ns "$srv") u1=$(cpu_ns "${PID_OF[upstream]}")
  awk -v s=$((s1 - s0)) -v u=$((u1 - u0)) -v mb="$BLOB_MB" -v t="$t" 'BEGIN {
    gb = mb * 1048576 / 1e9
    if (t == "direct") printf "   %-28s upstream %.2f cpu-s/GB\n", "", u / 1e9 / gb
    else printf "   %-28s %s %.2f cpu-s/GB, upstream %.2f cpu-s/GB\n", "", t, s / 1e9 / gb, u / 1e9 / gb
  }'
done
done
done
if [[ ${#FLEET_ORDER[@]} -gt 0 ]]; then
  m=$(curl -fsS "${METRICS[notarize-s3-b]}")
  if grep -q 'notarize_proxy_blob_bytes_total{source="upstream"}' <<<"$m" || ! grep -q 'notarize_proxy_blob_bytes_total{source="shared"}' <<<"$m"; then
    echo "   FAIL: notarize-s3-b did not serve its first pull from the bucket:" >&2
    grep blob_bytes <<<"$m" >&2
    exit 1
  fi
  echo "   notarize-s3-b: first pull served from the bucket, no upstream blob bytes ($(grep 'blob_bytes_total{source="shared"}' <<<"$m"))"
fi
for t in "${ORDER[@]}"; do run -name "blob-warm/$t" -c 2 -d "$D" "${BASE[$t]}/blobs/$BLOB"; done

echo "== ratios (notarize vs direct, notarize vs dist-proxy; blobs: the median of the rounds' ratios)"
awk -F'\t' '
  function median(a, n,   i, j, x) { # sorts a[1..n]
    for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j > 0 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  { split($1, a, "/"); k = a[1]; t = a[2]; i = ++cnt[k "," t]; val[k "," t "," i] = (k ~ /blob/) ? $5 : $2 }
  END {
    n = split("manifest-tag manifest-digest blob-cold blob-cold-verify blob-cold-crane blob-cold-containerd blob-warm", ks, " ")
    nt = split("direct notarize dist-proxy notarize-s3 notarize-s3-b notarize-s3-redir dist-proxy-s3", ts, " ")
    for (i = 1; i <= n; i++) {
      k = ks[i]; r = cnt[k ",direct"]
      if (!r) continue
      for (j = 1; j <= nt; j++) {
        t = ts[j]; m = 0; per = ""
        for (x = 1; x <= cnt[k "," t] && x <= r; x++) {
          if (!val[k ",direct," x]) continue
          q[++m] = val[k "," t "," x] / val[k ",direct," x]; per = per sprintf(" %.2f", q[m])
          mb[m] = val[k "," t "," x]
        }
        if (!m) continue
        ratio[k "," t] = median(q, m); speed[k "," t] = median(mb, m)
        if (m > 1 && t != "direct") printf "   %-16s %-18s rounds:%s\n", k, t "/direct", per
      }
      printf "   %-16s notarize/direct %5.2fx   notarize/dist-proxy %5.2fx   (dist-proxy/direct %5.2fx)   [%s]\n",
        k, ratio[k ",notarize"], (ratio[k ",dist-proxy"] ? ratio[k ",notarize"] / ratio[k ",dist-proxy"] : 0), ratio[k ",dist-proxy"], (k ~ /blob/) ? "MB/s" : "req/s"
    }
    nc = split("blob-cold blob-cold-verify blob-cold-crane blob-cold-containerd blob-warm", col, " ")
    printf "\n   %-18s %13s %13s %13s %13s %13s   (MB/s and x direct, medians)\n", "blob, " ENVIRON["BLOB_MB"] " MiB", "cold bytes", "cold verify", "cold crane", "cold ctr", "warm"
    for (j = 1; j <= nt; j++) {
      line = sprintf("   %-18s", ts[j]); any = 0
      for (c = 1; c <= nc; c++) {
        x = speed[col[c] "," ts[j]]
        if (x == "") { line = line sprintf(" %13s", "-"); continue }
        any = 1; line = line sprintf(" %7.0f %4.2fx", x, ratio[col[c] "," ts[j]])
      }
      if (any) print line
    }
  }' "$RESULTS"

if [[ -z ${SKIP_GO:-} ]]; then
  echo "== replica: decision cost with 1,000,000 statements; catch-up speed and memory"
  (cd "$ROOT" && NOTARIZE_BENCH_STATEMENTS=${STATEMENTS:-1000000} go test -run XXX -bench Decision -benchtime 2s -benchmem ./proxy/replica/ 2>&1 |
    grep -E '^(Benchmark|ok|FAIL)|indexed' | sed 's/^ */   /')
  (cd "$ROOT" && NOTARIZE_BENCH_ENTRIES=${ENTRIES:-10000} go test -run XXX -bench CatchUp -benchtime 1x -benchmem ./proxy/replica/ 2>&1 |
    grep -E '^(Benchmark|ok|FAIL)|filled' | sed 's/^ */   /')
fi
