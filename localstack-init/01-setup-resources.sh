#!/usr/bin/env bash
# LocalStack ready hook (mounted into /etc/localstack/init/ready.d): creates the same streams,
# buckets and lease tables as the embedded emulator (stages/common/resources.py + provision.py).
# Idempotent: whatever exists is kept. tests/ops/test_localstack_init.py runs this script against
# the embedded emulator and compares the result with the Python catalogue, so the two stay equal.
#
# Same environment variables and defaults as stages/common/config.py.
set -euo pipefail

LOGS_STREAM_SHARDS=${LOGS_STREAM_SHARDS:-2}
METRICS_STREAM_SHARDS=${METRICS_STREAM_SHARDS:-1}
APM_STREAM_SHARDS=${APM_STREAM_SHARDS:-1}
LEASE_TABLE=${LEASE_TABLE:-stage01-consumer-leases}
ETL_LEASE_TABLE=${ETL_LEASE_TABLE:-stage02-etl-leases}
DETECTION_LEASE_TABLE=${DETECTION_LEASE_TABLE:-stage04-detection-leases}
STREAM_PREFIX=${STREAM_PREFIX:-stage01-}
BUCKET_PREFIX=${BUCKET_PREFIX:-md-}
ALERT_QUEUE=${ALERT_QUEUE:-stage06-alerts.fifo}
# As stages.common.aws.region: AWS_REGION wins over AWS_DEFAULT_REGION.
REGION=${AWS_REGION:-${AWS_DEFAULT_REGION:-us-east-1}}

# stream name -> shard count, in the catalogue's order (resources.streams()).
STREAMS=(
    "${STREAM_PREFIX}logs-stream:$LOGS_STREAM_SHARDS"
    "${STREAM_PREFIX}metrics-stream:$METRICS_STREAM_SHARDS"
    "${STREAM_PREFIX}apm-stream:$APM_STREAM_SHARDS"
)
# resources.buckets(): the three raw buckets, then the later stages' ones.
BUCKETS=()
for suffix in raw-logs raw-metrics raw-apm processed features models; do
    BUCKETS+=("${BUCKET_PREFIX}${suffix}")
done

# awslocal prints a deprecation banner on every call; it says nothing about our resources.
export DISABLE_DEPRECATION_NOTICE=1
AWSLOCAL=${AWSLOCAL:-awslocal}
aws_() { "$AWSLOCAL" "$@"; }

# One listing call per service: each CLI start costs most of a second.
existing_streams=" $(aws_ kinesis list-streams --query 'StreamNames' --output text | tr '\t' ' ') "
for entry in "${STREAMS[@]}"; do
    name=${entry%%:*} shards=${entry##*:}
    if [[ "$existing_streams" == *" $name "* ]]; then
        have=$(aws_ kinesis describe-stream-summary --stream-name "$name" \
            --query 'StreamDescriptionSummary.OpenShardCount' --output text)
        if [[ "$have" != "$shards" ]]; then
            # Resharding live data is an operator's decision, not a start-up side effect.
            echo "WARNING: stream $name exists with $have open shards (configured: $shards); left as is"
        else
            echo "stream $name exists ($have shards)"
        fi
    else
        aws_ kinesis create-stream --stream-name "$name" --shard-count "$shards"
        echo "created stream $name ($shards shards)"
    fi
done

existing_buckets=" $(aws_ s3api list-buckets --query 'Buckets[].Name' --output text | tr '\t' ' ') "
for bucket in "${BUCKETS[@]}"; do
    if [[ "$existing_buckets" == *" $bucket "* ]]; then
        echo "bucket $bucket exists"
        continue
    fi
    if [[ "$REGION" == "us-east-1" ]]; then
        aws_ s3api create-bucket --bucket "$bucket" >/dev/null
    else
        aws_ s3api create-bucket --bucket "$bucket" \
            --create-bucket-configuration "LocationConstraint=$REGION" >/dev/null
    fi
    echo "created bucket $bucket"
done

# Key schema as in stages/common/resource_setup.py: one item per lease, keyed by lease_key
# (resources.lease_tables(): the consumer's shard leases, the ETL writer's lease, detection's
# service leases).
for table in "$LEASE_TABLE" "$ETL_LEASE_TABLE" "$DETECTION_LEASE_TABLE"; do
    if aws_ dynamodb describe-table --table-name "$table" >/dev/null 2>&1; then
        echo "table $table exists"
    else
        aws_ dynamodb create-table --table-name "$table" \
            --attribute-definitions AttributeName=lease_key,AttributeType=S \
            --key-schema AttributeName=lease_key,KeyType=HASH \
            --billing-mode PAY_PER_REQUEST >/dev/null
        echo "created table $table"
    fi
done

# The alert queue and its dead-letter queue, as provision.ensure_alert_queues makes them
# (CreateQueue with the same attributes is idempotent).
dead_letter_queue="${ALERT_QUEUE%.fifo}-dlq.fifo"
dlq_url=$(aws_ sqs create-queue --queue-name "$dead_letter_queue" \
    --attributes FifoQueue=true,ContentBasedDeduplication=false --query QueueUrl --output text)
dlq_arn=$(aws_ sqs get-queue-attributes --queue-url "$dlq_url" --attribute-names QueueArn \
    --query Attributes.QueueArn --output text)
redrive=$(printf '{\\"deadLetterTargetArn\\":\\"%s\\",\\"maxReceiveCount\\":\\"5\\"}' "$dlq_arn")
aws_ sqs create-queue --queue-name "$ALERT_QUEUE" --attributes \
    "{\"FifoQueue\":\"true\",\"ContentBasedDeduplication\":\"false\",\"RedrivePolicy\":\"$redrive\"}" >/dev/null
echo "alert queue $ALERT_QUEUE ready (dead letters: $dead_letter_queue)"

for entry in "${STREAMS[@]}"; do
    aws_ kinesis wait stream-exists --stream-name "${entry%%:*}"
done
for table in "$LEASE_TABLE" "$ETL_LEASE_TABLE" "$DETECTION_LEASE_TABLE"; do
    aws_ dynamodb wait table-exists --table-name "$table"
done
echo "Stage 01 resources ready"
