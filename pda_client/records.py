"""Loading pulled records fast, with the protocol's own rules.

`sync_protocol.load_record` (marshmallow) stays the definition of a valid record; at ~130 µs a record it
was most of a pull. Here its schemas are compiled, once, into msgspec types that check the same things
(types, strict integers, finite floats, ids and stamps by their patterns, codes, lengths, ranges, unknown
fields, the schemas' own `validates_schema` rules) in a few µs. The compiled form only ever *accepts*
or *declines*: whatever it declines, or cannot prove equal, goes to `load_record`, which decides and
gives the error with its field paths. So a record is refused exactly when `load_record` refuses it, and an
accepted record is returned in the same normalised form (tests/client/test_pulled_records.py holds the
two to that).

The schemas are compiled by their field declarations: a field type or validator this module does not
know fails at the first load, not silently.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import sys
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

import msgspec
from marshmallow import Schema, ValidationError, fields, missing, validate

from sync_protocol import load_record
from sync_protocol.hlc import STAMP_PATTERN
from sync_protocol.schemas import RECORD_SCHEMAS, HLCField, PullRecordSchema, UtcDateTime

# marshmallow's Float refuses NaN and ±inf; a range check does the same in msgspec (NaN fails any bound).
_FINITE = {"ge": -sys.float_info.max, "le": sys.float_info.max}
# The form UtcDateTime dumps: a string already in it needs only a calendar check to be its own normal form.
_CANONICAL_UTC = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z\Z")


class Compiled:
    """One schema compiled: its msgspec type, its datetime fields (normalised after conversion) and its
    schema-level rules. The rules run on the record in its wire form (times as strings, not datetimes):
    today's look only at which fields are present or None, and the tests compare every outcome."""

    def __init__(self, schema_class: type[Schema]) -> None:
        self.schema = schema_class()
        self.datetimes: dict[str, UtcDateTime] = {}
        unsupported = {kind for kind, hooks in self.schema._hooks.items() if hooks} - {"validates_schema"}
        if unsupported:
            raise TypeError(f"{schema_class.__name__}: no compiled form for hooks {sorted(unsupported)}")
        self.rules: list[Callable[..., Any]] = []
        for name, _many, options in self.schema._hooks.get("validates_schema", []):
            if options.get("pass_original"):
                raise TypeError(f"{schema_class.__name__}.{name}: no compiled form for pass_original")
            self.rules.append(getattr(self.schema, name))
        self.type = msgspec.defstruct(
            schema_class.__name__,
            [self._member(name, field) for name, field in self.schema.load_fields.items()],
            forbid_unknown_fields=True,
            kw_only=True,
        )

    def _member(self, name: str, field: fields.Field) -> tuple[str, Any, Any]:
        if isinstance(field, UtcDateTime):
            self.datetimes[name] = field
        annotation = _annotation(field)
        if field.allow_none:
            annotation = annotation | None
        if field.required:
            return (name, annotation, msgspec.NODEFAULT)
        default = field.load_default
        if default is missing:
            return (name, annotation, msgspec.UNSET)  # absent stays absent, as marshmallow leaves it
        if callable(default):
            return (name, annotation, msgspec.field(default_factory=default))
        return (name, annotation, default)

    def load(self, data: Any) -> dict[str, Any] | None:
        """The normalised record, or None when the compiled form cannot vouch for it."""
        try:
            loaded = msgspec.to_builtins(msgspec.convert(data, self.type, strict=True))
        except msgspec.ValidationError:
            return None
        for name, field in self.datetimes.items():
            value = loaded.get(name)
            if value is not None:
                normal = _normal_datetime(field, value)
                if normal is None:
                    return None
                loaded[name] = normal
        try:
            for rule in self.rules:
                rule(loaded, partial=None, many=False, unknown=None)
        except ValidationError:
            return None
        return loaded


