"""Customer value analysis: ABC classification by consumption over a period, beside the value segments.

Interface for other pages and the staff API (kept stable):

- `classify(volumes, rule) -> Classification` — the ABC rule itself, a pure function (no database).
- `Rule.make(variant, a, b)`, `configured_rule(variant=None, a=None, b=None)` — the thresholds.
- `analyse(period, rule) -> ValueAnalysis` — every customer's volume over the period, classified, with
  class and segment totals; `analysis.row(customer_id)` is one customer's `CustomerRow`.
- `customer_class(customer_id, period=None, rule=None) -> CustomerRow | None` — one customer's class
  (`.abc` is "A", "B" or "C"), rank, volume and cumulative share; default period: the last 12 months.
  Classes are relative, so this ranks every customer (one aggregate query over the period's readings);
  the ranking is kept per data version (periods.cached_figures), so a customer page reuses it.
- `customer_volumes(period)` — the volumes alone.

The rule (DESIGN.md section 4; docs/analysis.md has worked examples)
--------------------------------------------------------------------
A customer's *volume* is the sum of the `consumption` of its effective readings (not superseded, with a
value) read in the period, over all meters of all its premises. Customers are ranked by volume,
descending; equal volumes are ordered by account number, ascending (the key given to `classify`).

Only customers with a positive volume take part in the ranking ("consuming" customers, n of them; their
volumes make the total T). Customers with no readings in the period, or a net volume of zero or less
(estimates corrected downwards), are **C**, are not counted in n, add nothing to T, and are listed after
the consuming customers. An empty period (T = 0) therefore classifies everyone C.

- `count` variant (DESIGN's rule, the default): the first third of the n ranked customers *by count* are
  **A**; after them, customers are **B** while the cumulative volume (counted from the top of the ranking,
  A included) has not yet reached 95 % of T; the rest are **C** (the last 5 % of the volume).
- `cumulative` variant (the textbook rule): **A** while the cumulative volume has not reached 80 % of T,
  then **B** while it has not reached 95 %, the rest **C**.
- Thresholds are configurable (`a`: the count share of A, or A's cumulative share; `b`: the cumulative share
  that ends B), exact as given (a decimal or a fraction such as 1/3; the default count share is exactly 1/3).

Boundaries. One principle decides every boundary case: **a customer that straddles a boundary belongs to
the higher class.**
- Count: the customer at position i (0-based) occupies [i, i+1) of the n places; it is A when that
  overlaps the first a·n places, i.e. i < a·n. So A holds ceil(a·n) customers (n = 10: 4 A), and at least
  one whenever anyone consumed.
- Volume: a customer occupies [S, S + v) of the cumulative volume, S being the volume ranked before it.
  It is B (or A) when S < b·T: the customer whose volume crosses 95 % is **B**, and C holds only customers
  lying wholly in the last 5 % (C's share is at most 1 - b). If A alone already reaches b·T, nobody is B.
- Ties: customers of equal volume always get the same class — a class never depends on an account
  number. A tie group straddling a boundary goes, whole, to the higher class (the class of its first
  place), so A may exceed ceil(a·n) by the tied customers. Account numbers only order the list.

Arithmetic is exact (volumes are turned into integers over a common denominator), so the result never
depends on the order customers are given in or on floating-point rounding of running sums.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from functools import cached_property, partial
from typing import Any, NamedTuple

from flask import current_app
from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, pre_load, validate, validates_schema
from sqlalchemy import func, select

from sync_protocol import codes
from sync_protocol.lifecycle import FINISHED

from ..extensions import db
from ..models import Customer, Job, Meter, MeterReading, Premise
from .periods import MAX_DAYS, N_, Period, cached_figures, last_months, today_utc

Number = int | float | Decimal | Fraction


class Variant(StrEnum):
    COUNT = "count"  # DESIGN's rule: the first third by count are A, then B until 95 % of the volume
    CUMULATIVE = "cumulative"  # the textbook rule: A until 80 %, B until 95 %


class AbcClass(StrEnum):
    A = "A"  # key customers
    B = "B"  # major customers
    C = "C"  # ordinary customers

    @property
    def order(self) -> int:
        return "ABC".index(self.value)


DEFAULTS: Mapping[Variant, tuple[Fraction, Fraction]] = {
    Variant.COUNT: (Fraction(1, 3), Fraction(95, 100)),
    Variant.CUMULATIVE: (Fraction(80, 100), Fraction(95, 100)),
}


def to_share(value: Number | str) -> Fraction:
    """A share as an exact fraction: 0.95, "0.95", "19/20", Decimal("0.95") and Fraction(19, 20) are equal.
    A float is read as the decimal it prints as (0.95, not its binary approximation)."""
    if isinstance(value, bool):
        raise TypeError("a share is a number")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("a share is a finite number")
        return Fraction(repr(value))
    if isinstance(value, str):
        return Fraction(value.strip())
    return Fraction(value)


@dataclass(frozen=True)
class Rule:
    """Which variant, and its thresholds as exact shares in (0, 1]."""

    variant: Variant = Variant.COUNT
    a: Fraction = DEFAULTS[Variant.COUNT][0]  # count share of A, or cumulative volume share ending A
    b: Fraction = DEFAULTS[Variant.COUNT][1]  # cumulative volume share ending B

    def __post_init__(self) -> None:
        object.__setattr__(self, "variant", Variant(self.variant))
        object.__setattr__(self, "a", to_share(self.a))
        object.__setattr__(self, "b", to_share(self.b))
        for name in ("a", "b"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"threshold {name} must lie in (0, 1]")
        if self.variant is Variant.CUMULATIVE and self.a > self.b:
            raise ValueError("the cumulative share ending A cannot exceed the one ending B")

    @classmethod
    def make(
        cls, variant: Variant | str = Variant.COUNT, a: Number | str | None = None, b: Number | str | None = None
    ) -> Rule:
        """A rule with the variant's default thresholds (1/3 and 95 %, or 80 % and 95 %) where none is given."""
        variant = Variant(variant)
        default_a, default_b = DEFAULTS[variant]
        return cls(variant, default_a if a is None else to_share(a), default_b if b is None else to_share(b))


