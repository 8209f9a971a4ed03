"""Marshmallow schemas for every wire message of protocol version 1 (docs/protocol.md).

Loading validates and normalises: unknown fields, wrong types and oversized strings raise
ValidationError with field paths; datetimes come back as UTC; integers are strict (a reading of 12345.7
is refused, never truncated to 12345). Entity payloads ("data") have one schema per entity;
`load_change` and `load_record` pick it from the ENTITY_SCHEMAS table.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, missing, validate, validates_schema

from . import codes
from .errors import ERRORS
from .hlc import HLC, HLCFormatError
from .lifecycle import Status
from .merge import ConflictKind, Outcome, canonical_json
from .ownership import ENTITIES, FIELD_EDITABLE_JOB_FIELDS, PUSHABLE_ENTITIES
from .readings import CheckResult

ID_PATTERN = r"^[A-Za-z0-9_\-:.]{1,64}\Z"  # \Z, not $: "$" also matches before a trailing newline
MAX_BATCH_CHANGES = 500
MAX_NOTE_CHARS = 4000
MAX_SHORT_CHARS = 200


class UtcDateTime(fields.DateTime):
    """ISO 8601 with an explicit offset; loaded and dumped in UTC."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dt.datetime:
        parsed = super()._deserialize(value, attr, data, **kwargs)
        if parsed.tzinfo is None:
            raise ValidationError("Give a time zone offset (e.g. Z or +08:00).")
        try:
            return parsed.astimezone(dt.UTC)
        except OverflowError as exc:  # e.g. 9999-12-31T23:59:59-14:00: valid ISO 8601, no UTC datetime
            raise ValidationError("Out of range.") from exc

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class HLCField(fields.Field):
    """An HLC stamp in its sortable string form."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> HLC:
        try:
            return HLC.parse(value)
        except HLCFormatError as exc:
            raise ValidationError("Not a valid HLC stamp (wall-counter-node).") from exc

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else str(value)


def Id(**kwargs: Any) -> fields.String:  # noqa: N802 - reads like a field type
    return fields.String(validate=validate.Regexp(ID_PATTERN, error="Not a valid id."), **kwargs)


def Text(max_chars: int = MAX_SHORT_CHARS, **kwargs: Any) -> fields.String:  # noqa: N802
    return fields.String(validate=validate.Length(max=max_chars), **kwargs)


def Code(table: Mapping[Any, str], **kwargs: Any) -> fields.String:  # noqa: N802
    return fields.String(validate=validate.OneOf(list(table)), **kwargs)


class StrictSchema(Schema):
    class Meta:
        unknown = RAISE


# --- small parts --------------------------------------------------------------------------------


class GpsSchema(StrictSchema):
    lat = fields.Float(required=True, validate=validate.Range(-90, 90))
    lon = fields.Float(required=True, validate=validate.Range(-180, 180))
    accuracy_m = fields.Float(validate=validate.Range(0, 100_000))


class ReadingCheckSchema(StrictSchema):
    """The hi/lo check as the device ran it, stored with the reading."""

    result = Code({r.value: r.value for r in CheckResult}, required=True)
    consumption = fields.Float(allow_none=True)
    expected = fields.Float(allow_none=True)
    low = fields.Float(allow_none=True)
    high = fields.Float(allow_none=True)
    rollover = fields.Boolean(load_default=False)
    entries = fields.Integer(strict=True, load_default=1, validate=validate.Range(1, 10))


class ErrorBodySchema(StrictSchema):
    code = Code(ERRORS, required=True)
    message = fields.String(required=True)
    fields = fields.Dict(keys=fields.String(), values=fields.List(fields.String()), load_default=dict)


class ErrorEnvelopeSchema(StrictSchema):
    error = fields.Nested(ErrorBodySchema, required=True)


# --- entity payloads ("data") -------------------------------------------------------------------


class JobEventDataSchema(StrictSchema):
    """A job event: a status change, a note, materials used, or the crew's acceptance."""

    KINDS = ("status", "note", "material", "accepted")

    job_id = Id(required=True)
    kind = fields.String(required=True, validate=validate.OneOf(KINDS))
    status = fields.String(validate=validate.OneOf([s.value for s in Status]))
    round = fields.Integer(strict=True, validate=validate.Range(1, 1000))
    text = Text(MAX_NOTE_CHARS)
    material_code = Text(40)
    quantity = fields.Float(validate=validate.Range(min=0, max=1_000_000, min_inclusive=False))
    unit = Text(16)
    recorded_at = UtcDateTime(required=True)
    gps = fields.Nested(GpsSchema, allow_none=True)

    REQUIRED_BY_KIND = {
        "status": ("status", "round"),
        "note": ("text",),
        "material": ("material_code", "quantity", "unit"),
        "accepted": (),
    }

    @validates_schema
    def _fields_of_kind(self, data: dict[str, Any], **kwargs: Any) -> None:
        kind = data.get("kind")
        if kind is None:
            return
        errors: dict[str, list[str]] = {}
        for name in self.REQUIRED_BY_KIND[kind]:
            if data.get(name) in (None, ""):
                errors[name] = [f"Required for a {kind} event."]
        for other_kind, names in self.REQUIRED_BY_KIND.items():
            if other_kind != kind:
                for name in names:
                    if name in data and name not in self.REQUIRED_BY_KIND[kind]:
                        errors[name] = [f"Not part of a {kind} event."]
        if errors:
            raise ValidationError(errors)


