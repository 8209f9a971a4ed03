"""The compiled record loader (pda_client.records) against the protocol's own (sync_protocol.load_record):
the same records accepted, in the same normal form, and the same refused with the same errors."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from pda_client.records import _load_compiled, load_pulled
from sync_protocol import load_record
from tests.client.conftest import NOW
from tests.client.scope import Scope, reading_record, removal, stamp


def exact(value: Any) -> str:
    """A spelling that tells 1 from 1.0 and True from 1 (== does not)."""
    return json.dumps(value, sort_keys=True)


def conflict_record() -> dict[str, Any]:
    return {
        "entity": "conflict",
        "id": "118",
        "op": "upsert",
        "data": {
            "kind": "concurrent_edit",
            "entity": "job",
            "entity_id": "J-1",
            "field": "cause",
            "winner": "tree on line",
            "winner_hlc": stamp(NOW, 2),
            "loser": {"nested": [1, 2.5, None]},
            "loser_hlc": stamp(NOW, 1),
            "change_id": "c-1",
            "created_at": "2025-06-16T09:00:00+08:00",
        },
    }


def checked_reading() -> dict[str, Any]:
    record = reading_record("MR-9", "M-1", 12_400, NOW, stamp(NOW))
    record["data"]["gps"] = {"lat": 31.2, "lon": 121, "accuracy_m": 5}
    record["data"]["check"] = {"result": "in_range", "consumption": 400, "expected": 310.4, "low": 155, "high": 621}
    return record


RECORDS = [*Scope(NOW).records(), checked_reading(), conflict_record(), removal("job", "J-9")]


@pytest.mark.parametrize("raw", RECORDS, ids=[f"{r['entity']}:{r['id']}" for r in RECORDS])
def test_every_kind_of_record_is_loaded_by_the_compiled_form_exactly_as_the_protocol_loads_it(
    raw: dict[str, Any],
) -> None:
    compiled = _load_compiled(copy.deepcopy(raw))
    assert compiled is not None, "the compiled form declined a valid record: pulls would be slow again"
    assert exact(compiled) == exact(load_record(copy.deepcopy(raw)))


def test_a_bad_record_is_refused_with_the_protocols_error_and_field_path() -> None:
    raw = checked_reading()
    raw["data"]["check"]["entries"] = 11
    with pytest.raises(ValidationError) as refused:
        load_pulled(raw)
    message = "Must be greater than or equal to 1 and less than or equal to 10."
    assert refused.value.messages == {"data": {"check": {"entries": [message]}}}


# --- fuzzing: the compiled form never accepts what the protocol refuses, nor changes what it accepts ----------

ODD_VALUES = st.sampled_from(
    [
        None, True, False, 0, 1, -1, 1.0, 2.5, float("nan"), float("inf"), 10**20, "", "x", "A" * 201, "A" * 4001,
        "regular", "in_range", "2025-06-16", "2025-06-16T09:00:00Z", "2025-06-16T09:00:00.000Z",
        "2025-06-16T09:00:00.123456+08:00", "2025-06-16T09:00:00", "2025-13-16T09:00:00.000Z",
        "2025-06-16 09:00:00.000Z", "1750064400000-0000-server", "1750064400000-0000-server\n", "M-1", "M 1",
        [], ["dog"], ["unicorn"], {}, {"lat": 1, "lon": 2}, {"lat": 91, "lon": 2}, {"result": "low"},
    ]
)  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    """A valid record with one to three of its fields (or nested fields) replaced, dropped or added."""
    raw = copy.deepcopy(draw(st.sampled_from(RECORDS)))
    for _ in range(draw(st.integers(1, 3))):
        target = raw if not isinstance(raw.get("data"), dict) or draw(st.integers(0, 4)) == 0 else raw["data"]
        nested = [k for k, v in target.items() if isinstance(v, dict)]
        if nested and draw(st.booleans()):
            target = target[draw(st.sampled_from(nested))]
        name = draw(st.sampled_from([*target, "unknown_field"]))
        if draw(st.integers(0, 3)) == 0:
            target.pop(name, None)
        else:
            target[name] = copy.deepcopy(draw(ODD_VALUES))  # the samples are shared: never mutate them
    return raw


@settings(max_examples=600, deadline=None)
@given(mutated())
def test_the_compiled_form_accepts_only_what_the_protocol_accepts_and_in_the_same_form(raw: dict[str, Any]) -> None:
    compiled = _load_compiled(copy.deepcopy(raw))
    try:
        expected = load_record(copy.deepcopy(raw))
    except ValidationError as refused:
        assert compiled is None, f"accepted what the protocol refuses ({refused.messages})"
        with pytest.raises(ValidationError) as also:
            load_pulled(copy.deepcopy(raw))
        assert also.value.messages == refused.messages
        return
    assert exact(load_pulled(copy.deepcopy(raw))) == exact(expected)
    if compiled is not None:
        assert exact(compiled) == exact(expected)


def meter_record() -> dict[str, Any]:
    return copy.deepcopy(next(r for r in RECORDS if r["entity"] == "meter"))


def route_record() -> dict[str, Any]:
    return copy.deepcopy(next(r for r in RECORDS if r["entity"] == "route"))


def with_value(make: Any, path: tuple[str, ...], value: Any) -> dict[str, Any]:
    raw = make()
    target = raw
    for name in path[:-1]:
        target = target[name]
    target[path[-1]] = value
    return raw


EDGES = {
    "NaN in a float without a range": with_value(meter_record, ("data", "avg_daily"), float("nan")),
    "infinity in a float without a range": with_value(checked_reading, ("data", "check", "expected"), float("inf")),
    "true for an integer": with_value(meter_record, ("data", "dials"), True),
    "1.0 for an integer": with_value(meter_record, ("data", "route_seq"), 10.0),
    "a stamp with a trailing newline": with_value(checked_reading, ("data", "hlc"), stamp(NOW) + "\n"),
    "a time without an offset": with_value(checked_reading, ("data", "read_at"), "2025-06-16T09:00:00"),
    "the 13th month": with_value(checked_reading, ("data", "read_at"), "2025-13-16T09:00:00.000Z"),
}
SPELLINGS = {
    "a time in another zone, to the microsecond": with_value(
        checked_reading, ("data", "read_at"), "2025-06-16T17:00:00.123456+08:00"
    ),
    "a date in ISO basic form": with_value(route_record, ("data", "cycle_start"), "20250601"),
    "an integer for a float": with_value(meter_record, ("data", "multiplier"), 2),
    "a number as text (marshmallow's Float takes it)": with_value(meter_record, ("data", "multiplier"), "1.5"),
}


@pytest.mark.parametrize("raw", EDGES.values(), ids=EDGES.keys())
def test_what_the_protocol_refuses_the_compiled_form_declines(raw: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        load_record(copy.deepcopy(raw))
    assert _load_compiled(copy.deepcopy(raw)) is None


@pytest.mark.parametrize("raw", SPELLINGS.values(), ids=SPELLINGS.keys())
def test_other_spellings_of_valid_values_load_to_the_protocols_normal_form(raw: dict[str, Any]) -> None:
    assert exact(load_pulled(copy.deepcopy(raw))) == exact(load_record(copy.deepcopy(raw)))
