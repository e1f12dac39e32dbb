#!/usr/bin/env bash
# Install everything the tests need into .venv, then run the whole suite.
# Used as-is by .ci/run on a clean clone: every install step lives here.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'
# pytest exits 5 when it collected no test; that is a failure here too.
exec .venv/bin/python -m pytest "$@"
