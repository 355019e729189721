#!/usr/bin/env bash
# Make sure Debian's chromium is installed for the browser tests (Playwright drives it
# through executable_path; its own browser download is never used).
set -Eeuo pipefail
CHROMIUM=${STATIONMANAGER_CHROMIUM:-/usr/bin/chromium}
if [ -x "$CHROMIUM" ]; then
    exit 0
fi
echo "chromium not found at $CHROMIUM; installing Debian's chromium package" >&2
if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "error: run as root or install it yourself: apt-get install chromium" >&2; exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y --no-install-recommends chromium fonts-liberation >/dev/null 2>&1 || {
    $SUDO apt-get update -q >/dev/null
    $SUDO apt-get install -y --no-install-recommends chromium fonts-liberation >/dev/null
}
"$CHROMIUM" --version
