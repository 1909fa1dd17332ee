"""The curated lake's FileIO against a real emulator: Iceberg metadata files through obstore,
whole, data files through pyarrow, and obstore's failures as the OS errors pyiceberg expects."""

from __future__ import annotations

import pyarrow as pa
import pytest
from pyiceberg.io.pyarrow import PyArrowFile
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField, StringType

from stages.common import aws
from stages.common.config import Settings
from stages.common.lakehouse import PROCESSED_BUCKET, open_catalog
from stages.common.objectstore import LakeFileIO, ObjectInput, ObjectOutput


def _io(settings: Settings) -> LakeFileIO:
    io = open_catalog(settings)._load_file_io(location=f"s3://{PROCESSED_BUCKET}/t")
    assert isinstance(io, LakeFileIO)
    return io


def test_metadata_files_go_through_obstore_and_data_files_through_pyarrow(
    settings: Settings,
) -> None:
    io = _io(settings)
    base = f"s3://{PROCESSED_BUCKET}/io-test"
    for name in ("00001-a.metadata.json", "snap-1-a.avro", "a-m0.avro"):
        assert isinstance(io.new_output(f"{base}/metadata/{name}"), ObjectOutput), name
        assert isinstance(io.new_input(f"{base}/metadata/{name}"), ObjectInput), name
    assert isinstance(io.new_output(f"{base}/data/x.parquet"), PyArrowFile)
    assert isinstance(io.new_input(f"{base}/data/x.parquet"), PyArrowFile)

    location = f"{base}/metadata/00001-a.metadata.json"
    output = io.new_output(location)
    assert not output.exists()
    with output.create() as stream:
        stream.write(b'{"format-version": 2}')
    s3 = aws.client("s3", settings)
    key = "io-test/metadata/00001-a.metadata.json"
    assert s3.get_object(Bucket=PROCESSED_BUCKET, Key=key)["Body"].read() == (
        b'{"format-version": 2}'
    )
    source = io.new_input(location)
    assert source.exists() and len(source) == 21
    with source.open() as stream:
        assert stream.read() == b'{"format-version": 2}'

    # Written once, as pyiceberg asks: a second create without overwrite is refused.
    with pytest.raises(FileExistsError):
        output.create()
    with output.create(overwrite=True) as stream:
        stream.write(b"{}")
    assert s3.get_object(Bucket=PROCESSED_BUCKET, Key=key)["Body"].read() == b"{}"


def test_a_missing_or_failed_object_is_an_os_error_and_a_failed_write_leaves_nothing(
    settings: Settings,
) -> None:
    io = _io(settings)
    missing = io.new_input(f"s3://{PROCESSED_BUCKET}/io-test/metadata/missing.metadata.json")
    assert not missing.exists()
    with pytest.raises(FileNotFoundError):
        missing.open()
    with pytest.raises(FileNotFoundError):
        len(missing)

    location = f"s3://{PROCESSED_BUCKET}/io-test/metadata/cut-m0.avro"
    with pytest.raises(RuntimeError), io.new_output(location).create() as stream:
        stream.write(b"half a manifest")
        raise RuntimeError("the writer failed")
    assert not io.new_input(location).exists()

    # No such bucket: obstore's own error class, turned into an OSError.
    with pytest.raises(OSError), io.new_output("s3://no-such-bucket/metadata/x.avro").create() as s:
        s.write(b"x")


def test_an_iceberg_table_commits_and_reads_back_through_it(settings: Settings) -> None:
    catalog = open_catalog(settings)
    catalog.create_namespace_if_not_exists("io_test")
    schema = Schema(
        NestedField(1, "n", LongType(), required=False),
        NestedField(2, "s", StringType(), required=False),
    )
    table = catalog.create_table("io_test.t", schema, location=f"s3://{PROCESSED_BUCKET}/io_test/t")
    for batch in range(3):
        rows = range(batch * 100, batch * 100 + 100)
        table.append(pa.table({"n": pa.array(rows, pa.int64()), "s": [f"row {n}" for n in rows]}))
    reloaded = catalog.load_table("io_test.t")
    assert len(reloaded.snapshots()) == 3
    got = reloaded.scan().to_arrow().sort_by("n")
    assert got.column("n").to_pylist() == list(range(300))
    assert got.column("s")[299].as_py() == "row 299"
