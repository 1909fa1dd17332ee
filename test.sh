#!/usr/bin/env bash
# The test command: ./test.sh [pytest args...]
# Installs the project into .venv if needed, then runs the whole suite. CI runs exactly this.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

./start.sh --install-only

# --- UI test prerequisites -------------------------------------------------------------------
# The browser tests drive the system Chromium through Playwright (no Playwright-downloaded
# browser: there is no internet in CI). Install Debian's package when it is missing.
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [[ ! -x "$CHROMIUM" ]]; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        echo "==> installing Chromium for the browser tests (apt-get install chromium)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q chromium >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }
    else
        echo "error: $CHROMIUM is missing; install Debian's chromium package (sudo apt-get install chromium)" >&2
        exit 1
    fi
fi
echo "==> browser: $("$CHROMIUM" --version 2>/dev/null | head -1)"
# The spool's power-loss test records its syscalls with strace.
if ! command -v strace >/dev/null; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        echo "==> installing strace for the spool's durability test (apt-get install strace)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q strace >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null && apt-get install -y -q strace >/dev/null; }
    else
        echo "error: strace is missing; install Debian's strace package (sudo apt-get install strace)" >&2
        exit 1
    fi
fi
# ----------------------------------------------------------------------------------------------

# Most slow tests wait on real processes (fleets, outages, flush timers) rather than compute, so
# three workers on two cores finish the suite in about half the time of one. A whole file runs
# on one worker: its module fixtures (a fleet, an emulator) are started once.
WORKERS=${TEST_WORKERS:-3}
set +e
.venv/bin/pytest -q -n "$WORKERS" --dist loadfile "$@"
rc=$?
set -e
if [[ $rc -eq 5 ]]; then
    # pytest's "no tests collected" is a broken suite or a bad selection, never a pass.
    echo "error: pytest collected no tests" >&2
    exit 1
fi
exit $rc
