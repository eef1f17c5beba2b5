#!/usr/bin/env bash
# The console's browser tests drive Debian's Chromium; install it if this machine has none.
# Never a downloaded browser: Playwright's own browser download is not used.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Chromium not found: installing Debian's chromium for the console's browser tests" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium >/dev/null
    exit 0
fi
echo "Chromium is needed for the console's browser tests: install it (apt-get install chromium)" >&2
exit 1
