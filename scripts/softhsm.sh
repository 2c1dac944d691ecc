#!/usr/bin/env bash
# Installs SoftHSM2 (Debian's softhsm2, a real PKCS#11 module) and
# initialises tokens in a directory of their own: the HSM of the plugin's
# `key generate --pkcs11 …` tests.
#
#   scripts/softhsm.sh install                   # apt-get install softhsm2 if absent; prints the module path
#   scripts/softhsm.sh init DIR LABEL SO-PIN PIN # a token LABEL in DIR; prints SOFTHSM2_CONF=DIR/softhsm2.conf
#
# Nothing outside DIR is touched by init: the configuration file points the
# module at DIR/tokens, and programs use it with SOFTHSM2_CONF set. The
# PINs given to init are test PINs; never use this for real keys.
set -euo pipefail

readonly EXIT_UNAVAILABLE=77

usage() {
  echo "usage: $0 install | init DIR LABEL SO-PIN PIN" >&2
  exit 2
}

loud() {
  {
    echo "################################################################################"
    echo "## scripts/softhsm.sh: $*"
    echo "################################################################################"
  } >&2
}

module_path() {
  local p
  for p in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so \
    /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so /usr/local/lib/softhsm/libsofthsm2.so; do
    if [ -f "$p" ]; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

install_softhsm() {
  if command -v softhsm2-util >/dev/null && module_path >/dev/null; then
    module_path
    return 0
  fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    loud "softhsm2 is not installed and cannot be (needs root and apt-get). PKCS#11 tests will be SKIPPED."
    exit "$EXIT_UNAVAILABLE"
  fi
  echo "installing softhsm2 (Debian package)" >&2
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq softhsm2; } >&2; then
    loud "apt-get install softhsm2 failed. PKCS#11 tests will be SKIPPED."
    exit "$EXIT_UNAVAILABLE"
  fi
  module_path
}

init_token() {
  local dir=$1 label=$2 sopin=$3 pin=$4
  install_softhsm >/dev/null
  mkdir -p "$dir/tokens"
  dir=$(cd "$dir" && pwd)
  cat >"$dir/softhsm2.conf" <<CONF
# Written by scripts/softhsm.sh: tokens of this directory only.
directories.tokendir = $dir/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
  SOFTHSM2_CONF=$dir/softhsm2.conf softhsm2-util --init-token --free --label "$label" \
    --so-pin "$sopin" --pin "$pin" >&2
  echo "SOFTHSM2_CONF=$dir/softhsm2.conf"
}

case ${1:-} in
install) install_softhsm ;;
init) [ $# -eq 5 ] || usage; init_token "$2" "$3" "$4" "$5" ;;
*) usage ;;
esac
