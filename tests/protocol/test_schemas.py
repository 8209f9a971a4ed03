"""Wire schemas: every valid message survives a round trip; every invalid one is refused with field paths."""

import datetime as dt
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st
from marshmallow import ValidationError

from sync_protocol import (
    HLC,
    Change,
    ProtocolError,
    UnknownEntity,
    flatten_messages,
    load_change,
    load_record,
)
from sync_protocol import codes as c
from sync_protocol.errors import ERRORS
from sync_protocol.lifecycle import Status
from sync_protocol.merge import ConflictKind, Outcome
from sync_protocol.ownership import ENTITIES, FIELD_EDITABLE_JOB_FIELDS
from sync_protocol.readings import CheckResult
from sync_protocol.schemas import (
    MAX_BATCH_CHANGES,
    MAX_NOTE_CHARS,
    RECORD_SCHEMAS,
    EnrollRequestSchema,
    EnrollResponseSchema,
    ErrorEnvelopeSchema,
    HelloResponseSchema,
    PullResponseSchema,
    PushRequestSchema,
    PushResponseSchema,
)

HLC_TEXT = "1700000000000-0000-dev-1"
WHEN = "2024-03-01T10:15:00.000Z"

# --- strategies for valid wire values (small, so 500 examples stay quick) ----------------------------

ids = st.text(alphabet=string.ascii_letters + string.digits + "_-:.", min_size=1, max_size=12) | st.just("x" * 64)


def texts(max_chars):
    return st.text(max_size=12) | st.just("é" * max_chars)


def codes_of(table):
    return st.sampled_from(sorted(table))


def maybe(strategy):
    return st.none() | strategy


floats = st.floats(-1e9, 1e9, allow_nan=False, allow_infinity=False)
zones = st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=8)), dt.timezone(dt.timedelta(hours=-5, minutes=-30))])
# The wire carries milliseconds; finer input is normalised away (test_normalising_is_idempotent_...).
times = st.builds(
    lambda moment, ms, zone: moment.replace(microsecond=ms * 1000, tzinfo=dt.UTC).astimezone(zone).isoformat(),
    st.datetimes(dt.datetime(2000, 1, 1), dt.datetime(2099, 12, 31)),
    st.integers(0, 999),
    zones,
)
dates = st.dates(dt.date(2000, 1, 1), dt.date(2099, 12, 31)).map(dt.date.isoformat)
hlc_texts = st.builds(
    HLC, st.integers(0, 10**13 - 1), st.integers(0, 0xFFFF), st.sampled_from(["dev-1", "server", "A_b"])
).map(str)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | floats | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


def record(required, optional=None):
    return st.fixed_dictionaries(required, optional=optional or {})


gps = record({"lat": st.floats(-90, 90), "lon": st.floats(-180, 180)}, {"accuracy_m": st.floats(0, 100_000)})
reading_check = record(
    {"result": st.sampled_from([r.value for r in CheckResult])},
    {
        "consumption": maybe(floats),
        "expected": maybe(floats),
        "low": maybe(floats),
        "high": maybe(floats),
        "rollover": st.booleans(),
        "entries": st.integers(1, 10),
    },
)

EVENT_FIELDS_BY_KIND = {
    "status": {"status": st.sampled_from([s.value for s in Status]), "round": st.integers(1, 1000)},
    "note": {"text": st.text(min_size=1, max_size=12) | st.just("n" * MAX_NOTE_CHARS)},
    "material": {
        "material_code": texts(40).filter(bool),
        "quantity": st.floats(0, 1_000_000, exclude_min=True),
        "unit": texts(16).filter(bool),
    },
    "accepted": {},
}
EVENT_RECORD_EXTRAS = {
    "hlc": hlc_texts,
    "source": st.sampled_from(["field", "office"]),
    "received_at": times,
}


def job_event_data(extras=None):
    return st.one_of(
        [
            record(
                {"job_id": ids, "kind": st.just(kind), "recorded_at": times, **fields, **(extras or {})},
                {"gps": maybe(gps)} | ({"author_id": maybe(ids), "flags": st.lists(texts(20))} if extras else {}),
            )
            for kind, fields in EVENT_FIELDS_BY_KIND.items()
        ]
    )


