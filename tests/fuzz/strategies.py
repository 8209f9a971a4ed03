"""Hypothesis strategies for the fuzz suite: arbitrary JSON, and valid sync changes (built from the small
world of tests/server/world.py) with one thing broken."""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

from hypothesis import strategies as st

from sync_protocol import PROTOCOL_VERSION, Status
from sync_protocol.codes import COMMENT_CODES, READING_TYPES, RESOLUTION_CODES, SKIP_CODES, TROUBLE_CODES
from sync_protocol.schemas import MAX_NOTE_CHARS, MAX_SHORT_CHARS
from tests.server.world import NOW, Handheld, World

# Any character UTF-8 can carry (lone surrogates cannot be encoded; the transport tests send them as
# \ud800 escapes): controls, NUL, combining marks, RTL, private use, astral planes.
ODD_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)  # json.dumps writes NaN/Infinity as raw tokens
    | ODD_TEXT
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(ODD_TEXT, children, max_size=4),
    max_leaves=20,
)


@st.composite
def json_bytes(draw: st.DrawFn, value: st.SearchStrategy[Any] = JSON_VALUES) -> bytes:
    """A JSON document, sometimes with every non-ASCII character escaped, sometimes raw UTF-8."""
    ascii_only = draw(st.booleans())
    return json.dumps(draw(value), ensure_ascii=ascii_only).encode("utf-8")


BAD_IDS = st.one_of(
    st.sampled_from(["", " ", "a" * 65, "a b", "id\n", "ü", "../x", "a/b", "%00", "\x00", "x" * 10_000]),
    ODD_TEXT.filter(lambda s: not s.isascii() or not s.isalnum()),
)
BAD_HLCS = st.one_of(
    ODD_TEXT,
    st.sampled_from(
        [
            "",
            "0000000000000-0000-",
            "99999999999999-0000-node",  # 14 wall digits
            "1700000000000-zzzz-node",
            "1700000000000-0000-node\n",
            "1700000000000-10000-node",
            "1700000000000-0000-" + "n" * 41,
            "\u0661\u0667" + "\u0660" * 11 + "-0000-node",  # Arabic-Indic digits
        ]
    ),
)
# Syntactically valid stamps at the edges of time: clamped (far future) or simply old, never refused.
EDGE_HLCS = st.sampled_from(["0000000000000-0000-n", "9999999999999-ffff-n", "0000000000001-0000-" + "n" * 40])
BAD_TIMES = st.one_of(
    ODD_TEXT,
    st.sampled_from(
        [
            "yesterday",
            "2024-13-45T00:00:00Z",
            "2024-01-01T00:00:00",  # no offset
            "9999-12-31T23:59:59Z",
            "0001-01-01T00:00:00Z",
            "2024-02-30T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:00.9999999999Z",
            "+12024-01-01T00:00:00Z",
            "9999-12-31T23:59:59-14:00",
            "0001-01-01T00:00:00+14:00",
        ]
    ),
)
# Valid ISO 8601 whose UTC time lies outside Python's datetime range (once a 500: OverflowError escaped
# sync_protocol's UtcDateTime); test_sync_bodies.py checks each change is rejected alone.
OUT_OF_RANGE_TIMES = ("9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00")
HUGE_STRINGS = st.sampled_from([41, 65, 81, MAX_SHORT_CHARS + 1, 1001, MAX_NOTE_CHARS + 1, 100_000]).map(
    lambda n: "x" * n
)
ODD_NUMBERS = st.one_of(
    st.sampled_from([-1, 0, 1001, 10**5, 10**12, 2**31, 2**63, 2**64, -(2**63) - 1, 10**30, 0.5, -0.0, 1e308]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(),
)

ISO_NOW = NOW.isoformat().replace("+00:00", "Z")


# --- valid changes ---------------------------------------------------------------------------------


@st.composite
def reading_change(draw: st.DrawFn, handheld: Handheld, world: World) -> dict[str, Any]:
    """A meter reading or skip: on the reader's route (mostly) or another, in or out of the hi/lo band."""
    meter = draw(st.sampled_from(world.meters + world.other_meters[:1]))
    extra: dict[str, Any] = {}
    if draw(st.booleans()):
        extra["reading_type"] = draw(st.sampled_from(list(READING_TYPES)))
    if draw(st.integers(0, 4)) == 0:
        value, extra["skip_code"] = None, draw(st.sampled_from(list(SKIP_CODES)))
    else:
        value = draw(st.integers(0, 99_999))
    if draw(st.integers(0, 3)) == 0:
        extra["trouble_code"] = draw(st.sampled_from(list(TROUBLE_CODES)))
    if draw(st.integers(0, 3)) == 0:
        extra["comment_code"] = draw(st.sampled_from(list(COMMENT_CODES)))
    if draw(st.integers(0, 3)) == 0:
        extra["note"] = draw(st.text(max_size=50))
    if draw(st.integers(0, 3)) == 0:
        extra["gps"] = {"lat": draw(st.floats(-90, 90)), "lon": draw(st.floats(-180, 180)), "accuracy_m": 5.0}
    if draw(st.integers(0, 3)) == 0:
        extra["check"] = {"result": "ok", "consumption": 300.0, "low": 100.0, "high": 600.0, "entries": 1}
    return handheld.reading(meter, value, **extra)


@st.composite
def job_change(draw: st.DrawFn, handheld: Handheld, world: World) -> dict[str, Any]:
    """A job event (status, note, material, acceptance) or an edit of the job's field-editable fields."""
    job = draw(st.sampled_from(list(world.jobs.values())))
    kind = draw(st.sampled_from(["status", "note", "material", "accepted", "edit"]))
    if kind == "status":
        return handheld.status(job, draw(st.sampled_from([s.value for s in Status])), draw(st.integers(1, 2)))
    if kind == "note":
        return handheld.note(job, draw(st.text(min_size=1, max_size=80)))
    if kind == "edit":
        fields = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "resolution_code": st.sampled_from(list(RESOLUTION_CODES)),
                    "cause": st.text(max_size=30),
                    "resolution_note": st.text(max_size=80),
                    "follow_up_needed": st.booleans(),
                    "contact_name": st.text(max_size=30),
                },
            ).filter(bool)
        )
        return handheld.change("job", job, fields)
    data: dict[str, Any] = {"job_id": job, "kind": kind, "recorded_at": ISO_NOW}
    if kind == "material":
        data.update(material_code="CABLE-16", quantity=draw(st.floats(0.1, 1000)), unit="m")
    return handheld.change("job_event", f"E-{uuid.uuid4().hex[:12]}", data)


