#!/usr/bin/env bash
# The test command: ./test.sh [pytest args...]
# Installs the project into .venv if needed, runs the Compose job, then the whole suite
# (ci/compose-smoke.sh: the compose files for real on a private Docker engine, as root; about
# 10 minutes from nothing, 6.5 with its cache). CI runs exactly this. COMPOSE_SMOKE=skip leaves
# the Compose job out, and so does a pytest selection (arguments), which is a partial run anyway.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

./start.sh --install-only
# The test, lint and benchmark tools (and the AWS CLI some tests drive): the dev extra, which
# ./start.sh leaves out of a user's venv. Reinstalled when pyproject.toml changes.
DEV_MARKER=.venv/.stages-dev-installed
if [[ ! -f "$DEV_MARKER" || pyproject.toml -nt "$DEV_MARKER" ]]; then
    echo "==> installing the dev tools into .venv (pip install -e '.[dev]')"
    .venv/bin/python -m pip install --disable-pip-version-check -e '.[dev]'
    touch "$DEV_MARKER"
fi

# --- System packages the tests use ----------------------------------------------------------
# install_debian PACKAGE WHY: apt-get install PACKAGE as root, or say what to install and stop.
install_debian() {
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        echo "==> installing $1 $2 (apt-get install $1)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q "$1" >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null && apt-get install -y -q "$1" >/dev/null; }
    else
        echo "error: $1 is missing; install Debian's $1 package (sudo apt-get install $1)" >&2
        exit 1
    fi
}
# The browser tests drive the system Chromium through Playwright (no Playwright-downloaded
# browser: there is no internet in CI).
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
[[ -x "$CHROMIUM" ]] || install_debian chromium "for the browser tests"
echo "==> browser: $("$CHROMIUM" --version 2>/dev/null | head -1)"
# The spool's power-loss test records its syscalls with strace.
command -v strace >/dev/null || install_debian strace "for the spool's durability test"
# ----------------------------------------------------------------------------------------------

# The Compose job runs first (a full run only: with arguments, pytest alone runs), so pytest's
# summary stays the last thing printed; its result counts even when pytest then passes.
smoke_rc=0
if [[ $# -eq 0 ]]; then
    ci/compose-smoke.sh || smoke_rc=$?
    if [[ $smoke_rc -ne 0 ]]; then
        echo "error: the Compose job (ci/compose-smoke.sh) failed; pytest runs anyway" >&2
    fi
fi

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
if [[ $smoke_rc -ne 0 ]]; then
    echo "error: the Compose job (ci/compose-smoke.sh) failed (exit $smoke_rc)" >&2
    [[ $rc -ne 0 ]] || rc=$smoke_rc
fi
exit $rc
