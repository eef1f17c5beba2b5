#!/usr/bin/env bash
# The benchmarks drive the server with wrk; install Debian's package if it is missing.
set -euo pipefail
if command -v wrk >/dev/null 2>&1; then exit 0; fi
exec "$(dirname "$0")/ensure-debian-package.sh" wrk "the benchmarks"