def configured_rule(
    variant: Variant | str | None = None, a: Number | str | None = None, b: Number | str | None = None
) -> Rule:
    """The rule from the app's configuration (ABC_* keys in server/config.py), overridden where given."""
    config = current_app.config
    variant = Variant(variant or config.get("ABC_VARIANT", Variant.COUNT))
    if a is None:
        key = "ABC_A_COUNT_SHARE" if variant is Variant.COUNT else "ABC_A_CUMULATIVE_SHARE"
        a = config.get(key)
    if b is None:
        b = config.get("ABC_B_CUMULATIVE_SHARE")
    return Rule.make(variant, a, b)


class Ranked(NamedTuple):
    """One customer's place in the ranking (a named tuple: a ranking may hold 100 000 of them)."""

    key: str
    volume: float
    rank: int  # 1-based position in the whole ranking (non-consuming customers last)
    abc: AbcClass
    cumulative_share: float  # share of the total ranked up to and including this customer (0 if not consuming)

    @property
    def consuming(self) -> bool:
        return self.volume > 0


# tuple.__new__ bound to the class: `_make` without its Python-level length check, for 100k rows
_new_ranked = partial(tuple.__new__, Ranked)


@dataclass(frozen=True)
class ClassTotals:
    abc: AbcClass
    customers: int
    volume: float  # consumption of the class's customers (non-consuming customers add nothing)
    customer_share: float  # of all customers
    volume_share: float  # of the total volume


@dataclass(frozen=True)
class Classification:
    """The ranking as columns by place (0-based rank); `ranking` (one `Ranked` per customer) and the
    lookup by key are built on first use only: the value analysis builds its own rows from the columns."""

    rule: Rule
    ranked_keys: tuple[str, ...]  # every customer's key, in rank order
    ranked_volumes: tuple[float, ...]  # by place (0-based rank)
    ranked_classes: tuple[AbcClass, ...]  # by place
    ranked_shares: tuple[float, ...]  # by place: cumulative share of the total up to and including it
    total_volume: float
    consuming: int  # n: customers with a positive volume, the population the count threshold applies to
    totals: tuple[ClassTotals, ...]  # A, B, C

    @cached_property
    def ranking(self) -> tuple[Ranked, ...]:
        """Every customer, in rank order."""
        ranks = range(1, len(self.ranked_keys) + 1)
        columns = zip(
            self.ranked_keys, self.ranked_volumes, ranks, self.ranked_classes, self.ranked_shares, strict=True
        )
        return tuple(map(_new_ranked, columns))

    @cached_property
    def _index(self) -> Mapping[str, Ranked]:
        return dict(zip(self.ranked_keys, self.ranking, strict=True))

    def __getitem__(self, key: str) -> Ranked:
        return self._index[key]

    def get(self, key: str) -> Ranked | None:
        return self._index.get(key)

    def classes(self) -> dict[str, AbcClass]:
        return dict(zip(self.ranked_keys, self.ranked_classes, strict=True))

    def total(self, abc: AbcClass | str) -> ClassTotals:
        return self.totals[AbcClass(abc).order]