READING_OPTIONAL = {
    "reading_type": codes_of(c.READING_TYPES),
    "trouble_code": maybe(codes_of(c.TROUBLE_CODES)),
    "comment_code": maybe(codes_of(c.COMMENT_CODES)),
    "note": maybe(texts(1000)),
    "supersedes": maybe(ids),
    "gps": maybe(gps),
    "check": maybe(reading_check),
}


def meter_reading_data(extras=None, extra_optional=None):
    value_or_skip = st.one_of(
        st.fixed_dictionaries({"value": st.integers(0, 10**12)}, optional={"skip_code": st.none()}),
        st.fixed_dictionaries({"skip_code": codes_of(c.SKIP_CODES)}, optional={"value": st.none()}),
    )
    rest = record({"meter_id": ids, "read_at": times, **(extras or {})}, {**READING_OPTIONAL, **(extra_optional or {})})
    return st.tuples(value_or_skip, rest).map(lambda parts: {**parts[0], **parts[1]})


JOB_FIELDS = {
    "number": texts(40),
    "customer_id": ids,
    "premise_id": ids,
    "job_type": codes_of(c.JOB_TYPES),
    "summary": texts(MAX_NOTE_CHARS),
    "priority": st.sampled_from(sorted(c.PRIORITIES)),
    "assigned_to": maybe(ids),
    "scheduled_start": maybe(times),
    "scheduled_end": maybe(times),
    "requires_signature": st.booleans(),
    "created_at": times,
    "resolution_code": maybe(codes_of(c.RESOLUTION_CODES)),
    "cause": maybe(texts(200)),
    "resolution_note": maybe(texts(MAX_NOTE_CHARS)),
    "follow_up_needed": maybe(st.booleans()),
    "contact_name": maybe(texts(120)),
}

RECORDS = {
    "job": record(
        {"status": st.sampled_from([s.value for s in Status]), "round": st.integers(1, 50)},
        {
            **JOB_FIELDS,
            "status_hlc": maybe(hlc_texts),
            "field_hlc": st.dictionaries(st.sampled_from(sorted(FIELD_EDITABLE_JOB_FIELDS)), hlc_texts),
        },
    ),
    "job_event": job_event_data(EVENT_RECORD_EXTRAS),
    "meter_reading": meter_reading_data(
        {"received_at": times, "hlc": hlc_texts}, {"reader_id": maybe(ids), "flags": st.lists(texts(20), max_size=3)}
    ),
    "customer": record(
        {
            "account_no": texts(40),
            "name": texts(200),
            "segment": codes_of(c.CUSTOMER_SEGMENTS),
            "vip": st.booleans(),
        },
        {"phone": maybe(texts(40))},
    ),
    "premise": record(
        {"customer_id": ids, "address": texts(300)},
        {
            "lat": maybe(st.floats(-90, 90)),
            "lon": maybe(st.floats(-180, 180)),
            "hazards": st.lists(codes_of(c.HAZARD_CODES), max_size=3),
            "access_notes": maybe(texts(1000)),
        },
    ),
    "meter": record(
        {
            "number": texts(40),
            "premise_id": ids,
            "meter_class": texts(40),
            "dials": st.integers(1, 12),
            "multiplier": st.floats(0, 1e6, exclude_min=True),
            "low_factor": st.floats(0, 10),
            "high_factor": st.floats(0, 10),
        },
        {
            "route_id": maybe(ids),
            "route_seq": maybe(st.integers(0, 10_000)),
            "avg_daily": maybe(st.floats(0, 1e6)),
            "last_value": maybe(st.integers(0, 10**12)),
            "last_read_at": maybe(times),
            "last_read_type": maybe(codes_of(c.READING_TYPES)),
            "consecutive_estimates": st.integers(0, 20),
        },
    ),
    "route": record(
        {"code": texts(40), "name": texts(200)},
        {
            "assigned_to": maybe(ids),
            "cycle_start": maybe(dates),
            "cycle_end": maybe(dates),
            "meter_count": st.integers(0, 10_000),
        },
    ),
    "conflict": record(
        {
            "kind": st.sampled_from([k.value for k in ConflictKind]),
            "entity": st.sampled_from(sorted(ENTITIES)),
            "entity_id": ids,
            "field": texts(64),
            "winner_hlc": hlc_texts,
            "loser_hlc": hlc_texts,
            "change_id": ids,
            "created_at": times,
        },
        {"winner": json_values, "loser": json_values},
    ),
}
assert set(RECORDS) == set(RECORD_SCHEMAS)

