"""The value analysis's fast paths give what the plain rule gives: classify's float path (volumes from the
database) equals its exact general path, the lazily built ranking matches the columns, `analyse` equals
classifying `customer_volumes` row by row, and on SQLite the period's readings are summed from the
covering index. On SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from fractions import Fraction

import sqlalchemy as sa
from flask import Flask
from hypothesis import given
from hypothesis import strategies as st

from server.extensions import db
from server.models import MeterReading
from server.services import analysis
from server.services.analysis import AbcClass, CustomerRow, Rule, Variant, classify
from server.services.clock import now_hlc
from server.services.periods import Period
from tests.web.test_abc_rule import rules

YEAR = Period(dt.date(2025, 1, 1), dt.date(2025, 12, 31))
IN_YEAR = dt.datetime(2025, 6, 15, 10, 0, tzinfo=dt.UTC)

# floats only (the fast path): repeated values make ties, negatives and zeros make non-consuming customers
floats = st.one_of(
    st.sampled_from([0.0, -0.0, -1.5, 0.1, 0.2, 0.3, 1.0, 7.25, 1e-9]),
    st.floats(min_value=-10, max_value=1e9, allow_nan=False, allow_infinity=False),
)
customers = st.dictionaries(st.text(alphabet="0123456789", min_size=1, max_size=5), floats, max_size=40)


@given(customers, rules())
def test_float_volumes_classify_as_their_exact_fractions(volumes, rule):
    fast = classify(volumes, rule)
    exact = classify({key: Fraction(value) for key, value in volumes.items()}, rule)
    assert fast.ranking == exact.ranking
    assert fast.totals == exact.totals
    assert (fast.total_volume, fast.consuming) == (exact.total_volume, exact.consuming)


@given(customers, rules())
def test_ranking_lookup_and_classes_agree_with_the_columns(volumes, rule):
    result = classify(volumes, rule)
    assert [r.key for r in result.ranking] == list(result.ranked_keys)
    assert [r.rank for r in result.ranking] == list(range(1, len(volumes) + 1))
    assert result.classes() == {r.key: r.abc for r in result.ranking}
    for ranked in result.ranking:
        assert result[ranked.key] == ranked == result.get(ranked.key)
    assert result.get("not a key") is None


def test_mixed_number_types_take_the_exact_path():
    # T = 1 + 0.7 + 1/3 + 0.2 = 67/30: "c" starts at 1.7 < 80 % (1.79) -> A; "d" at 61/30 < 95 % -> B
    result = classify({"a": 0.7, "b": 1, "c": Fraction(1, 3), "d": 0.2}, Rule.make(Variant.CUMULATIVE))
    assert [(r.key, r.abc) for r in result.ranking] == [
        ("b", AbcClass.A),
        ("a", AbcClass.A),
        ("c", AbcClass.A),
        ("d", AbcClass.B),
    ]


def _reading(meter_id: str, consumption: float | None, read_at: dt.datetime = IN_YEAR, **extra) -> MeterReading:
    row = MeterReading(
        id=f"MR-{uuid.uuid4().hex[:12]}",
        meter_id=meter_id,
        value=extra.pop("value", 1000),
        reading_type="regular",
        read_at=read_at,
        consumption=consumption,
        hlc=str(now_hlc()),
        received_at=read_at,
        flags=[],
        **extra,
    )
    db.session.add(row)
    return row


def _fill(app: Flask) -> None:
    with app.app_context():
        for meter, used in (("M1", 0.1), ("M1", 0.2), ("M2", 0.3), ("M3", 40.0), ("M4", 40.0), ("M5", -2.0)):
            _reading(meter, used)
        wrong = _reading("M2", 999.0)
        fixed = _reading("M2", 5.5, supersedes=wrong.id)
        wrong.superseded_by = fixed.id
        _reading("M4", None, value=None, skip_code="dog")
        _reading("M3", 5000.0, dt.datetime(2026, 1, 1, tzinfo=dt.UTC))  # after the period
        db.session.commit()


def test_analyse_equals_classifying_the_customer_volumes(app: Flask, world) -> None:
    _fill(app)
    with app.app_context():
        for rule in (Rule(), Rule.make(Variant.CUMULATIVE), Rule.make(Variant.COUNT, "1/2", "0.5")):
            volumes = analysis.customer_volumes(YEAR)
            classified = classify({v.account_no: v.volume for v in volumes}, rule)
            by_account = {v.account_no: v for v in volumes}
            expected = [
                CustomerRow(
                    *dataclasses.astuple(by_account[r.key]),  # CustomerVolume's fields, in order
                    rank=r.rank,
                    abc=r.abc,
                    cumulative_share=r.cumulative_share,
                )
                for r in classified.ranking
            ]
            result = analysis._analyse(YEAR, rule)
            assert list(result.rows) == expected
            assert all(type(row) is CustomerRow for row in result.rows)
            assert result.classification.totals == classified.totals
            assert {row.customer_id: result.row(row.customer_id) for row in expected} == {
                row.customer_id: row for row in expected
            }
            segments = result.segments()
            assert sum(s.customers for s in segments) == len(expected)
            assert [s.by_class for s in segments] == [
                {abc: sum(1 for row in expected if row.segment == s.segment and row.abc is abc) for abc in AbcClass}
                for s in segments
            ]


def test_the_period_aggregate_reads_the_covering_index_on_sqlite(app: Flask, world, runner) -> None:
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        return  # PostgreSQL chooses its plan by its own statistics
    _fill(app)
    assert runner.invoke(args=["analyze"]).exit_code == 0
    with app.app_context():
        statement = sa.select(analysis.effective_volume_by_customer(YEAR))
        compiled = statement.compile(db.engine, compile_kwargs={"literal_binds": True})
        plan = " / ".join(row[-1] for row in db.session.execute(sa.text(f"EXPLAIN QUERY PLAN {compiled}")))
    assert "meter_readings USING INDEX ix_readings_effective_read_at" in plan, plan
