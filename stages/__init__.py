"""Local, AWS-shaped telemetry pipeline: mock services -> Kinesis -> Hive-partitioned S3 lake."""

__version__ = "0.1.0"