def _annotation(field: fields.Field) -> Any:
    """The msgspec type of one marshmallow field (None is added by the caller for allow_none)."""
    if isinstance(field, fields.Nested):
        nested = field.nested
        if isinstance(nested, Schema):
            nested = type(nested)
        if not isinstance(nested, type) or field.many:
            raise TypeError(f"no compiled form for {field!r}")
        inner = _compiled(nested)
        if inner.datetimes:
            raise TypeError(f"no compiled form for datetimes inside {nested.__name__}")
        return inner.type
    if isinstance(field, fields.List):
        return _constrained(list[_annotation(field.inner)], field)
    if isinstance(field, fields.Dict):
        keys = str if field.key_field is None else _annotation(field.key_field)
        values = Any if field.value_field is None else _annotation(field.value_field)
        return _constrained(dict[keys, values], field)
    if isinstance(field, HLCField):
        return Annotated[str, msgspec.Meta(pattern=STAMP_PATTERN)]  # a stamp has exactly one spelling
    if isinstance(field, UtcDateTime):
        return str  # checked and normalised after conversion (_normal_datetime)
    if isinstance(field, fields.DateTime):
        raise TypeError(f"no compiled form for {field!r}")
    if isinstance(field, fields.Date):
        return _constrained(dt.date, field)
    if isinstance(field, fields.Boolean):
        return _constrained(bool, field)
    if isinstance(field, fields.Integer):
        if not field.strict:
            raise TypeError(f"no compiled form for a non-strict {field!r}")
        return _constrained(int, field)
    if isinstance(field, fields.Float):
        if field.allow_nan:
            raise TypeError(f"no compiled form for {field!r} with allow_nan")
        return _constrained(float, field, finite=True)
    if isinstance(field, fields.String):
        return _constrained(str, field)
    if type(field) is fields.Raw:
        if field.validators:
            raise TypeError(f"no compiled form for validators of {field!r}")
        return Any
    raise TypeError(f"no compiled form for {field!r}")


def _constrained(base: Any, field: fields.Field, *, finite: bool = False) -> Any:
    """`base` with the field's validators as msgspec constraints (a choice list becomes a Literal)."""
    meta: dict[str, Any] = dict(_FINITE) if finite else {}
    choices: tuple[Any, ...] | None = None
    for validator in field.validators:
        if isinstance(validator, validate.OneOf):
            choices = tuple(validator.choices)
        elif isinstance(validator, validate.Regexp) and validator.regex.flags & ~re.UNICODE == 0:
            meta["pattern"] = validator.regex.pattern
        elif isinstance(validator, validate.Length) and validator.equal is None:
            if validator.min is not None:
                meta["min_length"] = validator.min
            if validator.max is not None:
                meta["max_length"] = validator.max
        elif isinstance(validator, validate.Range):  # its bounds replace the finite ones
            if validator.min is not None:
                meta.pop("ge", None)
                meta["ge" if validator.min_inclusive else "gt"] = validator.min
            if validator.max is not None:
                meta.pop("le", None)
                meta["le" if validator.max_inclusive else "lt"] = validator.max
        else:
            raise TypeError(f"no compiled form for {validator!r} on {field!r}")
    if choices is not None:
        if meta.keys() - _FINITE.keys() or not all(type(c) in (str, int) for c in choices):
            raise TypeError(f"no compiled form for the choices of {field!r}")
        return Literal[choices]
    return Annotated[base, msgspec.Meta(**meta)] if meta else base


def _normal_datetime(field: UtcDateTime, value: str) -> str | None:
    """The field's normal form of `value` (UTC, milliseconds), or None when it is not a valid time."""
    if _CANONICAL_UTC.match(value):
        try:
            dt.datetime.fromisoformat(value)  # what UtcDateTime parses with: a real date and time
        except ValueError:
            return None
        return value
    try:  # any other spelling: the field itself parses and dumps it
        return field._serialize(field.deserialize(value), None, None)
    except ValidationError:
        return None


@functools.cache
def _compiled(schema_class: type[Schema]) -> Compiled:
    return Compiled(schema_class)


def load_pulled(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Validate one pulled record exactly as `sync_protocol.load_record` does (raises its ValidationError);
    returns the record with its `data` normalised."""
    fast = _load_compiled(raw)
    return fast if fast is not None else load_record(raw)


def _load_compiled(raw: Mapping[str, Any]) -> dict[str, Any] | None:
    envelope = _compiled(PullRecordSchema).load(raw)
    if envelope is None:
        return None
    if envelope["op"] == "upsert":
        data = envelope["data"]
        if data is None:
            return None
        envelope["data"] = _compiled(RECORD_SCHEMAS[envelope["entity"]]).load(data)
        if envelope["data"] is None:
            return None
    return envelope


__all__ = ["load_pulled"]
