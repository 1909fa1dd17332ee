#!/usr/bin/env bash
# Stop what ./start.sh started: ./stop.sh [SERVICE...]   (no names = everything)
# Only processes recorded under RUN_DIR (default .run) whose command line is still ours are
# signalled: SIGTERM (the consumer flushes its buffers), then SIGKILL after --timeout seconds
# (default 40).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if [[ ! -x .venv/bin/python ]]; then
    echo "nothing to stop: .venv does not exist (./start.sh creates it)"
    exit 0
fi
exec .venv/bin/python -m stages.common.fleet stop "$@"
