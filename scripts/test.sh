#!/usr/bin/env bash
# Sets up .venv, then runs the linter and every test (slow ones included).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow" -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The HTML report test renders the page in a real headless Chromium (Debian's package).
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "test: installing Debian's chromium (the HTML report test renders in it)"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
            || echo "test: chromium not installed: the HTML screenshot test is skipped"
    else
        echo "test: no chromium, none installable: the HTML screenshot test is skipped"
    fi
fi
# The container test starts Debian's dockerd and docker-compose 1.29 and builds a base image
# with debootstrap (tests/containers/test_compose_up.py); installed here when missing.
if ! command -v docker-compose >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1 \
        || ! command -v dockerd >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "test: installing Debian's docker-compose and debootstrap (container test)"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose debootstrap) \
            >/dev/null 2>&1 || echo "test: docker-compose not installed: the container test fails"
    else
        echo "test: no docker-compose/debootstrap here: the container tests are skipped"
    fi
fi
.venv/bin/ruff check .
.venv/bin/python -m pytest --durations=15 "$@"
