#!/usr/bin/env bash
# Runs a fleet for a person to try (`make run-fleet`): the stack of `make run`
# (scripts/run-stack.sh: a ledger and proxy A on PROXY_ADDR) plus proxy B on
# PROXY_B_ADDR, each with its own data directory and ledger replica, both
# caching blobs in one S3 bucket on a local S3 server, versitygw
# (scripts/versitygw.sh; S3 on 127.0.0.1:S3_PORT, data in DATA/fleet/s3,
# the account S3_ACCESS_KEY / S3_SECRET_KEY, by default fleet /
# fleet-local-only). Pull an image through A,
# then through B: B's first pull of those layers comes from the bucket, not
# from the upstream (see notarize_proxy_blob_bytes_total{source="shared"} on
# B's /metrics). REDIRECT=1 makes B redirect clients to presigned URLs.
#
#   BIN=./bin DATA=./.notarize PROXY_B_ADDR=127.0.0.1:5001 S3_PORT=8333 scripts/run-fleet.sh
#
# Ctrl-C stops everything it started. The first run builds versitygw (about
# 2 minutes on 2 cores; cached in ~/.cache/notarize/bin).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/bin}
DATA=${DATA:-$ROOT/.notarize}
LEDGER_ADDR=${LEDGER_ADDR:-127.0.0.1:7070}
PROXY_ADDR=${PROXY_ADDR:-127.0.0.1:5000}
PROXY_B_ADDR=${PROXY_B_ADDR:-127.0.0.1:5001}
S3_PORT=${S3_PORT:-8333}
BUCKET=${BUCKET:-notarize-fleet}
POLICY=${POLICY:-$DATA/policy.yaml}
FLEET=$DATA/fleet
S3_ACCESS_KEY=${S3_ACCESS_KEY:-fleet}
S3_SECRET_KEY=${S3_SECRET_KEY:-fleet-local-only}
export BIN DATA LEDGER_ADDR PROXY_ADDR POLICY S3_ACCESS_KEY S3_SECRET_KEY

die() { echo "run-fleet: $*" >&2; exit 1; }
[[ -x $BIN/notarize-proxy ]] || die "$BIN/notarize-proxy missing: run 'make build'"
mkdir -p "$FLEET"

write_storage() { # write_storage FILE REDIRECT
  {
    echo "# Written by scripts/run-fleet.sh: the blob cache both proxies share."
    echo "storage:"
    echo "  s3: {region: us-east-1, bucket: $BUCKET, regionendpoint: \"$endpoint\", forcepathstyle: true, secure: false, accesskey: \"$S3_ACCESS_KEY\", secretkey: \"$S3_SECRET_KEY\"}"
    [[ $2 == 1 ]] && echo "  redirect: {disable: false}"
    return 0
  } >"$1"
}
pids=()
cleanup() {
  set +e
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
  "$ROOT/scripts/versitygw.sh" stop "$FLEET/s3"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$ROOT/scripts/versitygw.sh" install >/dev/null
endpoint=$("$ROOT/scripts/versitygw.sh" start "$FLEET/s3" "$S3_PORT")
"$ROOT/scripts/versitygw.sh" bucket "$endpoint" "$BUCKET"
write_storage "$FLEET/a.yaml" 0
write_storage "$FLEET/b.yaml" "${REDIRECT:-0}"

PROXY_FLAGS="--config $FLEET/a.yaml ${PROXY_FLAGS:-}" "$ROOT/scripts/run-stack.sh" &
pids+=($!)
for _ in $(seq 1 600); do
  kill -0 "${pids[0]}" 2>/dev/null || die "the stack exited during start-up (see above)"
  curl -fsS -o /dev/null "http://$PROXY_ADDR/healthz" 2>/dev/null && break
  sleep 0.1
done
curl -fsS -o /dev/null "http://$PROXY_ADDR/healthz" || die "proxy A did not come up on $PROXY_ADDR"
ledger_pub=$DATA/ledger/ledger.pub
[[ -f $ledger_pub ]] || ledger_pub=$DATA/ledger/ledger.key.pub
"$BIN/notarize-proxy" --config "$FLEET/b.yaml" --addr "$PROXY_B_ADDR" --data "$FLEET/proxy-b" --policy "$POLICY" \
  --ledger "http://$LEDGER_ADDR" --ledger-key "$ledger_pub" ${PROXY_FLAGS:-} &
pids+=($!)
for _ in $(seq 1 300); do
  curl -fsS -o /dev/null "http://$PROXY_B_ADDR/healthz" 2>/dev/null && break
  sleep 0.1
done
curl -fsS -o /dev/null "http://$PROXY_B_ADDR/healthz" || die "proxy B did not come up on $PROXY_B_ADDR"
cat <<MSG

Fleet: proxy A http://$PROXY_ADDR and proxy B http://$PROXY_B_ADDR$([[ ${REDIRECT:-0} == 1 ]] && echo " (redirects)"), one blob cache in
  s3://$BUCKET at $endpoint (versitygw, data in $FLEET/s3); each proxy keeps its own ledger replica.
Try: pull an image through A, then through B; B's /metrics shows notarize_proxy_blob_bytes_total{source="shared"}.
Stop: Ctrl-C.

MSG
set +e
wait -n "${pids[@]}"
rc=$?
echo "run-fleet: a process exited (status $rc); stopping the rest" >&2
exit "$rc"
