"""The curated lake's names and its catalog, for every service that reads or writes it.

The ETL writes the Iceberg tables, the detection engine reads the features table and writes
its events table, and the dashboard and the query command read them all; each opens the Glue
catalog the same way and names the tables the same way, from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stages.common.aws import EMULATOR_KEYS, emulator_keys_needed, region
from stages.common.config import Settings

if TYPE_CHECKING:
    from pyiceberg.catalog.glue import GlueCatalog

NAMESPACE = "telemetry"
PROCESSED_BUCKET = "md-processed"
FEATURES_BUCKET = "md-features"
FEATURES_TABLE = f"{NAMESPACE}.features"
FEATURES_LOCATION = f"s3://{FEATURES_BUCKET}/{NAMESPACE}/features"


def open_catalog(settings: Settings, name: str = "glue") -> GlueCatalog:
    """pyiceberg's Glue catalog on the project's endpoint (the emulator, or AWS when unset).

    Metadata files go through obstore and data files through pyarrow's S3 filesystem
    (``objectstore.LakeFileIO``); credentials come from the usual AWS chain.
    """
    # Imported here: pyiceberg takes a second or two to import, which a process that never
    # opens the catalog (the dashboard until its tables view is asked for) should not pay.
    from pyiceberg.catalog.glue import GlueCatalog

    properties = {
        "glue.region": region(settings),
        "s3.region": region(settings),
        "py-io-impl": "stages.common.objectstore.LakeFileIO",
    }
    if settings.aws_endpoint_url:
        properties["glue.endpoint"] = settings.aws_endpoint_url
        properties["s3.endpoint"] = settings.aws_endpoint_url
        if emulator_keys_needed(settings.aws_endpoint_url):
            properties["client.access-key-id"], properties["client.secret-access-key"] = (
                EMULATOR_KEYS
            )
    return GlueCatalog(name, **properties)
