#!/usr/bin/env bash
# Render a medvl report page in headless Chromium and save a screenshot, to check by eye that
# the self-contained HTML (tables, inline CSS, base64 plots) displays as intended.
#
#   scripts/check_report_html.sh REPORT.html OUT.png [WIDTHxHEIGHT]
#
# Uses Debian's chromium; when missing and running as root, scripts/install_chromium.sh (also
# `make browser`) installs it with apt-get after saying so on stderr. The flags keep
# Chromium offline and stateless: a throwaway profile, no sync, no component updates, no QUIC.
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 REPORT.html OUT.png [WIDTHxHEIGHT]" >&2
  exit 2
fi
report=$(realpath "$1")
out=$(realpath -m "$2")
size=${3:-1200x2000}
[[ -f "$report" ]] || { echo "$0: $report: no such file" >&2; exit 2; }

# Installs chromium when missing (root), saying so on stderr first; same as `make browser`.
browser=$(bash "$(dirname "$0")/install_chromium.sh")

profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --hide-scrollbars --window-size="${size/x/,}" \
  --screenshot="$out" "file://$report" 2>/dev/null
[[ -s "$out" ]] || { echo "$0: chromium wrote no screenshot to $out" >&2; exit 1; }
echo "screenshot: $out"
