#!/usr/bin/env bash
# End-to-end test of the running pipeline: ./test-pipeline.sh [--duration 30] [--rate 100] ...
# Starts the fleet if none of it runs (a partly-down fleet is a failure naming what is down),
# checks every /health, the streams and buckets, generates records for --duration seconds with an
# anomaly triggered halfway, waits until the consumer has flushed, then proves that every record
# the Ingestion Interface accepted is in S3 exactly once, in the partition of its service and UTC
# hour. Exit 0 = pass, 1 = a mismatch (printed), 2 = bad arguments. `--help` lists the options.
# Uses the fleet's environment (ports, AWS_ENDPOINT_URL, RUN_DIR, DATA_DIR, CONTROL_TOKEN).
# The work is done by stages/ops/pipeline_check.py.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if [[ ! -x .venv/bin/python ]]; then
    ./start.sh --install-only
fi
exec .venv/bin/python -m stages.ops.pipeline_check "$@"