PUSH_DATA = {
    "job": st.fixed_dictionaries({}, optional=JOB_FIELDS).filter(bool),
    "job_event": job_event_data(),
    "meter_reading": meter_reading_data(),
}

users = record({"id": ids, "name": texts(200), "role": st.sampled_from(["crew", "reader", "staff"])})
error_bodies = record(
    {"code": codes_of(ERRORS), "message": st.text(max_size=20)},
    {"fields": st.dictionaries(st.text(max_size=10), st.lists(st.text(max_size=10), max_size=2), max_size=3)},
)


@st.composite
def raw_changes(draw):
    entity = draw(st.sampled_from(sorted(PUSH_DATA)))
    raw = {
        "change_id": draw(ids),
        "entity": entity,
        "entity_id": draw(ids),
        "hlc": draw(hlc_texts),
        "data": draw(PUSH_DATA[entity]),
    }
    if entity == "job" and draw(st.booleans()):
        raw["base"] = draw(st.dictionaries(st.sampled_from(sorted(raw["data"])), maybe(hlc_texts)))
    return raw


def unique_ids(changes):
    return [{**change, "change_id": f"c{index}"} for index, change in enumerate(changes)]


MESSAGES = {
    EnrollRequestSchema: record(
        {"code": st.text(min_size=6, max_size=64), "device_name": st.text(min_size=1, max_size=80)},
        {"platform": texts(40), "app_version": texts(40)},
    ),
    EnrollResponseSchema: record(
        {"device_id": ids, "token": st.text(max_size=40), "user": users, "server_time": times}
    ),
    HelloResponseSchema: record(
        {
            "protocol": st.integers(1, 9),
            "supported": record({"oldest": st.integers(1, 9), "newest": st.integers(1, 9)}),
            "server_time": times,
            "server_hlc": hlc_texts,
            "epoch": st.text(max_size=20),
            "device": st.dictionaries(st.text(max_size=8), json_values, max_size=3),
            "user": users,
            "scope": st.dictionaries(st.sampled_from(sorted(ENTITIES)), st.integers(0, 10**6)),
            "limits": record(
                {
                    "max_batch_changes": st.integers(),
                    "max_body_bytes": st.integers(),
                    "page_bytes": st.integers(),
                }
            ),
        }
    ),
    PushRequestSchema: record(
        {
            "protocol": st.integers(1, 9),
            "batch_id": ids,
            "changes": st.lists(raw_changes(), min_size=1, max_size=3).map(unique_ids),
        }
    ),
    PushResponseSchema: record(
        {
            "protocol": st.integers(1, 9),
            "batch_id": ids,
            "server_time": times,
            "results": st.lists(
                record(
                    {"change_id": ids, "status": st.sampled_from([o.value for o in Outcome])},
                    {
                        "error": maybe(error_bodies),
                        "conflicts": st.lists(
                            st.dictionaries(st.text(max_size=5), json_values, max_size=3), max_size=2
                        ),
                        "hlc": maybe(hlc_texts),
                        "flags": st.lists(texts(20), max_size=2),
                    },
                ),
                max_size=3,
            ),
        }
    ),
    PullResponseSchema: record(
        {
            "protocol": st.integers(1, 9),
            "cursor": st.text(min_size=1, max_size=40),
            "has_more": st.booleans(),
            "server_time": times,
            "records": st.lists(
                record(
                    {
                        "entity": st.sampled_from(sorted(RECORD_SCHEMAS)),
                        "id": ids,
                        "op": st.sampled_from(["upsert", "remove"]),
                    },
                    {"data": maybe(st.dictionaries(st.text(max_size=5), json_values, max_size=3))},
                ),
                max_size=3,
            ),
        }
    ),
    ErrorEnvelopeSchema: record({"error": error_bodies}),
}


def assert_round_trips(schema, raw):
    loaded = schema.load(raw)
    dumped = schema.dump(loaded)
    assert schema.load(dumped) == loaded
    assert schema.dump(schema.load(dumped)) == dumped


# --- round trips ---------------------------------------------------------------------------------------

ALL_RECORDS = st.one_of([st.tuples(st.just(name), strategy) for name, strategy in RECORDS.items()])
ALL_MESSAGES = st.one_of([st.tuples(st.just(schema), strategy) for schema, strategy in MESSAGES.items()])