class MeterReadingDataSchema(StrictSchema):
    """A meter reading (a value) or a skip (a skip code and no value). Immutable once sent."""

    meter_id = Id(required=True)
    value = fields.Integer(strict=True, allow_none=True, load_default=None, validate=validate.Range(min=0))
    reading_type = Code(codes.READING_TYPES, load_default="regular")
    skip_code = Code(codes.SKIP_CODES, allow_none=True, load_default=None)
    trouble_code = Code(codes.TROUBLE_CODES, allow_none=True, load_default=None)
    comment_code = Code(codes.COMMENT_CODES, allow_none=True, load_default=None)
    note = Text(1000, allow_none=True, load_default=None)
    read_at = UtcDateTime(required=True)
    supersedes = Id(allow_none=True, load_default=None)
    gps = fields.Nested(GpsSchema, allow_none=True, load_default=None)
    check = fields.Nested(ReadingCheckSchema, allow_none=True, load_default=None)

    @validates_schema
    def _value_or_skip(self, data: dict[str, Any], **kwargs: Any) -> None:
        if (data.get("value") is None) == (data.get("skip_code") is None):
            raise ValidationError("Give either a value or a skip code.", "value")


class JobEventRecordSchema(JobEventDataSchema):
    """A job event as pulled: what the device sent plus what the server added."""

    hlc = HLCField(required=True)  # as stored by the server (clamped if the device's clock ran ahead)
    author_id = Id(allow_none=True)
    source = fields.String(required=True, validate=validate.OneOf(["field", "office"]))
    received_at = UtcDateTime(required=True)
    flags = fields.List(fields.String(), load_default=list)


class MeterReadingRecordSchema(MeterReadingDataSchema):
    """A reading as pulled: what the device sent plus what the server added."""

    hlc = HLCField(required=True)
    superseded_by = Id(allow_none=True, load_default=None)  # a later correction of this reading, if any
    reader_id = Id(allow_none=True)
    received_at = UtcDateTime(required=True)
    flags = fields.List(fields.String(), load_default=list)


class JobFieldsSchema(StrictSchema):
    """Every field of a job that a change may name (who may change which: ownership.py)."""

    number = Text(40)
    customer_id = Id()
    premise_id = Id()
    job_type = Code(codes.JOB_TYPES)
    summary = Text(MAX_NOTE_CHARS)
    priority = fields.Integer(strict=True, validate=validate.OneOf(list(codes.PRIORITIES)))
    assigned_to = Id(allow_none=True)
    scheduled_start = UtcDateTime(allow_none=True)
    scheduled_end = UtcDateTime(allow_none=True)
    requires_signature = fields.Boolean()
    created_at = UtcDateTime()
    resolution_code = Code(codes.RESOLUTION_CODES, allow_none=True)
    cause = Text(MAX_SHORT_CHARS, allow_none=True)
    resolution_note = Text(MAX_NOTE_CHARS, allow_none=True)
    follow_up_needed = fields.Boolean(allow_none=True)
    contact_name = Text(120, allow_none=True)


