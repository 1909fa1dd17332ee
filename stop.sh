#!/usr/bin/env bash
# Stop what ./start.sh started: ./stop.sh [SERVICE...]; ./stop.sh --help says more.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

case "${1:-}" in
    -h|--help)
        cat <<'EOF'
usage: ./stop.sh [SERVICE...] [--timeout SECONDS]

Stops what ./start.sh started (no names = every service; dependents first, so the consumer's
last flush still reaches the emulator). Only processes recorded under RUN_DIR (default .run)
whose command line is still the service's are signalled: SIGTERM (the consumer flushes its
buffers), then SIGKILL after --timeout seconds (default 40). Exit 0 when all are stopped.
EOF
        exit 0 ;;
esac

if [[ ! -x .venv/bin/python ]]; then
    echo "nothing to stop: .venv does not exist (./start.sh creates it)"
    exit 0
fi
exec .venv/bin/python -m stages.ops.fleet stop "$@"