@pytest.mark.parametrize("entity", sorted(RECORD_SCHEMAS))
def test_every_entity_schema_round_trips_its_example(entity):
    raw = EXAMPLE_RECORDS[entity]
    assert_round_trips(RECORD_SCHEMAS[entity](), raw)


@given(ALL_RECORDS)
def test_entity_records_round_trip_load_dump_load(entity_and_raw):
    entity, raw = entity_and_raw
    assert_round_trips(RECORD_SCHEMAS[entity](), raw)
    pulled = load_record({"entity": entity, "id": "r1", "op": "upsert", "data": raw})
    assert load_record(pulled) == pulled


@pytest.mark.parametrize("schema", list(MESSAGES), ids=lambda schema: schema.__name__)
def test_every_message_schema_round_trips_its_example(schema):
    assert_round_trips(schema(), EXAMPLE_MESSAGES[schema])


@given(ALL_MESSAGES)
def test_messages_round_trip_load_dump_load(schema_and_raw):
    schema, raw = schema_and_raw
    assert_round_trips(schema(), raw)


@given(raw_changes())
def test_a_loaded_change_round_trips_through_its_wire_form(raw):
    change = load_change(raw)
    again = load_change(change.to_wire())
    assert again == change
    assert again.fingerprint() == change.fingerprint()


@given(
    st.datetimes(dt.datetime(2000, 1, 1), dt.datetime(2099, 12, 31)),
    zones,
)
def test_normalising_is_idempotent_and_keeps_the_instant_to_the_millisecond(moment, zone):
    local = moment.replace(tzinfo=dt.UTC).astimezone(zone)
    raw = {
        "change_id": "c1",
        "entity": "job_event",
        "entity_id": "e1",
        "hlc": HLC_TEXT,
        "data": {"job_id": "j1", "kind": "accepted", "recorded_at": local.isoformat()},
    }
    change = load_change(raw)
    assert load_change(change.to_wire()) == change
    recorded = dt.datetime.fromisoformat(change.data["recorded_at"])
    assert recorded.utcoffset() == dt.timedelta(0)
    assert dt.timedelta(0) <= local - recorded < dt.timedelta(milliseconds=1)


def test_protocol_error_wire_form_is_a_valid_error_envelope():
    error = ProtocolError("validation_error", fields={"changes.0.hlc": ["Not a valid HLC stamp."]})
    loaded = ErrorEnvelopeSchema().load(error.to_wire())
    assert loaded["error"]["code"] == "validation_error"
    assert loaded["error"]["fields"] == {"changes.0.hlc": ["Not a valid HLC stamp."]}
    assert error.status == 422


def test_times_are_normalised_to_utc_milliseconds():
    loaded = load_change(change_of("job_event", note_event(recorded_at="2024-03-01T18:15:00.5+08:00")))
    assert loaded.data["recorded_at"] == "2024-03-01T10:15:00.500Z"


# --- examples -----------------------------------------------------------------------------------------


def note_event(**overrides):
    return {"job_id": "job-1", "kind": "note", "text": "Pole leaning", "recorded_at": WHEN, **overrides}


def reading(**overrides):
    return {"meter_id": "m-1", "value": 12345, "read_at": WHEN, **overrides}


def change_of(entity, data, **overrides):
    return {
        "change_id": "c-1",
        "entity": entity,
        "entity_id": "e-1",
        "hlc": HLC_TEXT,
        "data": data,
        **overrides,
    }


