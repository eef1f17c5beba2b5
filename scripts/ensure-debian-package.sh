#!/usr/bin/env bash
# Usage: ensure-debian-package.sh PACKAGE PURPOSE
# Install Debian's PACKAGE when running as root with apt-get; otherwise say what is needed.
set -euo pipefail
package="$1"
purpose="$2"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "$package not found: installing Debian's $package for $purpose" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "$package" >/dev/null
    exit 0
fi
echo "$package is needed for $purpose: install it (apt-get install $package)" >&2
exit 1
