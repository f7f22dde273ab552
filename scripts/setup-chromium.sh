#!/usr/bin/env bash
# Installs Debian's chromium for the headless browser test (conformance/browser). Idempotent:
# does nothing when /usr/bin/chromium (or $CHROMIUM) already runs. Needs root (or sudo) and
# the Debian mirror; nothing is downloaded from elsewhere (no Playwright browser download).
set -euo pipefail
bin="${CHROMIUM:-/usr/bin/chromium}"
if [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; then
	echo "chromium present: $("$bin" --version)"
	exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists only when they are missing or older than a day.
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -1)" ]; then
	$sudo apt-get update -qq
fi
$sudo apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
echo "installed: $(/usr/bin/chromium --version)"
