"""The canonical record: one flat shape for logs, metrics and APM spans (SPEC section 4).

Every service that makes, checks or stores records uses this model: synthesis builds records
with it, the Ingestion Interface validates incoming batches against it, and the lake's schema is
its JSON form. Type-specific fields live under ``attributes`` so each kind has one stable
top-level schema.
"""

from __future__ import annotations

import hashlib
import math
import re
import uuid
from datetime import UTC, datetime
from operator import itemgetter
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

Kind = Literal["log", "metric", "apm"]
Level = Literal["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"]

# A service name becomes a Hive partition value: lower-case words joined by dashes.
SERVICE_PATTERN = r"^[a-z][a-z0-9-]{1,62}$"
_HEX32 = re.compile(r"[0-9a-f]{32}")
# A trace id that is not W3C-shaped (the seed's documented record carries "abc123") is kept
# under this attribute, and the record's trace_id becomes one derived from it: OTLP's traceId
# must be 16 bytes, and every record carrying the same foreign id still shares one trace.
ORIGINAL_TRACE_ID_ATTRIBUTE = "trace_id.original"
_MAX_TRACE_ID = 256
_HEX16 = re.compile(r"^[0-9a-f]{16}$")
# Already the canonical form (what every service sends): formatting it again gives the same
# string, so the validator only checks that it is a real moment. A 4-digit year from 1000 on,
# as strftime writes years below 1000 without padding.
_CANONICAL_TIMESTAMP = re.compile(
    r"[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z", re.ASCII
)
# A tuple: isinstance with it is cheaper than with a union type, per attribute of every record.
_SCALAR_TYPES = (str, int, float, bool, type(None))
# The exact types JSON gives: checked in one C-level pass before the per-attribute loop.
_JSON_SCALAR_TYPES = frozenset(_SCALAR_TYPES)
# Attribute integers are signed 64-bit: what OTLP's intValue, Athena's BIGINT and most JSON
# readers hold (orjson would write up to 2**64 - 1, and Log Consolidation then failed on it).
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_MAX_ATTRIBUTES = 64
_MAX_ATTRIBUTE_NAME = 128
# Fields each kind must carry, read in one call per record (this check runs on every record
# every service validates, so it is kept out of Python-level loops).
_REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "log": ("level", "message"),
    "metric": ("metric_name", "value", "unit"),
    "apm": ("trace_id", "span_id", "name", "duration_ms", "status"),
}


def _finite(value: Any) -> bool:
    return not isinstance(value, float) or math.isfinite(value)


def _int64(value: Any) -> bool:
    return type(value) is not int or _INT64_MIN <= value <= _INT64_MAX


_REQUIRED_GETTERS = {kind: itemgetter(*fields) for kind, fields in _REQUIRED_FIELDS.items()}

ShortText = Annotated[str, Field(max_length=256)]

