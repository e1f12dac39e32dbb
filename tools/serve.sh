#!/usr/bin/env bash
# Install realtime into .venv and start it on the repo's example config
# (conf/realtime.toml: http 127.0.0.1:8080, https 127.0.0.1:8443).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q -e .
exec .venv/bin/realtime serve "$@"
