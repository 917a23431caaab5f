#!/usr/bin/env bash
# Make sure headless Chromium is available for the report rendering test (tests/test_report*.py).
# Installs Debian's `chromium` package when it is missing and we may use apt (root); otherwise says
# why and carries on: the browser test then skips with that reason.
set -uo pipefail
if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "browser: installing Debian's chromium for the report test" >&2
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q chromium >/dev/null 2>&1; then
        apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1 \
            || echo "browser: could not install chromium; the report rendering test will skip" >&2
    fi
else
    echo "browser: chromium not found and apt-get unavailable (not root); the report rendering test will skip" >&2
fi
exit 0