class JobEditDataSchema(JobFieldsSchema):
    @validates_schema
    def _not_empty(self, data: dict[str, Any], **kwargs: Any) -> None:
        if not data:
            raise ValidationError("Name at least one field.")


class JobRecordSchema(JobFieldsSchema):
    """A job as the server sends it: all fields, the merged status, and the editable fields' stamps."""

    status = fields.String(required=True, validate=validate.OneOf([s.value for s in Status]))
    round = fields.Integer(strict=True, required=True, validate=validate.Range(min=1))
    status_hlc = HLCField(allow_none=True)
    field_hlc = fields.Dict(
        keys=fields.String(validate=validate.OneOf(sorted(FIELD_EDITABLE_JOB_FIELDS))),
        values=HLCField(),
        load_default=dict,
    )


class CustomerSchema(StrictSchema):
    account_no = Text(40, required=True)
    name = Text(required=True)
    phone = Text(40, allow_none=True)
    segment = Code(codes.CUSTOMER_SEGMENTS, required=True)
    vip = fields.Boolean(required=True)


class PremiseSchema(StrictSchema):
    customer_id = Id(required=True)
    address = Text(300, required=True)
    lat = fields.Float(allow_none=True, validate=validate.Range(-90, 90))
    lon = fields.Float(allow_none=True, validate=validate.Range(-180, 180))
    hazards = fields.List(Code(codes.HAZARD_CODES), load_default=list)
    access_notes = Text(1000, allow_none=True)


class MeterSchema(StrictSchema):
    number = Text(40, required=True)
    premise_id = Id(required=True)
    route_id = Id(allow_none=True)
    route_seq = fields.Integer(strict=True, allow_none=True)
    meter_class = Text(40, required=True)
    dials = fields.Integer(strict=True, required=True, validate=validate.Range(1, 12))
    multiplier = fields.Float(required=True, validate=validate.Range(min=0, min_inclusive=False))
    avg_daily = fields.Float(allow_none=True)
    low_factor = fields.Float(required=True)
    high_factor = fields.Float(required=True)
    last_value = fields.Integer(strict=True, allow_none=True)
    last_read_at = UtcDateTime(allow_none=True)
    last_read_type = Code(codes.READING_TYPES, allow_none=True)
    consecutive_estimates = fields.Integer(strict=True, load_default=0)


class RouteSchema(StrictSchema):
    code = Text(40, required=True)
    name = Text(required=True)
    assigned_to = Id(allow_none=True)
    cycle_start = fields.Date(allow_none=True)
    cycle_end = fields.Date(allow_none=True)
    meter_count = fields.Integer(strict=True, load_default=0)


class ConflictRecordSchema(StrictSchema):
    """A conflict the server recorded about a record in the device's scope (sent so the crew sees it)."""

    kind = fields.String(required=True, validate=validate.OneOf([k.value for k in ConflictKind]))
    entity = fields.String(required=True, validate=validate.OneOf(list(ENTITIES)))
    entity_id = Id(required=True)
    field = Text(64, required=True)
    winner = fields.Raw(allow_none=True)
    winner_hlc = HLCField(required=True)
    loser = fields.Raw(allow_none=True)
    loser_hlc = HLCField(required=True)
    change_id = Id(required=True)
    created_at = UtcDateTime(required=True)


# What a device pushes, per entity.
PUSH_DATA_SCHEMAS: Mapping[str, type[Schema]] = {
    "job": JobEditDataSchema,
    "job_event": JobEventDataSchema,
    "meter_reading": MeterReadingDataSchema,
}

# What a device pulls, per entity.
RECORD_SCHEMAS: Mapping[str, type[Schema]] = {
    "job": JobRecordSchema,
    "job_event": JobEventRecordSchema,
    "meter_reading": MeterReadingRecordSchema,
    "customer": CustomerSchema,
    "premise": PremiseSchema,
    "meter": MeterSchema,
    "route": RouteSchema,
    "conflict": ConflictRecordSchema,
}


