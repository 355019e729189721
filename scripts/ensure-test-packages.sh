#!/usr/bin/env bash
# Make sure the Debian packages the tests use are installed:
# - chromium, for the browser tests (Playwright drives it through executable_path; its own
#   browser download is never used) — required;
# - fuse3, to serve a slowed folder source through FUSE (tests/integration/servers.py) —
#   optional: without it that one test is skipped and says why.
set -Eeuo pipefail
CHROMIUM=${STATIONMANAGER_CHROMIUM:-/usr/bin/chromium}
missing=()
[ -x "$CHROMIUM" ] || missing+=(chromium fonts-liberation)
command -v fusermount3 >/dev/null || missing+=(fuse3)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing Debian packages for the tests: ${missing[*]}" >&2
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
        SUDO="none"
    fi
    export DEBIAN_FRONTEND=noninteractive
    if [ "$SUDO" != none ]; then
        $SUDO apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
            $SUDO apt-get update -q >/dev/null
            $SUDO apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null || true
        }
    fi
fi
if [ ! -x "$CHROMIUM" ]; then
    echo "error: chromium not found at $CHROMIUM; run as root or install it yourself: apt-get install chromium" >&2
    exit 1
fi
command -v fusermount3 >/dev/null || echo "note: fuse3 is not installed; the slowed-folder test will be skipped" >&2
"$CHROMIUM" --version
