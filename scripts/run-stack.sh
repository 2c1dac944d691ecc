#!/usr/bin/env bash
# Runs a ledger and a trust-enforcing proxy in the foreground on embedded
# defaults (`make run`); Ctrl-C stops both.
#
#   BIN=./bin DATA=./.notarize LEDGER_ADDR=127.0.0.1:7070 PROXY_ADDR=127.0.0.1:5000 scripts/run-stack.sh
#
# PROXY_FLAGS adds flags to notarize-proxy, e.g. another upstream:
#   make run PROXY_FLAGS="--upstream local=http://127.0.0.1:5001"
#
# Without POLICY, it writes DATA/policy.yaml once: every key of your key store
# (NOTARIZE_HOME/keys/*.pub) is a signer and everything is enforced; with no key
# yet, everything is served in audit mode (decisions logged, nothing refused).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/bin}
DATA=${DATA:-$ROOT/.notarize}
LEDGER_ADDR=${LEDGER_ADDR:-127.0.0.1:7070}
PROXY_ADDR=${PROXY_ADDR:-127.0.0.1:5000}
KEYS=${NOTARIZE_HOME:-${DOCKER_CONFIG:-$HOME/.docker}/notarize}/keys
POLICY=${POLICY:-$DATA/policy.yaml}
mkdir -p "$DATA"

# A policy this script wrote is written again on every start, so keys made
# since (docker notarize key generate) are enforced without further steps.
if [[ ! -f $POLICY ]] || head -1 "$POLICY" | grep -q '^# Written by scripts/run-stack.sh'; then
  shopt -s nullglob
  pubs=("$KEYS"/*.pub)
  mkdir -p "$DATA/keys"
  {
    echo "# Written by scripts/run-stack.sh; edit freely (see examples/policy.yaml)."
    echo "signers:"
    names=()
    if ((${#pubs[@]})); then
      for p in "${pubs[@]}"; do
        n=$(basename "$p" .pub)
        cp "$p" "$DATA/keys/$n.pub"
        echo "  $n: {keys: [keys/$n.pub]}"
        names+=("$n")
      done
      mode=enforce
    else
      cp "$ROOT/examples/keys/release.pub" "$DATA/keys/placeholder.pub"
      echo "  placeholder: {keys: [keys/placeholder.pub]}   # nobody holds this key"
      names=(placeholder)
      mode=audit
    fi
    echo "rules:"
    echo "  - match: \"**\""
    echo "    require: [$(IFS=,; echo "${names[*]}" | sed 's/,/, /g')]"
    echo "    mode: $mode"
  } >"$POLICY"
  echo "wrote $POLICY (mode $mode, signers: ${names[*]})"
  if [[ $mode == audit ]]; then
    echo "  no key in $KEYS yet: run 'docker notarize key generate --name NAME' and restart to enforce"
  fi
fi

pids=()
stop() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop EXIT INT TERM

"$BIN/notarize-ledger" --addr "$LEDGER_ADDR" --data "$DATA/ledger" &
pids+=($!)
for _ in $(seq 1 100); do
  [[ -f $DATA/ledger/ledger.pub ]] && curl -fsS -o /dev/null "http://$LEDGER_ADDR/api/v1/info" 2>/dev/null && break
  sleep 0.1
done

cat <<EOF

Point clients at the proxy on $PROXY_ADDR:
  /etc/docker/daemon.json:
    {"registry-mirrors": ["http://$PROXY_ADDR"], "insecure-registries": ["$PROXY_ADDR"]}
  /etc/containerd/certs.d/docker.io/hosts.toml (one per registry; see examples/containerd):
    server = "http://$PROXY_ADDR"
    [host."http://$PROXY_ADDR"]
      capabilities = ["pull", "resolve"]
  Sign with: NOTARIZE_LEDGER=http://$LEDGER_ADDR docker notarize sign IMAGE
  Decisions: the proxy's JSON log below; counts: http://$PROXY_ADDR/metrics and /notarize/v1/stats

EOF
"$BIN/notarize-proxy" --addr "$PROXY_ADDR" --data "$DATA/proxy" --policy "$POLICY" \
  --ledger "http://$LEDGER_ADDR" --ledger-key "$DATA/ledger/ledger.pub" ${PROXY_FLAGS:-} &
pids+=($!)
wait -n "${pids[@]}"