EXAMPLE_RECORDS = {
    "job": {
        "number": "J-1001",
        "customer_id": "cust-1",
        "premise_id": "prem-1",
        "job_type": "outage",
        "summary": "No power at the bakery",
        "priority": 1,
        "assigned_to": "user-7",
        "scheduled_start": "2024-03-01T08:00:00+08:00",
        "scheduled_end": None,
        "requires_signature": True,
        "created_at": WHEN,
        "resolution_code": "repaired",
        "cause": "tree on line",
        "resolution_note": None,
        "follow_up_needed": False,
        "contact_name": "Ann",
        "status": "on_site",
        "round": 2,
        "status_hlc": HLC_TEXT,
        "field_hlc": {"cause": HLC_TEXT},
    },
    "job_event": {
        **note_event(),
        "gps": {"lat": 1.3, "lon": 103.8, "accuracy_m": 5},
        "hlc": HLC_TEXT,
        "author_id": "user-7",
        "source": "field",
        "received_at": WHEN,
        "flags": ["work_after_cancel"],
    },
    "meter_reading": {
        **reading(),
        "reading_type": "verified",
        "trouble_code": "seal_missing",
        "check": {
            "result": "high",
            "consumption": 900.0,
            "expected": 300.0,
            "low": 150,
            "high": 600,
            "entries": 2,
        },
        "hlc": HLC_TEXT,
        "reader_id": "user-9",
        "received_at": WHEN,
    },
    "customer": {
        "account_no": "A-1",
        "name": "City Hospital",
        "phone": None,
        "segment": "safety",
        "vip": True,
    },
    "premise": {"customer_id": "cust-1", "address": "1 Main St", "lat": 1.0, "lon": 2.0, "hazards": ["dog"]},
    "meter": {
        "number": "MX-1",
        "premise_id": "prem-1",
        "route_id": "route-3",
        "route_seq": 12,
        "meter_class": "residential",
        "dials": 5,
        "multiplier": 1.0,
        "avg_daily": 12.5,
        "low_factor": 0.5,
        "high_factor": 2.0,
        "last_value": 99_990,
        "last_read_at": WHEN,
        "last_read_type": "regular",
        "consecutive_estimates": 1,
    },
    "route": {
        "code": "R-3",
        "name": "North",
        "assigned_to": None,
        "cycle_start": "2024-03-01",
        "meter_count": 40,
    },
    "conflict": {
        "kind": "concurrent_edit",
        "entity": "job",
        "entity_id": "job-1",
        "field": "cause",
        "winner": "storm",
        "winner_hlc": HLC_TEXT,
        "loser": {"nested": [1, None]},
        "loser_hlc": "1699999999999-0001-server",
        "change_id": "c-9",
        "created_at": WHEN,
    },
}
USER = {"id": "user-7", "name": "Ann Crew", "role": "crew"}
EXAMPLE_MESSAGES = {
    EnrollRequestSchema: {"code": "ABC123", "device_name": "Ann's handheld", "platform": "android"},
    EnrollResponseSchema: {"device_id": "dev-1", "token": "secret-token", "user": USER, "server_time": WHEN},
    HelloResponseSchema: {
        "protocol": 1,
        "supported": {"oldest": 1, "newest": 1},
        "server_time": WHEN,
        "server_hlc": HLC_TEXT,
        "epoch": "e1",
        "device": {"id": "dev-1", "name": "handheld"},
        "user": USER,
        "scope": {"job": 3, "meter": 40},
        "limits": {"max_batch_changes": 500, "max_body_bytes": 5_000_000, "page_bytes": 1_000_000},
    },
    PushRequestSchema: {
        "protocol": 1,
        "batch_id": "b-1",
        "changes": [
            change_of("job_event", note_event()),
            change_of("meter_reading", reading(), change_id="c-2"),
        ],
    },
    PushResponseSchema: {
        "protocol": 1,
        "batch_id": "b-1",
        "server_time": WHEN,
        "results": [
            {"change_id": "c-1", "status": "applied", "hlc": HLC_TEXT},
            {
                "change_id": "c-2",
                "status": "rejected",
                "error": {"code": "id_reuse", "message": "This id was already used.", "fields": {}},
            },
            {"change_id": "c-3", "status": "conflict", "conflicts": [{"field": "cause", "loser": "tree"}]},
        ],
    },
    PullResponseSchema: {
        "protocol": 1,
        "cursor": "opaque-cursor",
        "has_more": False,
        "server_time": WHEN,
        "records": [
            {"entity": "customer", "id": "cust-1", "op": "upsert", "data": EXAMPLE_RECORDS["customer"]},
            {"entity": "job", "id": "job-2", "op": "remove"},
        ],
    },
    ErrorEnvelopeSchema: {"error": {"code": "payload_too_large", "message": "Too big.", "fields": {}}},
}


# --- rejections, with field paths --------------------------------------------------------------------


def paths_of_change_error(raw):
    with pytest.raises(ValidationError) as caught:
        load_change(raw)
    return flatten_messages(caught.value.messages)


def paths_of_batch_error(body):
    with pytest.raises(ValidationError) as caught:
        PushRequestSchema().load(body)
    return flatten_messages(caught.value.messages)


