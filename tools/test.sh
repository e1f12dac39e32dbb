#!/usr/bin/env bash
# Install everything the tests need, then run the whole suite.
# Used as-is by .ci/run on a clean clone: every install step lives here.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# Debian packages the tests drive for real: "package:command" pairs (a
# command with a slash is a file pattern: postgresql's initdb and pg_ctl
# live in /usr/lib/postgresql/VERSION/bin, off the PATH).
# A test never skips when one is missing; it fails naming the package.
DEBS=(
    "redis-server:redis-server"
    "postgresql:/usr/lib/postgresql/*/bin/pg_ctl"
    "chromium:chromium"
    "nodejs:node"
    "npm:npm"
    "gcc:cc"
    "libssl-dev:/usr/include/openssl/ssl.h"
)
missing=()
for pair in "${DEBS[@]}"; do
    cmd=${pair#*:}
    if [[ $cmd == */* ]]; then
        compgen -G "$cmd" >/dev/null || missing+=("${pair%%:*}")
    else
        command -v "$cmd" >/dev/null 2>&1 || missing+=("${pair%%:*}")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "installing Debian packages: ${missing[*]}" >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "warning: missing Debian packages (need root to install): ${missing[*]}" >&2
    fi
fi

if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'
# pytest exits 5 when it collected no test; that is a failure here too.
exec .venv/bin/python -m pytest "$@"
