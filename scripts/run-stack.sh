#!/usr/bin/env bash
# Runs a ledger and a trust-enforcing proxy in the foreground on embedded
# defaults (`make run`); Ctrl-C stops both.
#
#   BIN=./bin DATA=./.notarize LEDGER_ADDR=127.0.0.1:7070 PROXY_ADDR=127.0.0.1:5000 scripts/run-stack.sh
#
# PROXY_FLAGS adds flags to notarize-proxy, e.g. another upstream:
#   make run PROXY_FLAGS="--upstream local=http://127.0.0.1:5001"
#
# WITNESSES=N (1-5; `make run-witnessed` is WITNESSES=3) also starts N local
# omniwitness processes (scripts/witness.sh; ports WITNESS_PORT,
# WITNESS_PORT+1, …, default 7081; data in DATA/witnesses/wI) and runs the
# ledger with the witness policy DATA/witnesses/policy: a majority of them
# must cosign every checkpoint. The proxy gets the same policy when it has
# --witness-policy. The ledger's key is made before its first start (the
# witnesses must know it); an existing ledger is witnessed from its size.
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
WITNESSES=${WITNESSES:-0}
WITNESS_PORT=${WITNESS_PORT:-7081}
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
witness_dirs=()
stop() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  for d in "${witness_dirs[@]}"; do "$ROOT/scripts/witness.sh" stop "$d" || true; done
}
trap stop EXIT INT TERM

ledger_flags=()
proxy_witness_flags=()
if [[ $WITNESSES =~ ^[1-5]$ ]]; then
  mkdir -p "$DATA/ledger" "$DATA/witnesses"
  if [[ ! -f $DATA/ledger/ledger.key ]]; then
    # Unique per ledger, like the ledger's own default origin.
    "$BIN/notarize-ledger" keygen --origin "$(hostname)/notarize-ledger/$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')" \
      --out "$DATA/ledger/ledger.key" >/dev/null
  fi
  vkey=$(cat "$DATA/ledger/ledger.pub" 2>/dev/null || cat "$DATA/ledger/ledger.key.pub")
  origin=${vkey%%+*}
  policy=$DATA/witnesses/policy
  quorum=$((WITNESSES / 2 + 1))
  {
    echo "# Written by scripts/run-stack.sh: $quorum of $WITNESSES local witnesses."
    names=()
    for i in $(seq 1 "$WITNESSES"); do
      d=$DATA/witnesses/w$i
      witness_dirs+=("$d")
      line=$("$ROOT/scripts/witness.sh" start "$d" $((WITNESS_PORT + i - 1)) "$origin" "$vkey" "http://$LEDGER_ADDR")
      echo "$line"
      names+=("$(echo "$line" | cut -d' ' -f2)")
    done
    echo "group local-witnesses $quorum ${names[*]}"
    echo "quorum local-witnesses"
  } >"$policy.tmp"
  mv "$policy.tmp" "$policy"
  echo "started $WITNESSES witnesses; policy $policy (quorum $quorum)"
  ledger_flags+=(--witness-policy "$policy")
  proxy_help=$("$BIN/notarize-proxy" --help 2>&1 || true)
  if [[ $proxy_help == *-witness-policy* ]]; then
    proxy_witness_flags+=(--witness-policy "$policy")
  fi
elif [[ $WITNESSES != 0 ]]; then
  echo "WITNESSES=$WITNESSES: want 0 to 5" >&2
  exit 2
fi

"$BIN/notarize-ledger" --addr "$LEDGER_ADDR" --data "$DATA/ledger" ${ledger_flags[@]+"${ledger_flags[@]}"} &
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
  Decisions: the dashboard http://$PROXY_ADDR/ui/, the proxy's JSON log below, http://$PROXY_ADDR/metrics and /notarize/v1/stats

EOF
"$BIN/notarize-proxy" --addr "$PROXY_ADDR" --data "$DATA/proxy" --policy "$POLICY" \
  --ledger "http://$LEDGER_ADDR" --ledger-key "$DATA/ledger/ledger.pub" ${proxy_witness_flags[@]+"${proxy_witness_flags[@]}"} ${PROXY_FLAGS:-} &
pids+=($!)
wait -n "${pids[@]}"
