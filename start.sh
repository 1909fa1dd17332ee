#!/usr/bin/env bash
# Start the pipeline locally: ./start.sh [SERVICE...]   (no names = every service)
#   ./start.sh status          table of services: pid, port, health (exit 0 = all healthy)
#   ./start.sh --install-only  create/update .venv and stop there (test.sh and CI use it)
# It installs what the services need to run and nothing else; ./test.sh adds the dev tools.
# Process management lives in stages/common/fleet.py; this script only prepares the venv.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

VENV=.venv
MARKER="$VENV/.stages-installed"
PYTHON=${PYTHON:-python3}

ensure_venv() {
    if [[ ! -x "$VENV/bin/python" ]]; then
        if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "error: Python 3.11+ is needed; set PYTHON=/path/to/python3.11" >&2
            exit 1
        fi
        echo "==> creating virtual environment $VENV ($("$PYTHON" --version))"
        "$PYTHON" -m venv "$VENV"
    fi
    # Reinstall when pyproject.toml changed since the last successful install, so a pulled
    # dependency bump takes effect without anyone having to remember it.
    if [[ ! -f "$MARKER" || pyproject.toml -nt "$MARKER" ]]; then
        echo "==> installing the project into $VENV (pip install -e .)"
        "$VENV/bin/python" -m pip install --disable-pip-version-check -e .
        touch "$MARKER"
        echo "==> install done"
    fi
}

ensure_venv
case "${1:-}" in
    --install-only) exit 0 ;;
    status) shift; exec "$VENV/bin/python" -m stages.common.fleet status "$@" ;;
    -h|--help)
        sed -n '2,5p' "$0"
        exec "$VENV/bin/python" -m stages.common.fleet list ;;
esac
exec "$VENV/bin/python" -m stages.common.fleet start "$@"
