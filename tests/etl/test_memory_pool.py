"""The ETL process's Arrow memory pool comes from ETL_ARROW_MEMORY_POOL."""

from __future__ import annotations

import pyarrow as pa
import pytest
from pydantic import ValidationError

from stages.common.config import Settings
from stages.etl.app import build_etl


def test_building_the_etl_sets_the_configured_arrow_memory_pool(lake_settings: Settings) -> None:
    before = pa.default_memory_pool()
    try:
        build_etl(lake_settings.model_copy(update={"etl_arrow_memory_pool": "mimalloc"}))
        assert pa.default_memory_pool().backend_name == "mimalloc"
        assert Settings().etl_arrow_memory_pool == "system"
        build_etl(lake_settings)
        assert pa.default_memory_pool().backend_name == "system"
        # Arrays made now come from that pool.
        used = pa.system_memory_pool().bytes_allocated()
        values = pa.array(range(100_000), pa.int64())
        assert pa.system_memory_pool().bytes_allocated() >= used + values.nbytes
    finally:
        pa.set_memory_pool(before)


def test_an_unknown_memory_pool_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETL_ARROW_MEMORY_POOL", "tcmalloc")
    with pytest.raises(ValidationError, match="etl_arrow_memory_pool"):
        Settings()
