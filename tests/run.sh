#!/usr/bin/env bash
# Install everything the test suite needs, then run it: Debian's prometheus (promtool) and chromium,
# and a virtualenv (.venv) holding metrics-bridge with its test extras. Extra arguments go to pytest.
# The suite runs on one pytest-xdist worker per CPU (-n auto; tests/conftest.py keeps each module that shares one
# costly fixture on one worker); `-n 0` among the arguments runs it in this process instead.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "tests/run.sh: installing ${missing[*]} from Debian" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test,bench]'
exec .venv/bin/python -m pytest -n auto "$@"
