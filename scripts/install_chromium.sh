#!/usr/bin/env bash
# Make sure a headless-capable Chromium is installed (Debian's `chromium` package), for the
# report screenshot check and the browser tests. Does nothing when one is on PATH; otherwise
# says so on stderr first, then installs it with apt-get (root only; one time, ~300 MB).
#
#   scripts/install_chromium.sh        (also: make browser)
#
# Prints the browser's path on stdout.
set -euo pipefail

browser=$(command -v chromium || command -v chromium-browser || true)
if [[ -z "$browser" ]]; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "$0: chromium is not installed; run: sudo apt-get install -y chromium (or sudo make browser)" >&2
    exit 2
  fi
  echo "installing Debian chromium with apt-get (one time, ~300 MB)..." >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  browser=$(command -v chromium)
fi
echo "$browser"
