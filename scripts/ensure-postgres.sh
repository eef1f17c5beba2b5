#!/usr/bin/env bash
# The PostgreSQL tests start a throwaway server; install PostgreSQL if this machine has none.
set -euo pipefail
if [ -n "${MEMTRACE_TEST_POSTGRES_URL:-}" ]; then exit 0; fi
if command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "PostgreSQL not found: installing Debian's postgresql for the tests" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql >/dev/null
    exit 0
fi
echo "PostgreSQL is needed for the tests: install it (apt-get install postgresql)" \
     "or set MEMTRACE_TEST_POSTGRES_URL to a server the tests may create databases on" >&2
exit 1
