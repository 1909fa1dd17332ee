"""Incoming record batches: parsing a ``{"records": [...]}`` body, and checking each record
against the canonical model with a reason per rejected record.

The Ingestion Interface and Log Consolidation take the same batches and answer a bad one the
same way; both use this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from stages.common.errors import Unprocessable
from stages.common.records import Record
from stages.common.resources import KINESIS_MAX_RECORD_BYTES

# Kinesis counts the partition key (the service, at most 63 characters) in the 1 MiB limit.
MAX_RECORD_JSON_BYTES = KINESIS_MAX_RECORD_BYTES - 64
MAX_BATCH_RECORDS = 5_000
MAX_BATCH_BODY_BYTES = 10 * 1024 * 1024


class RecordBatch(BaseModel):
    """Records are checked one by one against the canonical ``Record``."""

    model_config = ConfigDict(extra="forbid")

    records: list[Any] = Field(min_length=1, max_length=MAX_BATCH_RECORDS)


class RejectedRecord(BaseModel):
    index: int
    problems: list[str]


@dataclass(frozen=True)
class Rejection:
    index: int
    problems: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "problems": self.problems}


@dataclass
class Validated:
    records: list[Record] = field(default_factory=list)
    dicts: list[dict[str, Any]] = field(default_factory=list)  # each record's wire form
    lines: list[bytes] = field(default_factory=list)  # ... and its JSON line, as stored
    rejected: list[Rejection] = field(default_factory=list)


def describe_errors(exc: ValidationError) -> list[str]:
    """One line per problem, naming the field: what a caller needs to fix the record."""
    problems = []
    for err in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in err.get("loc", ()))
        message = err.get("msg", "invalid")
        problems.append(f"{where}: {message}" if where else message)
    return problems or ["invalid record"]


def parse_batch(body: bytes, model: type[RecordBatch] = RecordBatch) -> list[Any]:
    """The records of a ``{"records": [...]}`` body, or :class:`Unprocessable` (422) naming
    what is wrong with it.

    Parsing first and checking the shape afterwards is much cheaper than pydantic's JSON mode
    for the ``list[Any]`` of records, and ``from_json`` is the parser that mode uses, so the
    values are identical (big integers, NaN). A body it or the shape check refuses goes through
    the JSON mode, so a refused body gets exactly the JSON mode's 422.
    """
    try:
        return model.model_validate(pydantic_core.from_json(body)).records
    except ValueError:  # pydantic's ValidationError is a ValueError too
        pass
    try:
        return model.model_validate_json(body).records
    except ValidationError as exc:
        raise Unprocessable(
            f'the body must be {{"records": [...]}} with 1 to {MAX_BATCH_RECORDS} records',
            detail=describe_errors(exc),
        ) from exc


# Whole-batch validation: one call into pydantic-core instead of one per record (much less CPU
# per record). The model, and so every rule, is the same as ``Record.model_validate``.
_BATCH: TypeAdapter[list[Record]] = TypeAdapter(list[Record])


def validate_records(raw: list[Any], *, wire: bool = True) -> Validated:
    """Check each record; with ``wire`` also give its wire dict and JSON line (Log Consolidation,
    which stores its own form, asks for the records alone, which costs less CPU per record)."""
    records: list[Record] | None = None
    if all(isinstance(item, dict) for item in raw):
        try:
            records = _BATCH.validate_python(raw)
        except ValidationError:
            records = None
    if records is None:
        # Some record is invalid: the per-record path names each one's problems.
        return _validate_one_by_one(raw, wire)
    outcome = Validated()
    if not wire:
        for index, record in enumerate(records):
            _add_record(outcome, index, record)
        return outcome
    for index, (record, form) in enumerate(zip(records, _wire_forms(records), strict=True)):
        _add(outcome, index, record, form)
    return outcome


def _wire_forms(records: list[Record]) -> list[dict[str, Any]]:
    """``Record.to_json_dict`` of each record, dumped in one call into pydantic-core."""
    wires = _BATCH.dump_python(records, exclude_none=True)
    for record, wire in zip(records, wires, strict=True):
        # The ground-truth fields are always present, null when not anomalous (as to_json_dict).
        wire["scenario_id"] = record.scenario_id
        wire["anomaly_type"] = record.anomaly_type
    return wires


def _add(
    outcome: Validated, index: int, record: Record, wire: dict[str, Any] | None = None
) -> None:
    if wire is None:
        wire = record.to_json_dict()
    # The model leaves nothing orjson refuses: scalar attributes, finite floats, int64 integers.
    line = orjson.dumps(wire) + b"\n"
    if len(line) > MAX_RECORD_JSON_BYTES:
        outcome.rejected.append(_too_large(index, len(line)))
        return
    outcome.records.append(record)
    outcome.dicts.append(wire)
    outcome.lines.append(line)


# Every field but ``message`` and ``attributes`` is bounded by the model (at most 256
# characters each); together with their keys, even with every character escaped as \u00XX,
# they stay under this (~9 KB).
_BOUNDED_FIELDS_JSON_BYTES = 16 * 1024


def _add_record(outcome: Validated, index: int, record: Record) -> None:
    """``_add`` without building the wire form, for callers that store their own form: only
    the size is checked, and the line is built only for a record that might be over it."""
    message = record.message or ""
    # \u00XX for every character of the message at worst; the attributes as they are written.
    worst = _BOUNDED_FIELDS_JSON_BYTES + 6 * len(message) + len(orjson.dumps(record.attributes))
    if worst > MAX_RECORD_JSON_BYTES:
        size = len(orjson.dumps(record.to_json_dict())) + 1
        if size > MAX_RECORD_JSON_BYTES:
            outcome.rejected.append(_too_large(index, size))
            return
    outcome.records.append(record)


def _too_large(index: int, size: int) -> Rejection:
    problem = f"record is {size} bytes as JSON; Kinesis takes at most {MAX_RECORD_JSON_BYTES}"
    return Rejection(index, [problem])


def _validate_one_by_one(raw: list[Any], wire: bool = True) -> Validated:
    outcome = Validated()
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            outcome.rejected.append(Rejection(index, ["a record must be a JSON object"]))
            continue
        try:
            record = Record.model_validate(item)
        except ValidationError as exc:
            outcome.rejected.append(Rejection(index, describe_errors(exc)))
            continue
        if wire:
            _add(outcome, index, record)
        else:
            _add_record(outcome, index, record)
    return outcome
