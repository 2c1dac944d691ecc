#!/usr/bin/env bash
# Make sure headless Chromium is installed for the browser tests (the proxy's
# dashboard, driven by chromedp) and print its path.
#
#   scripts/chromium.sh        # installs Debian's chromium if missing; prints /usr/bin/chromium
#
# Idempotent: when /usr/bin/chromium exists it only prints the path. It
# installs with apt-get (Debian's package; nothing is downloaded from
# elsewhere) and so needs root. When Chromium is missing and cannot be
# installed it prints a loud message and exits with code 77, the code the
# tests treat as "skip" (they then say why, loudly, in their t.Skip).
set -euo pipefail

readonly EXIT_UNAVAILABLE=77
readonly CHROMIUM=/usr/bin/chromium

loud() {
  {
    echo "################################################################################"
    echo "# scripts/chromium.sh: $*"
    echo "################################################################################"
  } >&2
}

if [ -x "$CHROMIUM" ]; then
  echo "$CHROMIUM"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  loud "chromium is not installed and this user is not root: cannot apt-get install it; the browser tests will skip"
  exit "$EXIT_UNAVAILABLE"
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null 2>&1; then
  apt-get update -qq
  if ! apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null; then
    loud "apt-get install chromium failed; the browser tests will skip"
    exit "$EXIT_UNAVAILABLE"
  fi
fi
if [ ! -x "$CHROMIUM" ]; then
  loud "chromium was installed but $CHROMIUM is missing"
  exit "$EXIT_UNAVAILABLE"
fi
echo "$CHROMIUM"
