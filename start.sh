#!/usr/bin/env bash
# Start the pipeline on this machine: ./start.sh [SERVICE...]; ./start.sh --help says more.
# Process management lives in stages/ops/fleet.py; this script only prepares the venv.
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

usage() {
    cat <<'EOF'
usage: ./start.sh [SERVICE...] [--timeout SECONDS]
       ./start.sh status [SERVICE...]
       ./start.sh --install-only

Starts the pipeline's services on this machine (no names = every service below; naming one
also starts what it depends on), waits until each answers its health check (60 s at most,
--timeout to change) and prints their URLs. Services already running are left as they are.
On failure it prints the end of the failed service's log and exits 1.

  status          table of services: pid, port, health (exit 0 = all healthy, 3 = not)
  --install-only  create or update .venv and stop there (./test.sh and CI use it)
  -h, --help      this text

Pid files and logs go under RUN_DIR (default .run: .run/logs/<service>.log). Ports and every
other setting come from environment variables (docs/configuration.md); with AWS_ENDPOINT_URL
set, no emulator is started and the resources are created on that endpoint.
./stop.sh [SERVICE...] stops them; ./test-pipeline.sh checks the running pipeline end to end.
It installs what the services need to run and nothing else; ./test.sh adds the dev tools.

The services (stages/ops/registry.py):
EOF
}

ensure_venv
case "${1:-}" in
    --install-only) exit 0 ;;
    status) shift; exec "$VENV/bin/python" -m stages.ops.fleet status "$@" ;;
    -h|--help)
        usage
        exec "$VENV/bin/python" -m stages.ops.fleet list ;;
esac
exec "$VENV/bin/python" -m stages.ops.fleet start "$@"
