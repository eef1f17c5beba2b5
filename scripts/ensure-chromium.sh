#!/usr/bin/env bash
# The console's browser tests drive Debian's Chromium; install it if this machine has none.
# Never a downloaded browser: Playwright's own browser download is not used.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then exit 0; fi
exec "$(dirname "$0")/ensure-debian-package.sh" chromium "the console's browser tests"
