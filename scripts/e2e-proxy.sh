#!/usr/bin/env bash
# End-to-end test of notarize-proxy with real clients, all on loopback:
#
#   upstream registry (crane registry serve)  ←  notarize-proxy  ←  crane, skopeo,
#   notarize-ledger  ←  docker-notarize (sign/untrust)            dockerd (registry-mirrors),
#                                                                 containerd (ctr + hosts.toml)
#
# A signed image pulls, an unsigned one is refused with the proxy's message, and
# an untrust takes effect on the next pull. A second proxy authenticates its
# clients (--auth htpasswd) and applies the policy's access rules: crane, docker
# login + pull, dockerd as a mirror and ctr --user, and refused clients cause
# no upstream request. Installs skopeo, docker.io and
# containerd from Debian when missing (needs root for those and for the daemons).
# Every process it starts is stopped on exit. Prints how long each phase took.
#
# Usage: scripts/e2e-proxy.sh            (KEEP=1 keeps the work directory)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/notarize-e2e.XXXXXX")
BIN=$WORK/bin
LOGS=$WORK/logs
mkdir -p "$BIN" "$LOGS"
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
T0=$(date +%s.%N)
PHASE_T=$T0
PIDS=()
FAILED=0

log() { printf '\033[1m== %s\033[0m\n' "$*"; }
phase() {
  local now
  now=$(date +%s.%N)
  printf '   (%.1f s)\n' "$(echo "$now - $PHASE_T" | bc)"
  PHASE_T=$now
  log "$*"
}
fail() { echo "FAIL: $*" >&2; FAILED=1; exit 1; }