def _ratio(volume: Number) -> tuple[int, int]:
    """(numerator, denominator) of a volume, exactly (a float's binary value, a Decimal's digits)."""
    if isinstance(volume, bool) or not isinstance(volume, int | float | Decimal | Fraction):
        raise TypeError(f"a volume is a number, not {volume!r}")
    if isinstance(volume, float | Decimal) and not math.isfinite(volume):
        raise ValueError("a volume is a finite number")
    return volume.as_integer_ratio()


def _ratios(volumes: Sequence[Number]) -> list[tuple[int, int]]:
    """Every volume's exact ratio. Volumes from the database are all floats: checked and converted by C
    loops (map) rather than one Python call per customer."""
    if all(type(volume) is float for volume in volumes) and all(map(math.isfinite, volumes)):
        return list(map(float.as_integer_ratio, volumes))
    return [_ratio(volume) for volume in volumes]


def classify(volumes: Mapping[str, Number], rule: Rule | None = None) -> Classification:
    """Classify customers A/B/C by volume under `rule` (default: DESIGN's count rule, 1/3 and 95 %).

    `volumes` maps a unique key (the account number: it orders equal volumes) to the customer's volume.
    Guarantees: every key gets exactly one class; the result does not depend on the mapping's order;
    a larger volume never gets a lower class than a smaller one and equal volumes get the same class; see
    the module docstring for the boundaries."""
    return _classify([str(key) for key in volumes], list(volumes.values()), rule or Rule())[1]