# --- messages -----------------------------------------------------------------------------------


class EnrollRequestSchema(StrictSchema):
    code = fields.String(required=True, validate=validate.Length(6, 64))
    device_name = fields.String(required=True, validate=validate.Length(1, 80))
    platform = Text(40, load_default="")
    app_version = Text(40, load_default="")


class UserSummarySchema(StrictSchema):
    id = Id(required=True)
    name = Text(required=True)
    role = fields.String(required=True)


class EnrollResponseSchema(StrictSchema):
    device_id = Id(required=True)
    token = fields.String(required=True)
    user = fields.Nested(UserSummarySchema, required=True)
    server_time = UtcDateTime(required=True)


class VersionRangeSchema(StrictSchema):
    oldest = fields.Integer(strict=True, required=True)
    newest = fields.Integer(strict=True, required=True)


class LimitsSchema(StrictSchema):
    max_batch_changes = fields.Integer(strict=True, required=True)
    max_body_bytes = fields.Integer(strict=True, required=True)
    page_bytes = fields.Integer(strict=True, required=True)


class HelloResponseSchema(StrictSchema):
    protocol = fields.Integer(strict=True, required=True)
    supported = fields.Nested(VersionRangeSchema, required=True)
    server_time = UtcDateTime(required=True)
    server_hlc = HLCField(required=True)
    epoch = fields.String(required=True)
    device = fields.Dict(required=True)
    user = fields.Nested(UserSummarySchema, required=True)
    scope = fields.Dict(keys=fields.String(), values=fields.Integer(strict=True), required=True)
    limits = fields.Nested(LimitsSchema, required=True)


class ChangeEnvelopeSchema(StrictSchema):
    """The envelope of one pushed change; its `data` is checked separately, per entity."""

    change_id = Id(required=True)
    entity = fields.String(required=True, validate=validate.Length(1, 40))
    entity_id = Id(required=True)
    hlc = HLCField(required=True)
    data = fields.Dict(required=True)
    base = fields.Dict(keys=fields.String(), values=HLCField(allow_none=True), load_default=dict)


class PushRequestSchema(StrictSchema):
    """A batch. Its own shape is checked whole (a bad batch is refused whole, 422); each change's
    content is checked by `load_change`, and a bad change is rejected alone."""

    protocol = fields.Integer(strict=True, required=True)
    batch_id = Id(required=True)
    changes = fields.List(
        fields.Dict(), required=True, validate=validate.Length(1, MAX_BATCH_CHANGES)
    )

    @validates_schema
    def _ids_present_and_unique(self, data: dict[str, Any], **kwargs: Any) -> None:
        errors: dict[Any, Any] = {}
        seen: set[str] = set()
        for index, raw in enumerate(data.get("changes", [])):
            change_id = raw.get("change_id")
            try:
                Id(required=True).deserialize(change_id)
            except ValidationError as exc:
                errors[index] = {"change_id": exc.messages}
                continue
            if change_id in seen:
                errors[index] = {"change_id": ["Duplicate change id in this batch."]}
            seen.add(change_id)
        if errors:
            raise ValidationError({"changes": errors})


class PushResultSchema(StrictSchema):
    change_id = Id(required=True)
    status = fields.String(required=True, validate=validate.OneOf([o.value for o in Outcome]))
    error = fields.Nested(ErrorBodySchema, allow_none=True, load_default=None)
    conflicts = fields.List(fields.Dict(), load_default=list)
    hlc = HLCField(allow_none=True, load_default=None)
    flags = fields.List(fields.String(), load_default=list)


class PushResponseSchema(StrictSchema):
    protocol = fields.Integer(strict=True, required=True)
    batch_id = Id(required=True)
    server_time = UtcDateTime(required=True)
    results = fields.List(fields.Nested(PushResultSchema), required=True)


class PullRecordSchema(StrictSchema):
    entity = fields.String(required=True, validate=validate.OneOf(list(RECORD_SCHEMAS)))
    id = Id(required=True)
    op = fields.String(required=True, validate=validate.OneOf(["upsert", "remove"]))
    data = fields.Dict(allow_none=True, load_default=None)


