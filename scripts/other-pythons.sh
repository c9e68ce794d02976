#!/usr/bin/env bash
# The package on the other CPython versions it supports (requires-python >= 3.11; `make test` runs on
# python3). Each version found gets its own virtualenv, .venv-X.Y, and runs the given pytest arguments
# (by default the SDK's tests, what a merchant imports into an application of its own, on SQLite).
# A version not found is named and left out: which interpreters exist is the machine's business.
#   usage: scripts/other-pythons.sh [pytest args…]        PYTHON_VERSIONS="3.12 3.13" by default
set -euo pipefail
cd "$(dirname "$0")/.."

versions="${PYTHON_VERSIONS:-3.12 3.13}"
if [ $# -eq 0 ]; then
  set -- -q tests/test_client.py tests/test_client_faults.py tests/test_client_http11.py \
    tests/test_client_keys.py tests/test_client_live.py tests/test_client_operations.py tests/test_client_plugin.py \
    tests/test_client_transport.py tests/test_client_frameworks.py tests/test_client_timeouts.py \
    tests/test_client_connection.py tests/test_client_reprs.py \
    tests/test_protocol_vectors.py \
    tests/test_protocol_properties.py tests/test_peers.py tests/test_smoke.py
fi

# python3.X on PATH, else pyenv's copy (its shims answer "command not found" for a version that is
# installed but not selected).
find_python() {
  local v="$1" candidate
  if "python$v" --version >/dev/null 2>&1; then
    command -v "python$v"
    return
  fi
  if command -v pyenv >/dev/null 2>&1; then
    for candidate in "$(pyenv root)"/versions/"$v".*/bin/"python$v"; do
      if [ -x "$candidate" ]; then
        echo "$candidate"
        return
      fi
    done
  fi
}

./scripts/install-peers.sh  # tests/test_peers.py drives the npm peers too
missing=""
for v in $versions; do
  python="$(find_python "$v")"
  if [ -z "$python" ]; then
    missing="$missing $v"
    continue
  fi
  venv=".venv-$v"
  if [ ! -f "$venv/.installed" ] || [ pyproject.toml -nt "$venv/.installed" ]; then
    "$python" -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip
    "$venv/bin/pip" install -q -e '.[dev]'
    touch "$venv/.installed"
  fi
  echo "== $("$venv/bin/python" --version) =="
  WXPARTNER_TEST_BACKENDS="${WXPARTNER_TEST_BACKENDS:-sqlite}" "$venv/bin/pytest" "$@"
done
if [ -n "$missing" ]; then
  echo "not found here, so not tested:$missing"
fi