def batch(changes):
    return {"protocol": 1, "batch_id": "b-1", "changes": changes}


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        (change_of("meter_reading", reading(value="twelve")), "data.value"),
        (change_of("meter_reading", reading(value=True)), "data.value"),
        (change_of("meter_reading", reading(value=12345.7)), "data.value"),  # never silently truncated
        (change_of("meter_reading", reading(value=-1)), "data.value"),
        (change_of("meter_reading", reading(meter_id=7)), "data.meter_id"),
        (change_of("job", {"cause": 5}), "data.cause"),
        (change_of("job", {"follow_up_needed": "perhaps"}), "data.follow_up_needed"),
        (change_of("job", {"priority": 2.5}), "data.priority"),
        (
            change_of(
                "job_event",
                {"job_id": "j", "kind": "status", "status": "on_site", "round": 1.5, "recorded_at": WHEN},
            ),
            "data.round",
        ),
        (change_of("job_event", note_event(gps={"lat": "north", "lon": 0})), "data.gps.lat"),
        (change_of("job_event", note_event(gps={"lat": 91, "lon": 0})), "data.gps.lat"),
        ({**change_of("job_event", note_event()), "data": None}, "data"),
        (change_of("job_event", "not an object"), "data"),
        (change_of("job_event", note_event(), entity_id=["e-1"]), "entity_id"),
    ],
)
def test_wrong_types_are_rejected_with_their_field_path(raw, path):
    assert path in paths_of_change_error(raw)


def test_a_change_without_change_id_is_rejected():
    raw = change_of("job_event", note_event())
    del raw["change_id"]
    assert paths_of_change_error(raw) == {"change_id": ["Missing data for required field."]}


@pytest.mark.parametrize("bad_id", ["", "has space", "x" * 65, "c-1\n", "ümlaut", "a/b"])
def test_malformed_ids_are_rejected(bad_id):
    assert "change_id" in paths_of_change_error(change_of("job_event", note_event(), change_id=bad_id))
    assert "data.job_id" in paths_of_change_error(change_of("job_event", note_event(job_id=bad_id)))


def test_a_batch_change_without_change_id_is_rejected_with_its_index():
    first = change_of("job_event", note_event())
    second = change_of("job_event", note_event(), change_id="c-2")
    del second["change_id"]
    paths = paths_of_batch_error(batch([first, second]))
    assert set(paths) == {"changes.1.change_id"}


def test_duplicate_change_ids_in_a_batch_are_rejected():
    first = change_of("job_event", note_event())
    paths = paths_of_batch_error(batch([first, change_of("meter_reading", reading()), dict(first)]))
    assert paths == {
        "changes.1.change_id": ["Duplicate change id in this batch."],
        "changes.2.change_id": ["Duplicate change id in this batch."],
    }


def test_a_batch_over_the_limit_is_rejected_and_one_at_the_limit_is_not():
    changes = [change_of("job_event", note_event(), change_id=f"c-{i}") for i in range(MAX_BATCH_CHANGES + 1)]
    assert "changes" in paths_of_batch_error(batch(changes))
    assert len(PushRequestSchema().load(batch(changes[:MAX_BATCH_CHANGES]))["changes"]) == MAX_BATCH_CHANGES


def test_an_empty_batch_is_rejected():
    assert "changes" in paths_of_batch_error(batch([]))


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"protocol": "one", "batch_id": "b", "changes": [change_of("job", {"cause": "x"})]}, "protocol"),
        ({"protocol": 1, "batch_id": "b", "changes": "all of them"}, "changes"),
        ({"protocol": 1, "batch_id": "b", "changes": ["change"]}, "changes.0"),
        ({"protocol": 1, "changes": [change_of("job", {"cause": "x"})]}, "batch_id"),
        (
            {"protocol": 1, "batch_id": "b", "changes": [change_of("job", {"cause": "x"})], "extra": 1},
            "extra",
        ),
    ],
)
def test_malformed_batches_are_rejected_with_their_field_path(body, path):
    assert path in paths_of_batch_error(body)


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        (change_of("job_event", note_event(text="n" * (MAX_NOTE_CHARS + 1))), "data.text"),
        (change_of("job", {"resolution_note": "n" * (MAX_NOTE_CHARS + 1)}), "data.resolution_note"),
        (change_of("job", {"cause": "c" * 201}), "data.cause"),
        (change_of("meter_reading", reading(note="n" * 1001)), "data.note"),
        ({**change_of("job_event", note_event()), "entity": "e" * 41}, "entity"),
    ],
)
def test_oversized_strings_are_rejected(raw, path):
    assert path in paths_of_change_error(raw)


