"""The one place environment variables are read.

Every setting has a default that works on a laptop with the embedded emulator; the
configuration table of docs/configuration.md lists each one. Standard AWS variables
(``AWS_ENDPOINT_URL``, ``AWS_REGION``, ``AWS_DEFAULT_REGION``, the credential chain) mean what
they mean to the AWS tools; the endpoint and region are passed on explicitly
(``stages.common.aws``) so that every client agrees.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_ignore_empty=True, extra="ignore")

    # --- AWS / emulator -------------------------------------------------------------------
    aws_endpoint_url: str | None = Field(
        default=None,
        description="AWS endpoint; unset means real AWS (start.sh sets it to the emulator).",
    )
    # Both unset: the profile's region (AWS_PROFILE / the config file), else us-east-1; see
    # stages.common.aws.region. AWS_REGION wins, as in the AWS CLI v2 and the other SDKs.
    aws_region: str | None = Field(default=None, description="Region of every client.")
    aws_default_region: str | None = Field(
        default=None, description="Region of every client when AWS_REGION is unset."
    )
    emulator_host: str = "127.0.0.1"
    emulator_port: int = Field(default=4566, ge=0, le=65535)
    emulator_s3_memory_object_bytes: int = Field(
        default=4096,
        ge=0,
        description="S3 objects larger than this live in temporary files, not in the emulator.",
    )
    embedded_emulator: bool = Field(
        default=True,
        description="Run the embedded emulator when AWS_ENDPOINT_URL is unset; 0 = real AWS.",
    )

    # --- Resources (resources.py builds the names from these prefixes) --------------------
    # Bucket names are global on AWS: the prefix makes them one's own. Prefix + the longest
    # suffix ("raw-metrics") stays a valid bucket name.
    bucket_prefix: str = Field(
        default="md-",
        pattern=r"^[a-z0-9][a-z0-9.-]{0,49}$",
        description="Prefix of every bucket name (md- gives md-raw-logs, ...).",
    )
    stream_prefix: str = Field(
        default="stage01-",
        pattern=r"^[a-zA-Z0-9_.-]{0,100}$",
        description="Prefix of every stream name (stage01- gives stage01-logs-stream, ...).",
    )
    logs_stream_shards: int = Field(default=2, ge=1, le=64)
    metrics_stream_shards: int = Field(default=1, ge=1, le=64)
    apm_stream_shards: int = Field(default=1, ge=1, le=64)
    lease_table: str = "stage01-consumer-leases"

    # --- Run directory --------------------------------------------------------------------
    run_dir: Path = Path(".run")
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = Field(
        default="text", description="text, or json: one JSON object per log line."
    )
    memory_reclaim_seconds: float = Field(
        default=2.0,
        ge=0,
        description="Seconds between full GC + malloc_trim in every process; 0 = never.",
    )

    # --- Stage 00 services (bind address and port each; peers are reached at these) -------
    orchestrator_host: str = "127.0.0.1"
    orchestrator_port: int = Field(default=8000, ge=0, le=65535)
    history_max_days: float = Field(
        default=31.0, gt=0, le=366, description="Longest range one history run may cover."
    )
    history_calls_in_flight: int = Field(
        default=3, ge=1, le=16, description="Synthesis calls a history run keeps going at once."
    )
    patterns_host: str = "127.0.0.1"
    patterns_port: int = Field(default=8001, ge=0, le=65535)
    synthesis_host: str = "127.0.0.1"
    synthesis_port: int = Field(default=8002, ge=0, le=65535)
    state_host: str = "127.0.0.1"
    state_port: int = Field(default=8003, ge=0, le=65535)
    ingestion_host: str = "127.0.0.1"
    ingestion_port: int = Field(default=8004, ge=0, le=65535)
    consolidation_host: str = "127.0.0.1"
    consolidation_port: int = Field(default=8005, ge=0, le=65535)
    data_dir: Path = Field(
        default=Path(".run/data"),
        description="Category files, ingestion spool, consolidated OTLP files, state database.",
    )
    control_token: str | None = Field(
        default=None, description="When set, mutating endpoints need 'Authorization: Bearer <it>'."
    )
    allowed_hosts: str = Field(
        default="",
        description="Host names answered besides localhost, 127.0.0.1, [::1] and the compose "
        "service names (comma-separated; * answers any).",
    )
    allowed_origins: str = Field(
        default="",
        description="Browser origins (scheme://host:port, comma-separated) allowed to call "
        "mutating endpoints besides the service's own.",
    )

    # --- Kinesis consumer -----------------------------------------------------------------
    consumer_host: str = "127.0.0.1"
    consumer_port: int = Field(default=8011, ge=0, le=65535)
    consumer_streams: str = Field(
        default="logs,metrics,apm",
        description="Comma-separated kinds whose streams this consumer reads.",
    )
    consumer_worker_id: str | None = None
    flush_max_records: int = Field(default=20_000, ge=1)
    flush_max_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    flush_max_age_seconds: float = Field(default=1.0, gt=0)
    max_open_partitions: int = Field(default=512, ge=1)
    compression: Literal["none", "gzip"] = "none"
    poll_interval_seconds: float = Field(default=0.2, gt=0)
    get_records_limit: int = Field(default=10_000, ge=1, le=10_000)
    lease_duration_seconds: float = Field(default=10.0, gt=0)
    shard_sync_interval_seconds: float = Field(default=5.0, gt=0)
    consumer_max_backoff_seconds: float = Field(default=5.0, gt=0)
    consumer_stall_seconds: float = Field(
        default=60.0,
        gt=0,
        description="A shard with no checkpoint and no caught-up read for this long (beyond "
        "FLUSH_MAX_AGE_SECONDS) makes the consumer's /health unhealthy.",
    )
    dedup_window_records: int = Field(
        default=100_000,
        ge=0,
        le=10_000_000,
        description="Recent records per shard whose event_id drops a re-sent copy; 0 disables.",
    )
    consumer_fault_pause_at: str | None = Field(
        default=None,
        pattern=r"^(before_upload|between_uploads|before_checkpoint|replay)(:[1-9][0-9]*)?$",
        description="Test-only fault injection: a shard worker waits at this flush step "
        "('<step>[:<n>]', see stages/consumer/faults.py) until it is stopped or killed.",
    )

    # --- Query command (python -m stages.query) ----------------------------------------------
    query_threads: int = Field(
        default=8,
        ge=1,
        le=256,
        description="DuckDB threads of the query command: more than the cores, since a scan of "
        "many files in S3 waits on requests more than it computes.",
    )

    # --- ETL (Stage 02) ---------------------------------------------------------------------
    etl_host: str = "127.0.0.1"
    etl_port: int = Field(default=8020, ge=0, le=65535)
    etl_interval_seconds: float = Field(
        default=10.0, gt=0, le=3600, description="Seconds between two folds of the raw zone."
    )
    etl_lease_table: str = Field(
        default="stage02-etl-leases",
        description="DynamoDB table of the ETL writer's lease (one writer of the tables).",
    )
    etl_lease_seconds: float = Field(
        default=30.0, ge=1, le=3600, description="How long the writer lease lasts unrenewed."
    )
    etl_worker_id: str | None = Field(
        default=None, description="The ETL process's lease owner name (default: host and pid)."
    )
    etl_lookback_hours: int = Field(
        default=2,
        ge=0,
        le=168,
        description="Hours before the current one listed on every fold (older hours: on the "
        "full listing).",
    )
    etl_lookback_listing_seconds: float = Field(
        default=60.0,
        ge=0,
        description="Seconds between two listings of the lookback hours; in between, a fold "
        "lists only the hours within 5 minutes of now; 0 = every fold.",
    )
    etl_full_listing_seconds: float = Field(
        default=300.0,
        ge=0,
        description="Seconds between two listings of the whole raw zone (late objects of old "
        "hours); 0 = every fold.",
    )
    etl_max_run_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=1024,
        description="Raw bytes one fold reads at most; the rest waits for the next fold.",
    )
    etl_allowed_lateness_seconds: float = Field(
        default=600.0,
        ge=0,
        description="An hour is closed (compacted) once its end is this far in the past.",
    )
    etl_maintenance_interval_seconds: float = Field(
        default=300.0,
        ge=0,
        description="Seconds between compaction, snapshot expiry and orphan removal passes.",
    )
    etl_snapshots_keep: int = Field(
        default=20, ge=1, description="Snapshots each table keeps whatever their age."
    )
    etl_snapshot_max_age_seconds: float = Field(
        default=3600.0, ge=0, description="Older snapshots beyond ETL_SNAPSHOTS_KEEP are expired."
    )
    etl_orphan_age_seconds: float = Field(
        default=3600.0,
        ge=60,
        description="Files under a table's location that no snapshot references are removed "
        "once this old.",
    )
    etl_source_keys_checkpoint_seconds: float = Field(
        default=300.0,
        ge=0,
        description="Seconds between two checkpoints of the source keys of every data file, "
        "which a starting ETL reads instead of scanning the tables; 0 = after every fold.",
    )
    etl_arrow_memory_pool: Literal["system", "mimalloc", "jemalloc"] = Field(
        default="system",
        description="Arrow's memory pool in the ETL process (typing, sort, Parquet files): "
        "the C library's malloc, or Arrow's bundled mimalloc or jemalloc.",
    )
    etl_fault_pause_at: str | None = Field(
        default=None,
        pattern=r"^(before-write|after-data-files|after-commit)(:[1-9][0-9]*)?$",
        description="Test-only fault injection: the ETL waits at this step of a fold "
        "('<step>[:<n>]', see stages/etl/faults.py) until it is killed.",
    )

    # --- Kinesis producer -----------------------------------------------------------------
    producer_aggregate: bool = True
    producer_linger_ms: int = Field(default=50, ge=0)
    producer_max_in_flight_bytes: int = Field(default=64 * 1024 * 1024, ge=1024 * 1024)
    producer_max_backoff_seconds: float = Field(default=5.0, gt=0)
    producer_max_retries: int = Field(default=10, ge=0)

    # --- Ingestion Interface ----------------------------------------------------------------
    spool_max_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=1024 * 1024,
        description="Disk the ingestion spool may use while Kinesis is down; beyond it: 503.",
    )
    ingest_kinesis_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    consolidation_queue_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="Bytes of batches waiting for Log Consolidation; beyond: dropped, counted.",
    )

    # --- Log Consolidation ------------------------------------------------------------------
    deployment_environment: str = "local"
    consolidated_file_max_bytes: int = Field(default=16 * 1024 * 1024, ge=4096)
    consolidated_max_files: int = Field(default=20, ge=1, le=10_000)
    consolidation_recent_records: int = Field(default=50_000, ge=100, le=1_000_000)
    otel_exporter_otlp_logs_endpoint: str | None = Field(
        default=None,
        description="Also export consolidated logs over OTLP/HTTP (protobuf) to this URL.",
    )

    # --- Dashboard ------------------------------------------------------------------------
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = Field(default=8010, ge=0, le=65535)
    dashboard_refresh_seconds: float = Field(
        default=10.0, ge=1, le=3600, description="How often the dashboard page refreshes."
    )
    dashboard_sample_seconds: float = Field(
        default=5.0, ge=0.2, le=600, description="Throughput and lag sampling period (charts)."
    )
    dashboard_history_samples: int = Field(default=720, ge=10, le=100_000)
    dashboard_cache_seconds: float = Field(
        default=5.0, ge=0, le=3600, description="How long a bucket's object/byte summary is reused."
    )
    dashboard_viewer_max_lines: int = Field(default=500, ge=1, le=10_000)
    dashboard_viewer_max_bytes: int = Field(
        default=16 * 1024 * 1024, ge=64 * 1024, le=1024 * 1024 * 1024
    )
    dashboard_small_file_bytes: int = Field(
        default=1024 * 1024, ge=1, description="Hour partitions averaging less get a warning."
    )
    dashboard_count_budget_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=0,
        description="Bytes one partition request may read to count records (0: never count).",
    )
    dashboard_max_decompressed_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=64 * 1024,
        le=4 * 1024 * 1024 * 1024,
        description="Most bytes one request decompresses from gzip objects (a bomb stops there).",
    )
    dashboard_partition_s3_calls: int = Field(
        default=100,
        ge=1,
        le=100_000,
        description="Most S3 calls one partition request makes to count records.",
    )

    # --- ETL features (stages/etl/features.py) ---------------------------------------------
    features_bucket_seconds: int = Field(
        default=10,
        ge=1,
        le=3600,
        description="Width of a features bucket in seconds; must divide 3600 (buckets never "
        "straddle an hour partition).",
    )
    features_allowed_lateness_seconds: float = Field(
        default=20.0,
        ge=0,
        le=3600,
        description="A features bucket is written once this long has passed after its end.",
    )
    features_memory_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=0,
        description="Curated rows of written features buckets the ETL keeps in memory, so a "
        "late record is folded in without reading its partition back; beyond this, the least "
        "recently touched partitions' rows are dropped.",
    )

    # --- Detection (stages/detection/) ----------------------------------------------------
    detection_host: str = "127.0.0.1"
    detection_port: int = Field(default=8040, ge=0, le=65535)
    detection_interval_seconds: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="How often detection reads the features buckets added since its last read.",
    )
    detection_wake_poll_seconds: float = Field(
        default=1.0,
        ge=0,
        le=3600,
        description="How often detection looks in the Glue catalog for a new commit of "
        "telemetry.features, and on one reads it at once instead of at the next interval "
        "(0 = off).",
    )
    detection_series: str = Field(
        default=(
            "cpu=metric:cpu.utilization:mean,latency=metric:latency.p95:mean,"
            "errors=metric:error.rate:mean,requests=metric:request.rate:mean,"
            "memory=metric:memory.utilization:mean,"
            "db_query=metric:db.query.duration:mean,transactions=metric:transaction.rate:mean,"
            "fraud=metric:fraud.score:mean,queue=metric:queue.depth:mean"
        ),
        description="Series scored per service, comma-separated "
        "'<series>=<signal>:<name>:<column>' of telemetry.features.",
    )
    detection_rules: str = Field(
        default="",
        description="Rules voting on the series ('<series> > <number> [for <n> points]', "
        "separated by ';'); empty = none.",
    )
    detection_voting: str = Field(
        default="",
        description="The decision engine (weights, quorum per signal type) as JSON; empty = "
        "the library's defaults.",
    )
    detection_open_after: int = Field(default=2, ge=1, le=1000)
    detection_close_after: int = Field(default=12, ge=1, le=10_000)
    detection_checkpoint_seconds: float = Field(
        default=60.0,
        ge=0,
        le=86_400,
        description="A service's progress and model state are checkpointed when an event changes, "
        "at a clean stop, and otherwise at most this often (0 = every round).",
    )
    detection_replay_max_buckets: int = Field(
        default=25_920,
        ge=1,
        le=1_000_000,
        description="Buckets arriving behind the newest one scored (history, a backfill, a late "
        "hour; not a few late buckets just behind it) rebuild a service's models from its "
        "buckets in time order; the replay covers at "
        "most this many buckets up to the newest one (older ones are counted, not learned).",
    )
    detection_lease_table: str = Field(
        default="stage04-detection-leases",
        description="DynamoDB table of the detection processes' service leases (one holder of a "
        "service at a time).",
    )
    detection_lease_seconds: float = Field(
        default=30.0,
        ge=1,
        le=3600,
        description="A service lease not renewed for this long is taken over by another "
        "detection process.",
    )
    detection_worker_id: str | None = Field(
        default=None,
        max_length=200,
        description="This detection process's lease owner name (default: host, pid and a "
        "random suffix).",
    )
    alert_queue: str = Field(
        default="stage06-alerts.fifo",
        pattern=r"^[a-zA-Z0-9_-]{1,75}\.fifo$",
        description="SQS FIFO queue of alerts; its dead-letter queue is <name>-dlq.fifo.",
    )
    alert_webhook_url: str | None = Field(
        default=None, description='Also POST each alert as {"text": ...} to this URL.'
    )
    alert_send_attempts: int = Field(
        default=3, ge=1, le=20, description="Tries per alert and target within one round."
    )
    alert_dead_letter_after: int = Field(
        default=20,
        ge=1,
        le=100_000,
        description="Rounds an undeliverable alert is kept and retried before it is moved to "
        "the dead-letter prefix of the models bucket.",
    )
    detection_view_max_points: int = Field(
        default=2000,
        ge=10,
        le=100_000,
        description="Points per series the detection view's /api/signals returns at most; "
        "above, each point is the maximum of a group of buckets.",
    )
    detection_view_ground_truth_timeout_seconds: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="Timeout of the detection view's request to the orchestrator's "
        "/api/ground-truth.",
    )

    @field_validator("features_bucket_seconds")
    @classmethod
    def _bucket_divides_the_hour(cls, value: int) -> int:
        if 3600 % value:
            raise ValueError(f"must divide 3600 so buckets align with hours, not {value}")
        return value

    @property
    def emulator_url(self) -> str:
        return f"http://{self.emulator_host}:{self.emulator_port}"

    def service_url(self, prefix: str) -> str:
        """Base URL of a Stage 00 service by settings prefix (``"state"``, ``"ingestion"``...)."""
        host = getattr(self, f"{prefix}_host")
        if host in {"0.0.0.0", "::"}:
            host = "127.0.0.1"
        return f"http://{host}:{getattr(self, f'{prefix}_port')}"


@lru_cache
def get_settings() -> Settings:
    return Settings()


def describe_settings_error(exc: ValidationError) -> str:
    """The invalid settings of ``exc``, each named by its environment variable, on one line: what
    a command prints instead of pydantic's traceback."""
    problems = []
    for err in exc.errors(include_url=False):
        loc = [str(part) for part in err.get("loc", ())]
        # The first part is the field, whose environment variable is its name in capitals.
        name = (loc[0].upper() + "".join(f"[{part}]" for part in loc[1:])) if loc else "settings"
        value = err.get("input")
        shown = f" (got {value!r})" if isinstance(value, str | int | float) else ""
        problems.append(f"{name}: {err.get('msg', 'invalid')}{shown}")
    return "; ".join(problems)