def valid_change(handheld: Handheld, world: World, role: str) -> st.SearchStrategy[dict[str, Any]]:
    return reading_change(handheld, world) if role == "reader" else job_change(handheld, world)


# --- one thing broken ------------------------------------------------------------------------------


def _paths(change: dict[str, Any]) -> list[tuple[str, ...]]:
    """Every field of a change, nested ones included, as key paths."""
    paths: list[tuple[str, ...]] = []

    def walk(node: dict[str, Any], prefix: tuple[str, ...]) -> None:
        for key, value in node.items():
            paths.append((*prefix, key))
            if isinstance(value, dict):
                walk(value, (*prefix, key))

    walk(change, ())
    return paths


def _set(change: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = change
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def _delete(change: dict[str, Any], path: tuple[str, ...]) -> None:
    node = change
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]


MUTATIONS = (
    "wrong_type",
    "odd_number",
    "huge_string",
    "odd_text",
    "unknown_field",
    "missing_field",
    "bad_id",
    "bad_hlc",
    "edge_hlc",
    "bad_time",
    "unknown_entity",
    "bad_base",
)


@st.composite
def mutated(draw: st.DrawFn, change: dict[str, Any]) -> dict[str, Any]:
    """`change` with one field broken (sometimes harmlessly: the server must still answer cleanly)."""
    change = copy.deepcopy(change)
    kind = draw(st.sampled_from(MUTATIONS))
    path = draw(st.sampled_from(_paths(change)))
    if kind == "wrong_type":
        _set(change, path, draw(JSON_VALUES))
    elif kind == "odd_number":
        _set(change, path, draw(ODD_NUMBERS))
    elif kind == "huge_string":
        _set(change, path, draw(HUGE_STRINGS))
    elif kind == "odd_text":
        _set(change, path, draw(ODD_TEXT))
    elif kind == "unknown_field":
        target = draw(st.sampled_from([(), ("data",)]))
        _set(change, (*target, draw(ODD_TEXT.filter(lambda k: k not in ("data",)))), draw(JSON_VALUES))
    elif kind == "missing_field":
        _delete(change, path)
    elif kind == "bad_id":
        target = draw(st.sampled_from([("change_id",), ("entity_id",), ("data", "meter_id"), ("data", "job_id")]))
        _set(change, target, draw(BAD_IDS))
    elif kind == "bad_hlc":
        _set(change, ("hlc",), draw(BAD_HLCS))
    elif kind == "edge_hlc":
        _set(change, ("hlc",), draw(EDGE_HLCS))
    elif kind == "bad_time":
        target = ("data", "read_at") if "read_at" in change["data"] else ("data", "recorded_at")
        _set(change, target, draw(BAD_TIMES))
    elif kind == "unknown_entity":
        names = st.sampled_from(["customer", "meter", "route", "conflict", "", "JOB"]) | ODD_TEXT
        _set(change, ("entity",), draw(names))
    elif kind == "bad_base":
        _set(change, ("base",), draw(st.dictionaries(ODD_TEXT, BAD_HLCS | EDGE_HLCS | st.none(), max_size=3)))
    return change


def push_body(changes: list[dict[str, Any]], batch_id: str | None = None) -> dict[str, Any]:
    return {"protocol": PROTOCOL_VERSION, "batch_id": batch_id or uuid.uuid4().hex, "changes": changes}