def test_a_note_of_exactly_the_limit_is_accepted():
    text = "n" * MAX_NOTE_CHARS
    assert load_change(change_of("job_event", note_event(text=text))).data["text"] == text


@pytest.mark.parametrize(
    ("entity", "read_only"),
    [
        ("customer", True),
        ("premise", True),
        ("meter", True),
        ("route", True),
        ("banana", False),
        ("conflict", False),
    ],
)
def test_a_change_to_an_unknown_or_read_only_entity_raises_unknown_entity(entity, read_only):
    with pytest.raises(UnknownEntity) as caught:
        load_change(change_of(entity, {"name": "x"}))
    assert caught.value.read_only is read_only
    assert caught.value.entity == entity
    assert list(flatten_messages(caught.value.messages)) == ["entity"]


@pytest.mark.parametrize(
    "bad_hlc",
    ["yesterday", "", 1700000000000, None, "1700000000000-0000-dev-1\n", "1700000000000-0000-dev 1"],
)
def test_a_bad_hlc_is_rejected(bad_hlc):
    assert "hlc" in paths_of_change_error(change_of("job", {"cause": "x"}, hlc=bad_hlc))


def test_a_bad_base_stamp_is_rejected_with_its_path():
    paths = paths_of_change_error(change_of("job", {"cause": "x"}, base={"cause": "not-a-stamp"}))
    assert any(path.startswith("base.cause") for path in paths)


def test_base_stamps_only_on_job_edits():
    assert "base" in paths_of_change_error(change_of("job_event", note_event(), base={"text": HLC_TEXT}))


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        (change_of("job_event", note_event(), colour="red"), "colour"),
        (change_of("job_event", note_event(colour="red")), "data.colour"),
        (change_of("job", {"colour": "red"}), "data.colour"),
        (change_of("meter_reading", reading(gps={"lat": 0, "lon": 0, "alt": 3})), "data.gps.alt"),
    ],
)
def test_unknown_fields_are_rejected(raw, path):
    assert paths_of_change_error(raw)[path] == ["Unknown field."]


def test_unknown_fields_in_pulled_records_are_rejected():
    with pytest.raises(ValidationError) as caught:
        load_record(
            {
                "entity": "customer",
                "id": "c1",
                "op": "upsert",
                "data": {**EXAMPLE_RECORDS["customer"], "x": 1},
            }
        )
    assert "data.x" in flatten_messages(caught.value.messages)


@pytest.mark.parametrize("naive", ["2024-03-01T10:15:00", "2024-03-01T10:15:00.123", "2024-03-01 10:15"])
def test_naive_datetimes_are_rejected(naive):
    paths = paths_of_change_error(change_of("meter_reading", reading(read_at=naive)))
    assert "time zone" in " ".join(paths["data.read_at"])


def test_a_reading_with_both_value_and_skip_code_is_rejected():
    paths = paths_of_change_error(change_of("meter_reading", reading(skip_code="dog")))
    assert paths == {"data.value": ["Give either a value or a skip code."]}


def test_a_reading_with_neither_value_nor_skip_code_is_rejected():
    paths = paths_of_change_error(change_of("meter_reading", reading(value=None)))
    assert paths == {"data.value": ["Give either a value or a skip code."]}


def test_a_skip_with_a_known_code_is_accepted_and_an_unknown_code_is_not():
    assert load_change(change_of("meter_reading", reading(value=None, skip_code="dog"))).data["value"] is None
    assert "data.skip_code" in paths_of_change_error(
        change_of("meter_reading", reading(value=None, skip_code="gremlins"))
    )


