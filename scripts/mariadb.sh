#!/usr/bin/env bash
# Start and stop a throwaway MariaDB server on loopback for the ledger's
# MySQL tests and benchmarks (and for trying --storage mysql by hand).
#
#   scripts/mariadb.sh start DIR PORT   # data in DIR/data, socket DIR/sock; prints DSN=…
#   scripts/mariadb.sh stop DIR         # clean shutdown (then SIGKILL after 30 s)
#   scripts/mariadb.sh install          # only install mariadb-server if missing (CI)
#
# `start` installs Debian's mariadb-server when mariadbd is missing. When it
# cannot be installed it prints a loud message and exits with code 77, the
# code tests treat as "skip" (anything else non-zero is a failure). Starting
# again on an existing DIR keeps the data: that is how tests restart the
# database under a running ledger.
#
# The server listens on 127.0.0.1:PORT only, runs as root with --no-defaults
# (no system configuration is read or changed) and has a user
# notarize/notarize with every privilege, so tests can create one database each.
set -euo pipefail

readonly EXIT_UNAVAILABLE=77
readonly DB_NAME=notarize DB_USER=notarize DB_PASS=notarize

usage() {
  echo "usage: $0 start DIR PORT | stop DIR | install" >&2
  exit 2
}

loud() {
  {
    echo "################################################################################"
    echo "## scripts/mariadb.sh: $*"
    echo "################################################################################"
  } >&2
}

find_bin() { # find_bin NAME: print the path of NAME (PATH or /usr/sbin), or nothing
  command -v "$1" 2>/dev/null || { [ -x "/usr/sbin/$1" ] && echo "/usr/sbin/$1"; } || true
}

ensure_installed() {
  [ -n "$(find_bin mariadbd)" ] && return 0
  echo "mariadbd not found: installing Debian's mariadb-server" >&2
  if ! command -v apt-get >/dev/null || [ "$(id -u)" != 0 ]; then
    loud "MariaDB is not installed and cannot be installed here (need root and apt-get). MySQL tests will be SKIPPED."
    exit "$EXIT_UNAVAILABLE"
  fi
  # Keep the package's maintainer scripts from starting a system-wide server.
  local policy=/usr/sbin/policy-rc.d created=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 0755 "$policy" && created=1
  fi
  local ok=1 log
  log=$(mktemp)
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mariadb-server mariadb-client; } >"$log" 2>&1 || ok=
  [ -n "$created" ] && rm -f "$policy"
  if [ -z "$ok" ] || [ -z "$(find_bin mariadbd)" ]; then
    tail -n 20 "$log" >&2
    rm -f "$log"
    loud "apt-get could not install mariadb-server. MySQL tests will be SKIPPED."
    exit "$EXIT_UNAVAILABLE"
  fi
  rm -f "$log"
  echo "installed $("$(find_bin mariadbd)" --version)" >&2
}

client() { # client DIR ARGS…: the mariadb client as root over the socket
  local dir=$1
  shift
  "$(find_bin mariadb)" --no-defaults --protocol=socket --socket="$dir/sock" -uroot "$@"
}

start() {
  local dir=$1 port=$2
  [[ "$port" =~ ^[0-9]+$ ]] || usage
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  ensure_installed
  if [ -f "$dir/mariadbd.pid" ] && kill -0 "$(cat "$dir/mariadbd.pid")" 2>/dev/null; then
    echo "MariaDB already running in $dir (pid $(cat "$dir/mariadbd.pid"))" >&2
  else
    # A private tmpdir: servers started at once (parallel test packages) must
    # not share /tmp for their temporary tables.
    mkdir -p "$dir/tmp"
    if [ ! -d "$dir/data/mysql" ]; then
      "$(find_bin mariadb-install-db)" --no-defaults --datadir="$dir/data" --tmpdir="$dir/tmp" --user=root \
        --auth-root-authentication-method=normal --skip-test-db >"$dir/install.log" 2>&1 || {
        cat "$dir/install.log" >&2
        echo "mariadb-install-db failed" >&2
        exit 1
      }
    fi
    # setsid: the server outlives this script and is not in the caller's process group.
    setsid "$(find_bin mariadbd)" --no-defaults --datadir="$dir/data" --tmpdir="$dir/tmp" --user=root \
      --bind-address=127.0.0.1 --port="$port" --socket="$dir/sock" --pid-file="$dir/mariadbd.pid" \
      --log-error="$dir/error.log" --skip-name-resolve --max-connections=500 \
      --innodb-buffer-pool-size=128M ${MARIADB_EXTRA_ARGS:-} </dev/null >/dev/null 2>&1 &
    local pid=$!
    local i
    for i in $(seq 1 300); do # 30 s
      if client "$dir" -e 'SELECT 1' >/dev/null 2>&1; then
        break
      fi
      if ! kill -0 "$pid" 2>/dev/null; then
        tail -n 30 "$dir/error.log" >&2 || true
        echo "mariadbd exited during start-up" >&2
        exit 1
      fi
      sleep 0.1
    done
    client "$dir" -e 'SELECT 1' >/dev/null || {
      tail -n 30 "$dir/error.log" >&2 || true
      echo "mariadbd did not become ready in 30 s" >&2
      exit 1
    }
  fi
  client "$dir" -e "CREATE DATABASE IF NOT EXISTS \`$DB_NAME\`;
    CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
    GRANT ALL PRIVILEGES ON *.* TO '$DB_USER'@'127.0.0.1';"
  echo "DSN=$DB_USER:$DB_PASS@tcp(127.0.0.1:$port)/$DB_NAME"
}

stop() {
  local dir=$1 pid
  [ -f "$dir/mariadbd.pid" ] || { echo "no MariaDB pid file in $dir" >&2; return 0; }
  pid=$(cat "$dir/mariadbd.pid")
  kill -0 "$pid" 2>/dev/null || { rm -f "$dir/mariadbd.pid"; return 0; }
  kill -TERM "$pid" # mariadbd shuts down cleanly on SIGTERM
  local i
  for i in $(seq 1 300); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$dir/mariadbd.pid"; return 0; }
    sleep 0.1
  done
  echo "mariadbd $pid did not stop in 30 s: killing it" >&2
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$dir/mariadbd.pid"
}

case "${1:-}" in
start) [ $# -eq 3 ] || usage; start "$2" "$3" ;;
stop) [ $# -eq 2 ] || usage; stop "$2" ;;
install) [ $# -eq 1 ] || usage; ensure_installed ;;
*) usage ;;
esac
