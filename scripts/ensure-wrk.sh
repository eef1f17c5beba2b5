#!/usr/bin/env bash
# The benchmarks drive the server with wrk; install Debian's package if it is missing.
set -euo pipefail
if command -v wrk >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "wrk not found: installing Debian's wrk for the benchmarks" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq wrk >/dev/null
    exit 0
fi
echo "wrk is needed for the benchmarks: install it (apt-get install wrk)" >&2
exit 1
