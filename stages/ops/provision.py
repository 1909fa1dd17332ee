"""``python -m stages.ops.provision``: create the streams, buckets and lease table the settings
name, on whatever endpoint they point at (idempotent; exit 1 when a bucket name is taken)."""

from __future__ import annotations

import logging
import sys

from stages.common.config import get_settings
from stages.common.logging_setup import configure_logging
from stages.common.resource_setup import BucketTaken, ensure_resources

# The log lines keep the resource module's name: they say what was created, where.
log = logging.getLogger("stages.common.resource_setup")


def main() -> int:
    settings = get_settings()
    configure_logging(settings)
    # What it creates is the point of running it: said at INFO whatever LOG_LEVEL is.
    log.setLevel(logging.INFO)
    try:
        ensure_resources(settings)
    except BucketTaken as exc:
        log.error("%s", exc)
        return 1
    # A container that runs provision before its service keeps one shape of output.
    if settings.log_format == "json":
        log.info("resources ready")
    else:
        print("resources ready")
    return 0


if __name__ == "__main__":
    sys.exit(main())
