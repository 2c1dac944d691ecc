#!/usr/bin/env bash
# Stops what a `make run`, `make run-mysql` or `make run-witnessed` of this
# checkout started (`make stop`), from the pid files scripts/run-stack.sh
# keeps in DATA/run/ while it runs.
#
#   DATA=./.notarize scripts/stop-stack.sh
#
# It sends SIGTERM to run-stack.sh, which stops its processes (proxy,
# ledger, witnesses, MariaDB) and removes the pid files, and waits for it.
# When run-stack.sh is gone but left pid files behind (it was killed with
# SIGKILL), it stops the processes those files name itself, each only if it
# still is the program the file was written for. Exit 0 also when nothing runs.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA=${DATA:-$ROOT/.notarize}
RUN=$DATA/run

alive() { [[ -n $1 ]] && kill -0 "$1" 2>/dev/null; }
pidof_file() { [[ -f $1 ]] && tr -cd '0-9' <"$1" || true; }
# is_prog PID WORD: the process's command line contains WORD.
is_prog() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q -- "$2"; }
wait_gone() { # wait_gone PID SECONDS
  local i
  for i in $(seq 1 $(($2 * 10))); do alive "$1" || return 0; sleep 0.1; done
  return 1
}

if [[ ! -d $RUN ]]; then
  echo "nothing to stop: no $RUN"
  exit 0
fi

stack=$(pidof_file "$RUN/stack.pid")
if alive "$stack" && is_prog "$stack" run-stack.sh; then
  echo "stopping run-stack.sh (pid $stack) on $DATA"
  kill -TERM "$stack"
  if wait_gone "$stack" 40; then
    echo "stopped"
  else
    echo "run-stack.sh $stack did not stop in 40 s; stopping its processes directly" >&2
    kill -KILL "$stack" 2>/dev/null || true
  fi
fi

# Whatever is left: run-stack.sh was killed before it could clean up.
left=0
for f in proxy ledger; do
  pid=$(pidof_file "$RUN/$f.pid")
  if alive "$pid" && is_prog "$pid" "notarize-$f"; then
    echo "stopping notarize-$f (pid $pid)"
    kill -TERM "$pid"
    wait_gone "$pid" 15 || kill -KILL "$pid" 2>/dev/null || true
    left=1
  fi
  rm -f "$RUN/$f.pid"
done
if [[ -f $RUN/witnesses ]]; then
  while read -r d; do "$ROOT/scripts/witness.sh" stop "$d" || true; done <"$RUN/witnesses"
  left=1
fi
if [[ -f $RUN/mariadb.dir ]]; then
  "$ROOT/scripts/mariadb.sh" stop "$(cat "$RUN/mariadb.dir")" || true
  left=1
fi
rm -f "$RUN/stack.pid" "$RUN/witnesses" "$RUN/mariadb.dir"
if [[ -z $stack ]] && ((left == 0)); then
  echo "nothing to stop on $DATA"
fi
