#!/usr/bin/env bash
# Sets up .venv, then runs the linter and every test (slow ones included).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow" -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The HTML report test renders the page in a real headless Chromium (Debian's package).
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "test: installing Debian's chromium with apt-get (the HTML report test renders the page in it)"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
            || echo "chromium could not be installed: the HTML screenshot test will be skipped"
    else
        echo "chromium is missing and cannot be installed here: the HTML screenshot test will be skipped"
    fi
fi
.venv/bin/ruff check .
.venv/bin/python -m pytest --durations=15 "$@"