def _classify(keys: list[str], given: list[Number], rule: Rule) -> tuple[list[int], Classification]:
    """The ranking (input indexes in rank order) and classification of customers `keys` with volumes
    `given` (parallel lists). O(n log n): one common denominator, integer volumes, one ranking sort, and
    thresholds compared as integers; no object per customer beyond the result's columns."""
    ratios = _ratios(given)
    # integers over one common denominator: exact sums and comparisons, and fast ones. Denominators
    # repeat (floats': powers of two), so the lcm and the scale factors are taken over the distinct ones.
    factors = dict.fromkeys(den for _, den in ratios)
    denominator = math.lcm(*factors) if factors else 1
    for den in factors:
        factors[den] = denominator // den
    scaled = [num * factors[den] for num, den in ratios]
    # rank: volume descending, then key ascending (two stable sorts). Floats order exactly as their exact
    # values, and a sort of floats is several times faster than one of large integers.
    ordering = given if all(type(volume) is float for volume in given) else scaled
    order = sorted(range(len(keys)), key=keys.__getitem__)
    negated = [-value for value in ordering]
    order.sort(key=negated.__getitem__)
    ranked = [scaled[index] for index in order]
    n = len(ranked)
    while n and ranked[n - 1] <= 0:  # non-consuming customers are ranked last
        n -= 1
    total = sum(ranked[:n])
    a, b = rule.a, rule.b
    a_places = -((-a.numerator * n) // a.denominator)  # ceil(a·n): places i < a·n are A
    count_rule = rule.variant is Variant.COUNT
    a_limit, b_limit = a.numerator * total, b.numerator * total  # S < a·T  <=>  S·den(a) < num(a)·T

    classes = [AbcClass.C] * len(ranked)  # by place; non-consuming customers stay C
    cumulative = [0] * len(ranked)  # volume ranked up to and including the place
    sums = dict.fromkeys(AbcClass, 0)
    before = 0  # volume ranked before the current tie group
    i = 0
    while i < n:
        volume = ranked[i]
        j = i + 1
        while j < n and ranked[j] == volume:
            j += 1
        if (i < a_places) if count_rule else (before * a.denominator < a_limit):
            abc = AbcClass.A
        elif before * b.denominator < b_limit:
            abc = AbcClass.B
        else:
            abc = AbcClass.C
        classes[i:j] = [abc] * (j - i)
        for place in range(i, j):
            before += volume
            cumulative[place] = before
        sums[abc] += volume * (j - i)
        i = j

    everyone = len(ranked)
    counts = {abc: classes.count(abc) for abc in AbcClass}
    totals = tuple(
        ClassTotals(
            abc=abc,
            customers=counts[abc],
            volume=float(Fraction(sums[abc], denominator)),
            customer_share=counts[abc] / everyone if everyone else 0.0,
            volume_share=sums[abc] / total if total else 0.0,
        )
        for abc in AbcClass
    )
    classification = Classification(
        rule=rule,
        ranked_keys=tuple([keys[index] for index in order]),
        ranked_volumes=tuple([float(given[index]) for index in order]),
        ranked_classes=tuple(classes),
        ranked_shares=tuple([value / total for value in cumulative] if total else [0.0] * everyone),
        total_volume=float(Fraction(total, denominator)),
        consuming=n,
        totals=totals,
    )
    return order, classification


# --- the database's volumes ------------------------------------------------------------------------


@dataclass(frozen=True)
class CustomerVolume:
    customer_id: str
    account_no: str
    name: str
    segment: str
    vip: bool
    volume: float
    readings: int  # effective valued readings counted


class CustomerRow(NamedTuple):
    """A classified customer, as the pages, the API and CSV show it."""

    customer_id: str
    account_no: str
    name: str
    segment: str
    vip: bool
    volume: float
    readings: int
    rank: int
    abc: AbcClass
    cumulative_share: float


_new_row = partial(tuple.__new__, CustomerRow)  # as _new_ranked


@dataclass(frozen=True)
class SegmentTotals:
    segment: str
    customers: int
    vip: int
    volume: float  # consumption (non-consuming customers add nothing)
    volume_share: float
    by_class: Mapping[AbcClass, int]


def effective_volume_by_customer(period: Period) -> Any:
    """Subquery (customer_id, volume, readings): consumption of effective valued readings in the period.
    Readings are summed per meter first, so the joins to premises touch one row per meter, not per reading."""
    reading = MeterReading
    per_meter = (
        select(
            reading.meter_id.label("meter_id"),
            func.sum(reading.consumption).label("volume"),
            # count(*), not count(id): the period's effective readings are then read from the covering
            # index ix_readings_effective_read_at alone, never from the table (a fifth of the time)
            func.count().label("readings"),
        )
        .where(
            reading.superseded_by.is_(None),
            reading.value.is_not(None),
            reading.read_at >= period.start_at,
            reading.read_at < period.end_at,
        )
        .group_by(reading.meter_id)
        .subquery()
    )
    return (
        select(
            Premise.customer_id.label("customer_id"),
            func.sum(per_meter.c.volume).label("volume"),
            func.sum(per_meter.c.readings).label("readings"),
        )
        .select_from(per_meter)
        .join(Meter, Meter.id == per_meter.c.meter_id)
        .join(Premise, Premise.id == Meter.premise_id)
        .group_by(Premise.customer_id)
        .subquery()
    )


VolumeRow = tuple[str, str, str, str, bool, float, int]  # CustomerVolume's fields, as a plain tuple


def _volume_rows(period: Period) -> list[VolumeRow]:
    """(customer_id, account_no, name, segment, vip, volume, readings) of every customer over the period."""
    volumes = effective_volume_by_customer(period)
    statement = select(
        Customer.id,
        Customer.account_no,
        Customer.name,
        Customer.segment,
        Customer.vip,
        func.coalesce(volumes.c.volume, 0.0),
        func.coalesce(volumes.c.readings, 0),
    ).outerjoin(volumes, volumes.c.customer_id == Customer.id)
    return [
        (cid, account, name, segment, bool(vip), float(volume or 0.0), int(readings or 0))
        # the Core connection: rows as plain tuples, without the ORM's result machinery per row
        for cid, account, name, segment, vip, volume, readings in db.session.connection().execute(statement)
    ]


def customer_volumes(period: Period) -> list[CustomerVolume]:
    """Every customer with its volume over the period (0 without readings): one aggregate query."""
    return [CustomerVolume(*row) for row in _volume_rows(period)]


@dataclass(frozen=True)
class ValueAnalysis:
    period: Period
    classification: Classification
    rows: tuple[CustomerRow, ...]  # every customer in rank order
    _by_id: Mapping[str, CustomerRow] = field(default_factory=dict, repr=False, compare=False)

    @property
    def rule(self) -> Rule:
        return self.classification.rule

    def row(self, customer_id: str) -> CustomerRow | None:
        return self._by_id.get(customer_id)

    def select(
        self, abc: AbcClass | str | None = None, segment: str | None = None, vip: bool | None = None
    ) -> list[CustomerRow]:
        """The classified customers matching the filters, in rank order."""
        wanted = AbcClass(abc) if abc else None
        return [
            row
            for row in self.rows
            if (wanted is None or row.abc is wanted)
            and (segment is None or row.segment == segment)
            and (vip is None or row.vip == vip)
        ]

    @cached_property  # the analysis is immutable and cached (analyse): walk its 100k rows once
    def consuming_volumes(self) -> tuple[float, ...]:
        """The consuming customers' volumes in rank order (the Pareto chart's bars)."""
        return tuple(row.volume for row in self.rows[: self.classification.consuming])

    @cached_property
    def consuming_by_class(self) -> tuple[tuple[AbcClass, int], ...]:
        """How many consuming customers each class holds, A, B, C."""
        consuming = self.rows[: self.classification.consuming]
        return tuple((abc, sum(1 for row in consuming if row.abc is abc)) for abc in AbcClass)

    @cached_property
    def vips(self) -> tuple[CustomerRow, ...]:
        """The VIP customers in rank order."""
        return tuple(self.select(vip=True))

    @cached_property
    def _segments(self) -> tuple[SegmentTotals, ...]:
        return tuple(self._segment_totals())

    def segments(self) -> list[SegmentTotals]:
        """Per value segment (the code list's order, then any other segment found): customers, VIP count,
        volume and its share, and how many of them are A, B and C."""
        return list(self._segments)

    def _segment_totals(self) -> list[SegmentTotals]:
        total = self.classification.total_volume
        # one pass over the rows (not one per segment); fsum is exact, so the grouping order is irrelevant
        members: dict[str, list[CustomerRow]] = {segment: [] for segment in codes.CUSTOMER_SEGMENTS}
        for row in self.rows:
            members.setdefault(row.segment, []).append(row)
        order = list(codes.CUSTOMER_SEGMENTS) + sorted(set(members) - set(codes.CUSTOMER_SEGMENTS))
        result = []
        for segment in order:
            rows = members[segment]
            volume = math.fsum(row.volume for row in rows if row.volume > 0)
            classes = [row.abc for row in rows]
            result.append(
                SegmentTotals(
                    segment=segment,
                    customers=len(rows),
                    vip=sum(1 for row in rows if row.vip),
                    volume=volume,
                    volume_share=volume / total if total else 0.0,
                    by_class={abc: classes.count(abc) for abc in AbcClass},
                )
            )
        return result


def default_period() -> Period:
    """The value analysis looks at the last twelve months unless told otherwise."""
    return last_months(today_utc(), 12)


def analyse(period: Period | None = None, rule: Rule | None = None) -> ValueAnalysis:
    """Every customer's volume over `period`, classified by `rule` (default: the configured one). Kept per
    data version (periods.cached_figures): a page load after new readings arrive classifies again."""
    period = period or default_period()
    rule = rule or configured_rule()
    return cached_figures(("abc", period, rule), lambda: _analyse(period, rule))


def _analyse(period: Period, rule: Rule) -> ValueAnalysis:
    volumes = _volume_rows(period)
    order, classification = _classify([row[1] for row in volumes], [row[5] for row in volumes], rule)
    # a row is the customer's fields + (rank, class, cumulative share): tuples joined and made rows in C
    # loops, not one Python constructor call per customer (100k of them)
    ranks = range(1, len(order) + 1)
    placed = zip(ranks, classification.ranked_classes, classification.ranked_shares, strict=True)
    rows = tuple(map(_new_row, map(tuple.__add__, [volumes[index] for index in order], placed)))
    return ValueAnalysis(period, classification, rows, {row[0]: row for row in rows})


def customer_class(customer_id: str, period: Period | None = None, rule: Rule | None = None) -> CustomerRow | None:
    """One customer's class, rank and volume over `period` (default: the last 12 months) by `rule`
    (default: the configured one); None for an unknown customer."""
    return analyse(period, rule).row(customer_id)


def open_jobs_of_vips() -> dict[str, int]:
    """{customer id: jobs not yet finished} for VIP customers (finished: lifecycle.FINISHED)."""
    # IN (VIP customers), not a join: SQLite would walk every job and look its customer up (0.4 s at
    # 100k jobs) instead of reading the few VIPs' jobs through the customer_id index
    vips = select(Customer.id).where(Customer.vip.is_(True))
    statement = (
        select(Job.customer_id, func.count())
        .where(Job.customer_id.in_(vips), Job.status.not_in([status.value for status in FINISHED]))
        .group_by(Job.customer_id)
    )
    return {customer_id: int(count) for customer_id, count in db.session.execute(statement)}


# --- request parameters (the page and the staff API) ----------------------------------------------


class AbcQuerySchema(Schema):
    """Period, rule and list filters of the value analysis. Empty values mean "not given" (an HTML form
    sends them); thresholds are percentages; a missing one takes the variant's configured default."""

    class Meta:
        unknown = EXCLUDE

    start = fields.Date(metadata={"description": "First day (UTC) of the period; default: 12 months before end"})
    end = fields.Date(metadata={"description": "Last day (UTC) of the period, included; default: today"})
    variant = fields.String(
        validate=validate.OneOf([v.value for v in Variant]),
        metadata={"description": "count: first third by count are A (DESIGN); cumulative: A until a % of volume"},
    )
    a = fields.Decimal(
        validate=validate.Range(min=0, max=100, min_inclusive=False),
        metadata={"description": "Percent: the count share of A (count) or the cumulative volume ending A"},
    )
    b = fields.Decimal(
        validate=validate.Range(min=0, max=100, min_inclusive=False),
        metadata={"description": "Percent: the cumulative volume share ending B (default 95)"},
    )
    abc = fields.String(
        data_key="class", validate=validate.OneOf([c.value for c in AbcClass]), metadata={"description": "A, B or C"}
    )
    segment = fields.String(validate=validate.OneOf(list(codes.CUSTOMER_SEGMENTS)))
    vip = fields.Boolean(metadata={"description": "true: VIP customers only; false: the others"})
    page = fields.Integer(load_default=1, validate=validate.Range(min=1))
    per_page = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))

    @pre_load
    def _drop_empty(self, data: Mapping[str, Any], **kwargs: Any) -> dict[str, Any]:
        return {key: value for key, value in data.items() if value not in ("", None)}

    @validates_schema
    def _consistent(self, data: Mapping[str, Any], **kwargs: Any) -> None:
        start, end = data.get("start"), data.get("end")
        if start and end and start > end:
            raise ValidationError(N_("The end is before the start."), "end")
        if start and end and (end - start).days + 1 > MAX_DAYS:
            raise ValidationError(N_("The period is too long."), "start")
        a, b = data.get("a"), data.get("b")
        if data.get("variant") == Variant.CUMULATIVE and a is not None and b is not None and a > b:
            raise ValidationError(N_("A's cumulative share cannot exceed B's."), "a")

    @post_load
    def _make(self, data: dict[str, Any], **kwargs: Any) -> AbcQuery:
        end = data.get("end") or today_utc()
        start = data.get("start") or last_months(end, 12).start
        if start > end:  # only the start was given, after today
            end = start
        percent = {name: None if data.get(name) is None else Fraction(data[name]) / 100 for name in ("a", "b")}
        try:
            rule = configured_rule(data.get("variant"), percent["a"], percent["b"])
        except ValueError as exc:  # a default from the configuration combined with one given threshold
            raise ValidationError(str(exc), "a") from exc
        return AbcQuery(
            period=Period(start, end),
            rule=rule,
            abc=AbcClass(data["abc"]) if data.get("abc") else None,
            segment=data.get("segment"),
            vip=data.get("vip"),
            page=data["page"],
            per_page=data["per_page"],
            given={name: data[name] for name in ("start", "end", "variant", "a", "b") if name in data},
        )


@dataclass(frozen=True)
class AbcQuery:
    period: Period
    rule: Rule
    abc: AbcClass | None = None
    segment: str | None = None
    vip: bool | None = None
    page: int = 1
    per_page: int = 50
    given: Mapping[str, Any] = field(default_factory=dict)  # what the request named (a form shows it back)
