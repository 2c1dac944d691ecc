# bench/lib.sh: the helpers every bench script shares. Source it once WORK
# (the script's scratch directory) is set:
#   . "$ROOT/bench/lib.sh"

# free_port: a loopback port nothing listens on, never one this run handed
# out before (they are recorded in $WORK/.ports): two ports picked before
# either is bound are never the same.
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 20000))
    grep -qx "$p" "$WORK/.ports" 2>/dev/null && continue
    (echo >/dev/tcp/127.0.0.1/$p) 2>/dev/null && continue
    echo "$p" >>"$WORK/.ports"
    echo "$p"
    return
  done
}

# wait_http URL [PID]: wait until URL answers 2xx, polling every 0.1 s for
# at most a minute; fails saying which URL, or at once (quietly) if PID is
# given and that process exits first.
wait_http() {
  local _
  for _ in $(seq 1 600); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    [[ -z ${2:-} ]] || kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  echo "$1 not up" >&2
  return 1
}

# cpu_ns PID: CPU time of a process's threads so far, in nanoseconds
# (schedstat).
# %.0f, not %d: mawk (Debian's awk) clamps %d to 2^31-1, 2.1 s of CPU.
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{n += $1} END {printf "%.0f\n", n}'; }

# cleanup: the EXIT/INT/TERM trap of a script that keeps the PIDs of the
# servers it started in PIDS: stops them (TERM, then waits for each),
# removes WORK if the script succeeded and otherwise keeps its logs, and
# exits with the script's status. A script with more to undo defines its
# own after sourcing this file (bench/verify-1m.sh).
cleanup() {
  local rc=$?
  set +e
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  [[ $rc -eq 0 ]] && rm -rf "$WORK" || echo "logs kept in $WORK/logs"
  exit $rc
}

# build_baseline REF: builds notarize-ledger from the commit REF into
# $BIN/base/ (a git worktree of $ROOT in $WORK/baseline, removed after),
# for the scripts' row@base variants; exits when the build fails.
build_baseline() {
  echo "   notarize-ledger from $1 ($(git -C "$ROOT" rev-parse --short "$1"))"
  git -C "$ROOT" worktree add --detach "$WORK/baseline" "$1" >/dev/null
  mkdir -p "$BIN/base"
  (cd "$WORK/baseline" && CGO_ENABLED=0 go build -trimpath -o "$BIN/base/" ./cmd/notarize-ledger) ||
    { git -C "$ROOT" worktree remove --force "$WORK/baseline"; exit 1; }
  git -C "$ROOT" worktree remove --force "$WORK/baseline"
}

# ledger_bin ROW: the notarize-ledger a row runs: REF's (build_baseline)
# for ROW@base, this tree's otherwise.
ledger_bin() { [[ $1 == *@base ]] && echo "$BIN/base/notarize-ledger" || echo "$BIN/notarize-ledger"; }
