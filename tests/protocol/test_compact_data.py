"""compact_data: the shorter payload a device queues must load to exactly the change the full one is."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync_protocol import load_change
from sync_protocol.schemas import compact_data

STAMP = "1750064400000-0000-D-test"
FULL_READING: dict[str, Any] = {
    "meter_id": "M-1",
    "value": 12_300,
    "reading_type": "regular",
    "skip_code": None,
    "trouble_code": None,
    "comment_code": None,
    "note": None,
    "read_at": "2025-06-16T09:00:00.000Z",
    "supersedes": None,
    "gps": None,
    "check": {"result": "in_range", "consumption": 300.0, "expected": 310.4, "low": 155, "high": 621,
              "rollover": False, "entries": 1},
}  # fmt: skip


def change(entity: str, data: dict[str, Any]) -> Any:
    return load_change({"change_id": "c-1", "entity": entity, "entity_id": "X-1", "hlc": STAMP, "data": data})


def test_a_reading_leaves_out_its_nulls_and_defaults_and_keeps_its_check_whole() -> None:
    assert compact_data("meter_reading", FULL_READING) == {
        "meter_id": "M-1",
        "value": 12_300,
        "read_at": "2025-06-16T09:00:00.000Z",
        "check": FULL_READING["check"],
    }


@given(
    value=st.one_of(st.none(), st.integers(0, 99_999)),
    reading_type=st.sampled_from(["regular", "verified", "re_read"]),
    note=st.one_of(st.none(), st.text(max_size=20)),
    comment_code=st.sampled_from([None, "gate_code_changed"]),
    gps=st.sampled_from([None, {"lat": 31.2, "lon": 121.4}]),
)
def test_a_compact_reading_is_the_same_change_as_the_full_one(
    value: int | None, reading_type: str, note: str | None, comment_code: str | None, gps: dict | None
) -> None:
    full = {**FULL_READING, "value": value, "reading_type": reading_type, "note": note, "gps": gps,
            "comment_code": comment_code, "skip_code": "locked_gate" if value is None else None}  # fmt: skip
    compact = compact_data("meter_reading", full)
    assert change("meter_reading", compact).fingerprint() == change("meter_reading", full).fingerprint()


@pytest.mark.parametrize(
    ("entity", "data"),
    [
        ("job", {"cause": None, "resolution_note": None, "follow_up_needed": False}),
        ("job_event", {"job_id": "J-1", "kind": "status", "status": "en_route", "round": 1,
                       "recorded_at": "2025-06-16T09:00:00.000Z", "gps": None}),
    ],
)  # fmt: skip
def test_a_none_or_false_without_a_server_default_is_kept(entity: str, data: dict[str, Any]) -> None:
    assert compact_data(entity, data) == data


def test_a_value_equal_to_a_default_but_of_another_type_is_kept() -> None:
    data = {**FULL_READING, "reading_type": "regular", "value": 0}
    assert compact_data("meter_reading", data)["value"] == 0  # 0 is a value, not the default None