class PullResponseSchema(StrictSchema):
    protocol = fields.Integer(strict=True, required=True)
    cursor = fields.String(required=True, validate=validate.Length(1, 512))
    has_more = fields.Boolean(required=True)
    server_time = UtcDateTime(required=True)
    records = fields.List(fields.Nested(PullRecordSchema), required=True)


# --- loading one change or record ----------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One validated change from a device; `data` is normalised wire JSON (UTC times as strings)."""

    change_id: str
    entity: str
    entity_id: str
    hlc: HLC
    data: Mapping[str, Any]
    base: Mapping[str, HLC | None] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """What must be equal for a repeated change id to count as the same change."""
        return canonical_json(
            {
                "entity": self.entity,
                "entity_id": self.entity_id,
                "hlc": str(self.hlc),
                "data": self.data,
                "base": {k: None if v is None else str(v) for k, v in sorted(self.base.items())},
            }
        )

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "change_id": self.change_id,
            "entity": self.entity,
            "entity_id": self.entity_id,
            "hlc": str(self.hlc),
            "data": dict(self.data),
        }
        if self.base:
            wire["base"] = {k: None if v is None else str(v) for k, v in self.base.items()}
        return wire


class UnknownEntity(ValidationError):
    """A change names an entity devices cannot push (reported as `unknown_entity` or `read_only_entity`)."""

    def __init__(self, entity: str) -> None:
        self.entity = entity
        self.read_only = entity in ENTITIES
        super().__init__({"entity": [f"Devices cannot push {entity!r} records."]})


@functools.cache
def _schema(schema_class: type[Schema]) -> Schema:
    """One instance per schema class: building a marshmallow schema costs more than loading a record with
    it, and these schemas keep no state between loads (no context, no per-call options)."""
    return schema_class()


def normalise_data(entity: str, data: Mapping[str, Any], *, record: bool = False) -> dict[str, Any]:
    """Validate an entity payload and return its normalised wire form."""
    schema = _schema((RECORD_SCHEMAS if record else PUSH_DATA_SCHEMAS)[entity])
    return schema.dump(schema.load(data))


def compact_data(entity: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """The shorter `data` that loads to the same change: top-level fields equal to their `load_default`
    are left out, since the server fills them in exactly so. Other fields, None or not, stay (leaving one
    out would change what the change means), and nested objects stay whole, as the device stores them.
    For devices, before a change is queued."""
    declared = _schema(PUSH_DATA_SCHEMAS[entity]).load_fields
    return {name: value for name, value in data.items() if not _is_load_default(declared.get(name), value)}


def _is_load_default(field_: fields.Field | None, value: Any) -> bool:
    default = missing if field_ is None else field_.load_default
    if default is missing or callable(default):
        return False
    return type(value) is type(default) and value == default  # False is not 0, 1 is not 1.0


def load_change(raw: Mapping[str, Any]) -> Change:
    """Validate one pushed change. Raises ValidationError (with field paths) or UnknownEntity."""
    envelope = _schema(ChangeEnvelopeSchema).load(raw)
    entity = envelope["entity"]
    if entity not in PUSHABLE_ENTITIES:
        raise UnknownEntity(entity)
    try:
        data = normalise_data(entity, envelope["data"])
    except ValidationError as exc:
        raise ValidationError({"data": exc.messages}) from exc
    if envelope["base"] and entity != "job":
        raise ValidationError({"base": ["Only job edits carry base stamps."]})
    return Change(
        envelope["change_id"], entity, envelope["entity_id"], envelope["hlc"], data, envelope["base"]
    )


def load_record(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Validate one pulled record; `data` is validated by its entity's schema (None for removals)."""
    record = _schema(PullRecordSchema).load(raw)
    if record["op"] == "upsert":
        if record["data"] is None:
            raise ValidationError({"data": ["An upsert carries data."]})
        try:
            record["data"] = normalise_data(record["entity"], record["data"], record=True)
        except ValidationError as exc:
            raise ValidationError({"data": exc.messages}) from exc
    return record