# Text a store keeps must be UTF-8: a lone surrogate (JSON "\ud800") is not, so writing it
# fails or, worse, succeeds and then every read of it fails. NUL and the other C0 control
# characters (tab, line feed and carriage return excepted) are refused too: C tools cut strings
# at NUL, terminals act on the rest, and no record or entity of ours needs them.
_UNSTORABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored, or None."""
    found = _UNSTORABLE.search(value)
    if found is None:
        return None
    char = found.group()
    what = "a lone surrogate" if "\ud800" <= char <= "\udfff" else "a control character"
    return (
        f"contains {what} (U+{ord(char):04X}) at position {found.start()}, which cannot be stored"
    )


def check_storable(value: Any, where: str) -> None:
    """Raise ValueError naming the place (``where``, then keys and indexes) of the first string
    in ``value`` (keys included, nested dicts and lists walked) that cannot be stored."""
    if isinstance(value, str):
        problem = text_problem(value)
        if problem is not None:
            raise ValueError(f"{where} {problem}")
    elif isinstance(value, dict):
        for key, item in value.items():
            name = str(key)
            if isinstance(key, str) and text_problem(key) is not None:
                raise ValueError(f"{where}: a key {text_problem(key)}")
            check_storable(item, f"{where}.{name}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_storable(item, f"{where}[{index}]")


def _storable_text(value: str) -> str:
    problem = text_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


# A string field whose value is stored: refused (422, naming the field) when it cannot be.
StorableText = Annotated[str, AfterValidator(_storable_text)]


def new_event_id() -> str:
    return uuid.uuid4().hex


def derived_trace_id(given: str) -> str:
    """The W3C trace id a record gets for a foreign one: the first 32 hex digits of the SHA-256
    of its UTF-8 bytes (deterministic, so anyone can recompute it)."""
    return hashlib.sha256(given.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with milliseconds and a Z, the only form records carry."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    if moment.year < 1000:
        # strftime writes year 1 as "1", which is not RFC 3339 (nor readable back).
        text = f"{moment.year:04d}" + text[text.index("-") :]
    return text


# Free-text fields of a record; the others are patterns, enums or numbers.
_TEXT_FIELDS = (
    "event_id",
    "host",
    "message",
    "source",
    "unit",
    "name",
    "scenario_id",
    "anomaly_type",
)
_TEXT_GETTER = itemgetter(*_TEXT_FIELDS)


class Record(BaseModel):
    """One telemetry record. Unknown top-level fields are refused: they belong in attributes."""

    # NaN and Infinity are not JSON: the lake's readers would see them as null or fail.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, allow_inf_nan=False)

    event_id: str = Field(default_factory=new_event_id, min_length=8, max_length=64)
    timestamp: str = Field(
        description="RFC 3339 UTC with milliseconds, e.g. 2025-11-09T13:24:33.120Z"
    )
    # The seed's documented input format has no kind: such a record is a log.
    kind: Kind = "log"
    service: str = Field(pattern=SERVICE_PATTERN)
    host: ShortText | None = None
    level: Level | None = None
    message: str | None = Field(default=None, max_length=32_768)
    log_type: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]{1,63}$")
    category: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]{1,63}$")
    source: ShortText | None = None
    trace_id: str | None = Field(default=None, max_length=_MAX_TRACE_ID)
    span_id: str | None = None
    parent_span_id: str | None = None
    # metric
    metric_name: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_.]{1,127}$")
    value: float | None = None
    unit: ShortText | None = None
    # apm
    name: ShortText | None = None
    duration_ms: float | None = Field(default=None, ge=0)
    status: Literal["OK", "ERROR", "UNSET"] | None = None
    # ground truth
    anomaly_score: float = Field(default=0.0, ge=0, le=100)
    is_anomaly: bool = False
    scenario_id: str | None = Field(default=None, max_length=128)
    anomaly_type: str | None = Field(default=None, max_length=64)
    attributes: dict[str, Any] = Field(default_factory=dict)

    @field_validator("timestamp")
    @classmethod
    def _utc_rfc3339(cls, value: str) -> str:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValueError("timestamp must be RFC 3339, e.g. 2025-11-09T13:24:33.120Z") from exc
        if _CANONICAL_TIMESTAMP.fullmatch(value):
            return value
        if parsed.tzinfo is None:
            raise ValueError("timestamp needs a time zone (use Z for UTC)")
        try:
            return format_timestamp(parsed)
        except OverflowError as exc:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
            raise ValueError("timestamp is out of range once converted to UTC") from exc

    @field_validator("span_id", "parent_span_id")
    @classmethod
    def _span_id(cls, value: str | None) -> str | None:
        if value is not None and not _HEX16.match(value):
            raise ValueError("span ids must be 16 lower-case hex characters")
        return value

    @field_validator("attributes")
    @classmethod
    def _flat_attributes(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(value) > _MAX_ATTRIBUTES:
            raise ValueError(f"at most {_MAX_ATTRIBUTES} attributes")
        types = set(map(type, value.values()))
        if (
            types <= _JSON_SCALAR_TYPES
            and max(map(len, value), default=0) <= _MAX_ATTRIBUTE_NAME
            and (float not in types or all(map(_finite, value.values())))
            and (int not in types or all(map(_int64, value.values())))
        ):
            return value
        for key, item in value.items():
            if len(key) > _MAX_ATTRIBUTE_NAME:
                raise ValueError(f"attribute name too long: {key[:40]}...")
            if not isinstance(item, _SCALAR_TYPES):
                raise ValueError(f"attribute {key!r} must be a string, number, boolean or null")
            if not _finite(item):
                raise ValueError(f"attribute {key!r} must be a finite number, not {item}")
            if not _int64(item):
                raise ValueError(f"attribute {key!r} is outside the 64-bit signed integer range")
        return value

    @model_validator(mode="after")
    def _kind_fields(self) -> Record:
        if self.trace_id is not None and not _HEX32.fullmatch(self.trace_id):
            self._normalise_trace_id(self.trace_id)
        if None in _REQUIRED_GETTERS[self.kind](self.__dict__):
            missing = [f for f in _REQUIRED_FIELDS[self.kind] if getattr(self, f) is None]
            raise ValueError(f"a {self.kind} record needs {', '.join(missing)}")
        if self.is_anomaly and not self.anomaly_type:
            raise ValueError("an anomalous record names its anomaly_type")
        return self

    def _normalise_trace_id(self, given: str) -> None:
        if not given:
            self.trace_id = None
            return
        lowered = given.lower()
        if _HEX32.fullmatch(lowered):
            self.trace_id = lowered
            return
        if self.attributes.get(ORIGINAL_TRACE_ID_ATTRIBUTE, given) != given:
            raise ValueError(
                f"trace_id {given!r} is not 32 hex characters, so it is kept in attribute "
                f"{ORIGINAL_TRACE_ID_ATTRIBUTE!r}, which already holds another value"
            )
        self.attributes = self.attributes | {ORIGINAL_TRACE_ID_ATTRIBUTE: given}
        self.trace_id = derived_trace_id(given)

    @model_validator(mode="after")
    def _storable_strings(self) -> Record:
        # One search over every text field and attribute at once: this runs on every record.
        fields = self.__dict__
        attributes = self.attributes
        text = "\n".join(filter(None, _TEXT_GETTER(fields)))
        if attributes:
            values = [item for item in attributes.values() if type(item) is str]
            text = "\n".join((text, *attributes, *values))
        if _UNSTORABLE.search(text) is None:
            return self
        for name in _TEXT_FIELDS:
            check_storable(fields[name] or "", name)
        check_storable(self.attributes, "attributes")
        raise AssertionError("unreachable: a text was found unstorable")  # pragma: no cover

    def to_json_dict(self) -> dict[str, Any]:
        """The wire and lake form: None fields of other kinds are left out."""
        return self.model_dump(exclude_none=True) | {
            "is_anomaly": self.is_anomaly,
            "scenario_id": self.scenario_id,
            "anomaly_type": self.anomaly_type,
        }