@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        ({"kind": "status"}, {"data.status", "data.round"}),
        ({"kind": "status", "status": "on_site"}, {"data.round"}),
        ({"kind": "status", "status": "on_site", "round": 1, "text": "x"}, {"data.text"}),
        ({"kind": "status", "status": "fixed", "round": 1}, {"data.status"}),
        ({"kind": "status", "status": "on_site", "round": 0}, {"data.round"}),
        ({"kind": "note"}, {"data.text"}),
        ({"kind": "note", "text": ""}, {"data.text"}),
        ({"kind": "note", "text": "x", "status": "on_site"}, {"data.status"}),
        ({"kind": "accepted", "text": "x"}, {"data.text"}),
        ({"kind": "accepted", "round": 1}, {"data.round"}),
        ({"kind": "material", "material_code": "W"}, {"data.quantity", "data.unit"}),
        ({"kind": "material", "material_code": "W", "quantity": 0, "unit": "m"}, {"data.quantity"}),
        ({"kind": "repair"}, {"data.kind"}),
        ({}, {"data.kind"}),
    ],
)
def test_job_event_fields_follow_its_kind(fields, errors):
    data = {"job_id": "job-1", "recorded_at": WHEN, **fields}
    assert set(paths_of_change_error(change_of("job_event", data))) == errors


@pytest.mark.parametrize(
    "data",
    [
        {"job_id": "j", "kind": "status", "status": "completed", "round": 2, "recorded_at": WHEN},
        {
            "job_id": "j",
            "kind": "material",
            "material_code": "W",
            "quantity": 2.5,
            "unit": "m",
            "recorded_at": WHEN,
        },
        {"job_id": "j", "kind": "accepted", "recorded_at": WHEN, "gps": None},
        note_event(),
    ],
)
def test_each_job_event_kind_is_accepted_with_its_own_fields(data):
    assert load_change(change_of("job_event", data)).data["kind"] == data["kind"]


def test_a_job_edit_must_name_at_least_one_field():
    assert "data._schema" in paths_of_change_error(change_of("job", {}))


def test_an_upsert_must_carry_data_and_a_removal_need_not():
    with pytest.raises(ValidationError) as caught:
        load_record({"entity": "customer", "id": "c1", "op": "upsert"})
    assert "data" in flatten_messages(caught.value.messages)
    assert load_record({"entity": "customer", "id": "c1", "op": "remove"})["data"] is None


# --- fingerprints ---------------------------------------------------------------------------------------


def test_equal_changes_have_equal_fingerprints_even_when_spelled_differently():
    a = load_change(change_of("meter_reading", reading(read_at="2024-03-01T18:15:00+08:00")))
    b = load_change({**change_of("meter_reading", {**reading(), "reading_type": "regular"}), "change_id": "other"})
    assert a.fingerprint() == b.fingerprint()


@pytest.mark.parametrize(
    "other",
    [
        change_of("meter_reading", reading(value=12346)),
        change_of("meter_reading", reading(read_at="2024-03-01T10:15:00.001Z")),
        change_of("meter_reading", reading(), hlc="1700000000000-0001-dev-1"),
        change_of("meter_reading", reading(), entity_id="e-2"),
        change_of("meter_reading", reading(trouble_code="tamper")),
    ],
)
def test_a_fingerprint_changes_when_the_change_differs(other):
    assert load_change(change_of("meter_reading", reading())).fingerprint() != load_change(other).fingerprint()


def test_a_fingerprint_covers_base_stamps():
    plain = load_change(change_of("job", {"cause": "x"}))
    based = load_change(change_of("job", {"cause": "x"}, base={"cause": HLC_TEXT}))
    assert plain.fingerprint() != based.fingerprint()


@given(raw_changes(), raw_changes())
def test_fingerprints_are_equal_exactly_when_the_changes_content_is(raw_a, raw_b):
    a, b = load_change(raw_a), load_change(raw_b)
    same_content = (a.entity, a.entity_id, a.hlc, a.data, dict(a.base)) == (
        b.entity,
        b.entity_id,
        b.hlc,
        b.data,
        dict(b.base),
    )
    assert (a.fingerprint() == b.fingerprint()) == same_content
    renamed = Change("other-id", a.entity, a.entity_id, a.hlc, a.data, a.base)
    assert renamed.fingerprint() == a.fingerprint()


# --- flatten_messages -------------------------------------------------------------------------------------


def test_flatten_messages_builds_dotted_paths():
    messages = {
        "changes": {3: {"data": {"value": ["Bad."], "gps": {"lat": ["Too far."]}}}},
        "_schema": ["Whole."],
    }
    assert flatten_messages(messages) == {
        "changes.3.data.value": ["Bad."],
        "changes.3.data.gps.lat": ["Too far."],
        "_schema": ["Whole."],
    }
    assert flatten_messages([{"a": ["x"]}, ["y"]]) == {"0.a": ["x"], "1": ["y"]}
    assert flatten_messages("plain") == {"_schema": ["plain"]}
