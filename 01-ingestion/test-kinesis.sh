#!/usr/bin/env bash
# End-to-end check of Stage 01: put ONE uniquely marked log record on stage01-logs-stream and wait
# until the consumer has written it, exactly once, to its hour partition in s3://md-raw-logs.
#
#   01-ingestion/test-kinesis.sh [TIMEOUT_SECONDS]        (default 30)
#
# Environment (same names as the services use):
#   AWS_ENDPOINT_URL   emulator / LocalStack endpoint (default http://localhost:4566)
#   CONSUMER_PORT      the consumer's health port (default 8011); CONSUMER_HOST (default 127.0.0.1)
#   TEST_SERVICE       the record's service, i.e. its lake partition (default test-kinesis)
#   STREAM_PREFIX, BUCKET_PREFIX   as the services: the stream and bucket are <prefix>logs-stream
#                      and <prefix>raw-logs (defaults stage01-, md-)
# Exit 0 when the record is in the lake exactly once; 1 otherwise, saying what is missing.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

TIMEOUT=${1:-30}
STREAM=${STREAM_PREFIX:-stage01-}logs-stream
BUCKET=${BUCKET_PREFIX:-md-}raw-logs
SERVICE=${TEST_SERVICE:-test-kinesis}
export AWS_ENDPOINT_URL=${AWS_ENDPOINT_URL:-http://localhost:4566}
# The AWS CLI reads AWS_DEFAULT_REGION only; AWS_REGION wins, as for the services.
export AWS_DEFAULT_REGION=${AWS_REGION:-${AWS_DEFAULT_REGION:-us-east-1}}
# The local emulator's documented default credentials, only when none are configured.
if [[ -z "${AWS_ACCESS_KEY_ID:-}" && -z "${AWS_PROFILE:-}" && ! -f "${HOME:-/nonexistent}/.aws/credentials" ]]; then
    export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
fi
CONSUMER_HOST=${CONSUMER_HOST:-127.0.0.1}
[[ "$CONSUMER_HOST" == "0.0.0.0" ]] && CONSUMER_HOST=127.0.0.1
HEALTH_URL="http://${CONSUMER_HOST}:${CONSUMER_PORT:-8011}/health"

fail() { echo "FAIL: $*" >&2; exit 1; }

# The project's venv has both; PATH is the fallback for a machine that only has the CLI.
if [[ -x "$ROOT/.venv/bin/aws" ]]; then AWS="$ROOT/.venv/bin/aws"; else AWS=$(command -v aws) || fail "no AWS CLI: run ./start.sh (it installs one into .venv) or install awscli"; fi
if [[ -x "$ROOT/.venv/bin/python" ]]; then PY="$ROOT/.venv/bin/python"; else PY=$(command -v python3) || fail "python3 is needed"; fi
aws_() { "$AWS" --endpoint-url "$AWS_ENDPOINT_URL" "$@"; }

# 1. Fail fast, before putting anything on the stream, when nobody would consume it.
if ! "$PY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=3)' "$HEALTH_URL" 2>/dev/null; then
    fail "the Kinesis consumer is not running or not healthy ($HEALTH_URL does not answer 200); start it with ./start.sh kinesis-consumer"
fi
aws_ kinesis describe-stream-summary --stream-name "$STREAM" >/dev/null 2>&1 \
    || fail "stream $STREAM not found at $AWS_ENDPOINT_URL (is the emulator / LocalStack up and provisioned?)"

# 2. One record in the canonical shape; its event_id is the marker searched for in the lake.
{ read -r EVENT_ID; read -r RECORD; read -r PREFIX; } < <("$PY" - "$SERVICE" <<'PY'
import json, socket, sys, uuid
from datetime import datetime, timezone
service = sys.argv[1]
now = datetime.now(timezone.utc)
event_id = str(uuid.uuid4())
record = {
    "event_id": event_id,
    "timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
    "kind": "log",
    "service": service,
    "host": socket.gethostname(),
    "level": "INFO",
    "message": f"test-kinesis.sh marker {event_id}",
    "log_type": "test_kinesis",
    "category": "monitoring",
    "source": "test-kinesis.sh",
    "anomaly_score": 0,
    "is_anomaly": False,
    "scenario_id": None,
    "anomaly_type": None,
    "attributes": {},
}
# The consumer partitions by the record's own UTC hour, so the expected prefix is fixed now.
prefix = now.strftime(f"service={service}/year=%Y/month=%m/day=%d/hour=%H/")
print(event_id, json.dumps(record, separators=(",", ":")), prefix, sep="\n")
PY
)

# AWS CLI v2 base64-decodes blob arguments unless told the input is raw; v1 takes them raw.
BINARY_FORMAT=()
if "$AWS" --version 2>&1 | grep -q '^aws-cli/2'; then BINARY_FORMAT=(--cli-binary-format raw-in-base64-out); fi
PUT=$(aws_ kinesis put-record --stream-name "$STREAM" --partition-key "$SERVICE" \
    --data "$RECORD" "${BINARY_FORMAT[@]}" --query '[ShardId,SequenceNumber]' --output text) \
    || fail "put-record to $STREAM failed"
echo "put event_id=$EVENT_ID on $STREAM ($PUT)"
echo "waiting up to ${TIMEOUT}s for it in s3://$BUCKET/$PREFIX"

# 3. Count the records carrying the marker across every object of that partition.
count_marker() {
    local keys key total=0 n
    keys=$(aws_ s3api list-objects-v2 --bucket "$BUCKET" --prefix "$PREFIX" \
        --query 'Contents[].Key' --output text 2>/dev/null) || { echo "0 0"; return; }
    OBJECTS=0
    for key in $keys; do
        [[ "$key" == "None" ]] && continue
        OBJECTS=$((OBJECTS + 1))
        if [[ "$key" == *.gz ]]; then
            n=$(aws_ s3 cp "s3://$BUCKET/$key" - | gzip -dc | grep -c -F "$EVENT_ID" || true)
        else
            n=$(aws_ s3 cp "s3://$BUCKET/$key" - | grep -c -F "$EVENT_ID" || true)
        fi
        total=$((total + n))
    done
    echo "$total $OBJECTS"
}

START=$(date +%s)
while :; do
    read -r FOUND OBJECTS < <(count_marker)
    ELAPSED=$(($(date +%s) - START))
    if [[ "$FOUND" -eq 1 ]]; then
        echo "OK: record $EVENT_ID is in s3://$BUCKET/$PREFIX exactly once (after ${ELAPSED}s)"
        exit 0
    fi
    if [[ "$FOUND" -gt 1 ]]; then
        fail "record $EVENT_ID is in s3://$BUCKET/$PREFIX $FOUND times (duplicates)"
    fi
    if [[ "$ELAPSED" -ge "$TIMEOUT" ]]; then
        fail "record $EVENT_ID not in s3://$BUCKET/$PREFIX after ${TIMEOUT}s ($OBJECTS objects there); see the consumer's log (.run/logs/kinesis-consumer.log)"
    fi
    echo "  ... ${ELAPSED}s: not there yet ($OBJECTS objects under the prefix)"
    sleep 1
done