cleanup() {
  local rc=$?
  set +e
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${PIDS[i]}" 2>/dev/null
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  # dockerd and containerd may leave mounts under their roots.
  if command -v findmnt >/dev/null; then
    findmnt -rn -o TARGET | grep "^$WORK" | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
  fi
  if [[ $rc -ne 0 || $FAILED -ne 0 ]]; then
    echo "--- logs in $WORK/logs (kept)"
    for f in "$LOGS"/*.log; do echo "--- $f (last 15 lines)"; tail -15 "$f"; done
  elif [[ -z "${KEEP:-}" ]]; then
    rm -rf "$WORK"
  fi
  exit $rc
}
trap cleanup EXIT INT TERM

start() { # start NAME CMD... : runs CMD in the background, logs to $LOGS/NAME.log
  local name=$1; shift
  "$@" >"$LOGS/$name.log" 2>&1 &
  PIDS+=($!)
}

free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 20000))
    (echo >/dev/tcp/127.0.0.1/$p) 2>/dev/null || { echo "$p"; return; }
  done
}

wait_http() { # wait_http URL [seconds]
  local i
  for i in $(seq 1 $((${2:-30} * 10))); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  fail "$1 did not come up"
}

expect_fail() { # expect_fail PATTERN CMD... : CMD must fail and print PATTERN
  local out
  if out=$("${@:2}" 2>&1); then
    echo "$out"
    fail "expected failure: ${*:2}"
  fi
  grep -q -- "$1" <<<"$out" || { echo "$out"; fail "output of '${*:2}' lacks '$1'"; }
  echo "   refused as expected: $(grep -m1 -o -- ".\{0,60\}$1.\{0,80\}" <<<"$out")"
}

log "install what is missing"
need_pkgs=()
command -v skopeo >/dev/null || need_pkgs+=(skopeo)
command -v dockerd >/dev/null || need_pkgs+=(docker.io)
command -v containerd >/dev/null || need_pkgs+=(containerd)
command -v curl >/dev/null || need_pkgs+=(curl)
command -v bc >/dev/null || need_pkgs+=(bc)
command -v htpasswd >/dev/null || need_pkgs+=(apache2-utils)
if ((${#need_pkgs[@]})); then
  [[ $(id -u) -eq 0 ]] || fail "missing ${need_pkgs[*]} and not root to install them"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

phase "build notarize-ledger, notarize-proxy, docker-notarize and crane"
# As `make build` builds them, so that the packages make test compiled are
# found compiled (another configuration is ~5 min of 2 cores on a fresh machine).
make -s -C "$ROOT" build BIN="$BIN"
if ! (cd "$ROOT" && go build -trimpath -o "$BIN/crane" github.com/google/go-containerregistry/cmd/crane) 2>/dev/null; then
  GOBIN=$BIN go install github.com/google/go-containerregistry/cmd/crane@v0.22.1
fi
export PATH=$BIN:$PATH

phase "start the upstream registry, the ledger and the proxy"
UP_PORT=$(free_port); LEDGER_PORT=$(free_port); PROXY_PORT=$(free_port); AUTH_PORT=$(free_port)
UP=127.0.0.1:$UP_PORT
PROXY=127.0.0.1:$PROXY_PORT
AUTH_PROXY=127.0.0.1:$AUTH_PORT
LEDGER=http://127.0.0.1:$LEDGER_PORT
start registry crane registry serve --address "$UP"
start ledger notarize-ledger --addr "127.0.0.1:$LEDGER_PORT" --data "$WORK/ledger"
wait_http "http://$UP/v2/"
wait_http "$LEDGER/api/v1/info"

export NOTARIZE_HOME=$WORK/home NOTARIZE_PASSWORD=e2e-password NOTARIZE_LEDGER=$LEDGER
docker-notarize key generate --name release >/dev/null
docker-notarize key export release >"$WORK/release.pub"
cat >"$WORK/policy.yaml" <<EOF
signers:
  release: {keys: [release.pub]}
rules:
  - match: "local/e2e/audit/**"
    require: [release]
    mode: audit
  - match: "**"
    require: [release]
    mode: enforce
EOF
start proxy notarize-proxy --addr "$PROXY" --data "$WORK/proxy" \
  --upstream "local=http://$UP" --default-upstream local \
  --policy "$WORK/policy.yaml" --ledger "$LEDGER" --ledger-key "$WORK/ledger/ledger.pub" --max-staleness 1m
wait_http "http://$PROXY/healthz"

# The authenticating proxy: alice may pull local/e2e/**, bob nothing.
htpasswd -Bbc "$WORK/htpasswd" alice alice-pw 2>/dev/null
htpasswd -Bb "$WORK/htpasswd" bob bob-pw 2>/dev/null
{ cat "$WORK/policy.yaml"; printf 'access:\n  - match: "local/e2e/**"\n    users: [alice]\n'; } >"$WORK/policy-auth.yaml"
start proxy-auth notarize-proxy --addr "$AUTH_PROXY" --data "$WORK/proxy-auth" \
  --upstream "local=http://$UP" --default-upstream local --auth "htpasswd:$WORK/htpasswd" --log-level debug \
  --policy "$WORK/policy-auth.yaml" --ledger "$LEDGER" --ledger-key "$WORK/ledger/ledger.pub" --max-staleness 1m
wait_http "http://$AUTH_PROXY/healthz"

phase "push images upstream and sign one"
mkimage() { # mkimage REPO:TAG TEXT
  local d
  d=$(mktemp -d "$WORK/layer.XXXX")
  mkdir -p "$d/root/etc"
  echo "$2" >"$d/root/etc/e2e-release"
  tar -C "$d/root" -cf "$d/layer.tar" .
  crane append --insecure -f "$d/layer.tar" -t "$UP/$1" >/dev/null
  crane mutate --insecure --set-platform linux/amd64 -t "$UP/$1" "$UP/$1" >/dev/null
}
mkimage e2e/signed:v1 "signed $RANDOM"
mkimage e2e/unsigned:v1 "unsigned $RANDOM"
mkimage e2e/revoked:v1 "revoked $RANDOM"
mkimage e2e/audit/app:v1 "audit $RANDOM"
docker-notarize sign "$UP/e2e/signed:v1" >/dev/null
docker-notarize sign "$UP/e2e/revoked:v1" >/dev/null
SIGNED_DIGEST=$(crane digest --insecure "$UP/e2e/signed:v1")
echo "   signed $SIGNED_DIGEST"

phase "crane and skopeo through the proxy"
crane pull --insecure "$PROXY/local/e2e/signed:v1" "$WORK/signed.tar"
[[ $(crane digest --insecure "$PROXY/local/e2e/signed:v1") == "$SIGNED_DIGEST" ]] || fail "digest through the proxy differs"
expect_fail "DENIED" crane pull --insecure "$PROXY/local/e2e/unsigned:v1" "$WORK/unsigned.tar"
expect_fail "no statement from release" crane manifest --insecure "$PROXY/local/e2e/unsigned:v1"
crane pull --insecure "$PROXY/local/e2e/audit/app:v1" "$WORK/audit.tar" # audit mode serves
skopeo copy --quiet --src-tls-verify=false "docker://$PROXY/local/e2e/signed:v1" "dir:$WORK/skopeo-signed"
expect_fail "denied" skopeo copy --quiet --src-tls-verify=false "docker://$PROXY/local/e2e/unsigned:v1" "dir:$WORK/skopeo-unsigned"
expect_fail "UNSUPPORTED\|unsupported\|405" crane copy --insecure "$UP/e2e/signed:v1" "$PROXY/local/e2e/pushed:v1"

phase "client authentication (htpasswd) and access rules, with crane"
upstream_requests() { wc -l <"$LOGS/registry.log"; }
no_upstream_request() { # no_upstream_request CMD... : CMD causes no request to the upstream registry
  local before
  before=$(upstream_requests)
  "$@"
  [[ $(upstream_requests) -eq $before ]] || fail "a refused client caused $(($(upstream_requests) - before)) upstream requests: $*"
}
[[ $(curl -s -o /dev/null -w '%{http_code}' "http://$AUTH_PROXY/v2/") == 401 ]] || fail "/v2/ without credentials is not 401"
curl -sI "http://$AUTH_PROXY/v2/" | grep -qi '^www-authenticate: basic realm=' || fail "no Basic challenge"
mkdir -p "$WORK/anon"
no_upstream_request expect_fail "UNAUTHORIZED" env DOCKER_CONFIG="$WORK/anon" crane manifest --insecure "$AUTH_PROXY/local/e2e/signed:v1"
no_upstream_request expect_fail "UNAUTHORIZED" env DOCKER_CONFIG="$WORK/anon" crane ls --insecure "$AUTH_PROXY/local/e2e/signed"
export DOCKER_CONFIG=$WORK/crane-alice
crane auth login "$AUTH_PROXY" -u alice -p alice-pw >/dev/null 2>&1
crane pull --insecure "$AUTH_PROXY/local/e2e/signed:v1" "$WORK/auth-signed.tar"
expect_fail "no statement from release" crane manifest --insecure "$AUTH_PROXY/local/e2e/unsigned:v1" # the trust policy still applies
crane auth login "$AUTH_PROXY" -u alice -p wrong-pw >/dev/null 2>&1
no_upstream_request expect_fail "UNAUTHORIZED" crane manifest --insecure "$AUTH_PROXY/local/e2e/signed:v1"
export DOCKER_CONFIG=$WORK/crane-bob
crane auth login "$AUTH_PROXY" -u bob -p bob-pw >/dev/null 2>&1
no_upstream_request expect_fail "may not pull" crane manifest --insecure "$AUTH_PROXY/local/e2e/signed:v1"
no_upstream_request expect_fail "may not pull" crane ls --insecure "$AUTH_PROXY/local/e2e/signed"
no_upstream_request expect_fail "may not pull" crane manifest --insecure "$AUTH_PROXY/local/e2e/nonexistent:v1"
unset DOCKER_CONFIG
[[ $(curl -s -o /dev/null -w '%{http_code}' "http://$AUTH_PROXY/metrics") == 401 ]] || fail "/metrics without credentials is not 401"
curl -fsS -o /dev/null -u alice:alice-pw "http://$AUTH_PROXY/metrics" || fail "/metrics refused alice"

phase "revocation: untrust, then the next pull is refused"
crane manifest --insecure "$PROXY/local/e2e/revoked:v1" >/dev/null
docker-notarize untrust "$UP/e2e/revoked:v1" >/dev/null
t_untrust=$(date +%s.%N)
for _ in $(seq 1 100); do
  crane manifest --insecure "$PROXY/local/e2e/revoked:v1" >/dev/null 2>&1 || break
  sleep 0.05
done
expect_fail "UNTRUSTED by release" crane manifest --insecure "$PROXY/local/e2e/revoked:v1"
printf '   untrust enforced %.2f s after its receipt\n' "$(echo "$(date +%s.%N) - $t_untrust" | bc)"

if [[ $(id -u) -ne 0 ]]; then
  echo "not root: skipping dockerd and containerd"
else
  phase "dockerd with the proxy as its registry mirror"
  D=$WORK/docker
  mkdir -p "$D/data" "$D/exec"
  start dockerd dockerd --data-root "$D/data" --exec-root "$D/exec" -H "unix://$D/docker.sock" \
    --pidfile "$D/docker.pid" --iptables=false --ip6tables=false --bridge=none --storage-driver vfs \
    --registry-mirror "http://$PROXY" --insecure-registry "$PROXY" --insecure-registry "$AUTH_PROXY"
  for _ in $(seq 1 300); do [[ -S $D/docker.sock ]] && docker -H "unix://$D/docker.sock" version >/dev/null 2>&1 && break; sleep 0.1; done
  DOCKER=(docker -H "unix://$D/docker.sock")
  "${DOCKER[@]}" pull -q e2e/signed:v1
  "${DOCKER[@]}" image inspect e2e/signed:v1 --format '   dockerd pulled {{.RepoDigests}}'
  # Through the mirror a refusal makes dockerd fall back to Docker Hub (unreachable
  # here), so the proxy's message is in dockerd's log; named directly, the client shows it.
  if "${DOCKER[@]}" pull -q e2e/unsigned:v1 >/dev/null 2>&1; then fail "dockerd pulled an unsigned image through the mirror"; fi
  grep -q "no statement from release" "$LOGS/dockerd.log" || fail "dockerd's log lacks the proxy's message"
  echo "   refused through the mirror; dockerd log: $(grep -m1 -o 'notarize-proxy denied.\{0,100\}' "$LOGS/dockerd.log")"
  expect_fail "no statement from release" "${DOCKER[@]}" pull "$PROXY/local/e2e/unsigned:v1"

  phase "docker login to the authenticating proxy, then pull"
  export DOCKER_CONFIG=$WORK/docker-config
  expect_fail "unauthorized\|401" "${DOCKER[@]}" login -u alice -p wrong-pw "$AUTH_PROXY"
  echo alice-pw | "${DOCKER[@]}" login -u alice --password-stdin "$AUTH_PROXY" >/dev/null 2>&1 || fail "docker login as alice refused"
  "${DOCKER[@]}" pull -q "$AUTH_PROXY/local/e2e/signed:v1" >/dev/null
  echo "   docker login + pull as alice: ok"
  expect_fail "no statement from release" "${DOCKER[@]}" pull "$AUTH_PROXY/local/e2e/unsigned:v1"
  echo bob-pw | "${DOCKER[@]}" login -u bob --password-stdin "$AUTH_PROXY" >/dev/null 2>&1 || fail "docker login as bob refused"
  no_upstream_request expect_fail "may not pull" "${DOCKER[@]}" pull "$AUTH_PROXY/local/e2e/signed:v1"
  "${DOCKER[@]}" logout "$AUTH_PROXY" >/dev/null
  no_upstream_request expect_fail "no basic auth credentials\|unauthorized" "${DOCKER[@]}" pull "$AUTH_PROXY/local/e2e/signed:v1"
  unset DOCKER_CONFIG

  phase "dockerd with the authenticating proxy as its registry mirror"
  # dockerd sends a mirror the credentials the CLI gives it for Docker Hub
  # (the https://index.docker.io/v1/ entry of the CLI's config), never those
  # of a `docker login PROXY`; without them it falls back to Docker Hub.
  D2=$WORK/docker2
  mkdir -p "$D2/data" "$D2/exec"
  start dockerd-auth dockerd --data-root "$D2/data" --exec-root "$D2/exec" -H "unix://$D2/docker.sock" \
    --pidfile "$D2/docker.pid" --iptables=false --ip6tables=false --bridge=none --storage-driver vfs \
    --registry-mirror "http://$AUTH_PROXY" --insecure-registry "$AUTH_PROXY"
  for _ in $(seq 1 300); do [[ -S $D2/docker.sock ]] && docker -H "unix://$D2/docker.sock" version >/dev/null 2>&1 && break; sleep 0.1; done
  DOCKER2=(docker -H "unix://$D2/docker.sock")
  export DOCKER_CONFIG=$WORK/docker-mirror-anon
  if "${DOCKER2[@]}" pull -q e2e/signed:v1 >/dev/null 2>&1; then fail "dockerd pulled through an authenticating mirror without credentials"; fi
  grep -q "no basic auth credentials" "$LOGS/dockerd-auth.log" || fail "dockerd's log lacks the mirror's refusal"
  echo "   without credentials: refused by the mirror (dockerd then tries Docker Hub itself)"
  export DOCKER_CONFIG=$WORK/docker-mirror-alice
  mkdir -p "$DOCKER_CONFIG"
  printf '{"auths": {"https://index.docker.io/v1/": {"auth": "%s"}}}\n' "$(printf alice:alice-pw | base64)" >"$DOCKER_CONFIG/config.json"
  "${DOCKER2[@]}" pull -q e2e/signed:v1 >/dev/null
  "${DOCKER2[@]}" image inspect e2e/signed:v1 --format '   dockerd pulled through the authenticating mirror {{.RepoDigests}}'
  unset DOCKER_CONFIG

  phase "containerd (ctr) with a hosts.toml whose server is the proxy"
  C=$WORK/containerd
  mkdir -p "$C/root" "$C/state" "$C/certs.d/$UP"
  cat >"$C/config.toml" <<EOF
version = 2
root = "$C/root"
state = "$C/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$C/containerd.sock"
EOF
  # The documented form: the proxy is both the mirror host and the server, so
  # containerd has nowhere else to go; it sends ?ns=<registry> to both.
  # (containerd 1.6 needs a [host] table.)
  cat >"$C/certs.d/$UP/hosts.toml" <<EOF
server = "http://$PROXY"
[host."http://$PROXY"]
  capabilities = ["pull", "resolve"]
EOF
  start containerd containerd --config "$C/config.toml"
  for _ in $(seq 1 300); do [[ -S $C/containerd.sock ]] && break; sleep 0.1; done
  CTR=(ctr --address "$C/containerd.sock" --namespace e2e)
  "${CTR[@]}" images pull --plain-http --snapshotter native --hosts-dir "$C/certs.d" "$UP/e2e/signed:v1" >/dev/null
  "${CTR[@]}" images ls -q | grep -q "e2e/signed:v1" || fail "ctr did not record the image"
  echo "   ctr pulled $UP/e2e/signed:v1"
  # containerd resolves with HEAD, which has no body: it shows the status only;
  # the proxy's reason is in its decision log.
  expect_fail "403 Forbidden" "${CTR[@]}" images pull --plain-http --snapshotter native --hosts-dir "$C/certs.d" "$UP/e2e/unsigned:v1"
  # The path-prefix form (override_path), which also carries ?ns=.
  mkdir -p "$C/certs.d2/$UP"
  cat >"$C/certs.d2/$UP/hosts.toml" <<EOF
server = "http://$PROXY/v2/local"
override_path = true
[host."http://$PROXY/v2/local"]
  capabilities = ["pull", "resolve"]
  override_path = true
EOF
  "${CTR[@]}" images rm "$UP/e2e/signed:v1" >/dev/null
  "${CTR[@]}" images pull --plain-http --snapshotter native --hosts-dir "$C/certs.d2" "$UP/e2e/signed:v1" >/dev/null
  expect_fail "403 Forbidden" "${CTR[@]}" images pull --plain-http --snapshotter native --hosts-dir "$C/certs.d2" "$UP/e2e/unsigned:v1"
  echo "   ctr pulled through both hosts.toml forms"

  phase "containerd (ctr --user) through the authenticating proxy"
  mkdir -p "$C/certs.d3/$UP"
  cat >"$C/certs.d3/$UP/hosts.toml" <<EOF
server = "http://$AUTH_PROXY"
[host."http://$AUTH_PROXY"]
  capabilities = ["pull", "resolve"]
EOF
  CTR_AUTH=("${CTR[@]}" images pull --plain-http --snapshotter native --hosts-dir "$C/certs.d3")
  "${CTR[@]}" images rm "$UP/e2e/signed:v1" >/dev/null
  no_upstream_request expect_fail "401 Unauthorized" "${CTR_AUTH[@]}" "$UP/e2e/signed:v1"
  no_upstream_request expect_fail "401 Unauthorized" "${CTR_AUTH[@]}" --user alice:wrong-pw "$UP/e2e/signed:v1"
  no_upstream_request expect_fail "403 Forbidden" "${CTR_AUTH[@]}" --user bob:bob-pw "$UP/e2e/signed:v1"
  "${CTR_AUTH[@]}" --user alice:alice-pw "$UP/e2e/signed:v1" >/dev/null
  echo "   ctr --user alice pulled $UP/e2e/signed:v1 through the authenticating proxy"
fi

phase "metrics and stats"
curl -fsS "http://$PROXY/metrics" | grep -E '^notarize_proxy_(decisions_total|replica_size)' | sed 's/^/   /'
curl -fsS "http://$PROXY/notarize/v1/stats?digest=$SIGNED_DIGEST" | grep -E '"(allowed|denied)"' | sed 's/^/   /'
printf '\nE2E OK in %.1f s\n' "$(echo "$(date +%s.%N) - $T0" | bc)"
