"""Readings as the service centre sees them: the filtered list with its exception flags, and each route's
progress through its current cycle. The pages, the staff API and the CSV exports all build their queries
here, so a number on a page, in the API and in a spreadsheet always agree.

Definitions (DESIGN.md section 4):
- An *effective* reading is one no correction superseded (`superseded_by` is empty).
- A reading is an *exception* when any row of EXCEPTION_KINDS holds for it. Each kind is one SQL condition,
  used both to filter ("exceptions only", one kind) and to flag the rows a query returns: the list can
  never show a flag its filter disagrees with.
- Route progress counts *meters*, not readings: a meter of the route is *read* when it has an effective
  reading with a value dated on or after the route's cycle start (midnight UTC), *skipped* when its only
  effective readings this cycle are skips, and *remaining* otherwise. A correction replaces the reading
  it supersedes, and a skip followed by a real read counts once, as read. A meter belongs to the route it
  is on now (meters.route_id); the readings list's route filter is the route a reading was taken on
  (meter_readings.route_id). The two differ only for a meter moved between routes mid-cycle.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, pre_load, validate, validates_schema
from sqlalchemy import ColumnElement, Select, and_, case, func, or_, select

from sync_protocol import codes
from sync_protocol.schemas import Id

from ..extensions import db
from ..models import Customer, Meter, MeterReading, Premise, Route, User
from .periods import cached_figures

PER_PAGE = 50
MAX_PER_PAGE = 200
# Far beyond any real list, and small enough that (page - 1) * per_page fits the databases' 64-bit offsets.
MAX_PAGE = 1_000_000_000
OUT_OF_RANGE = ("high", "low")
ESTIMATED_STREAK = 2  # a meter estimated this many times in a row is reported


# --- exceptions: one table, read by the filter and by the flags -----------------------------------


@dataclass(frozen=True)
class ExceptionKind:
    code: str
    condition: Callable[[], ColumnElement[bool]]


EXCEPTION_KINDS: tuple[ExceptionKind, ...] = (
    ExceptionKind("out_of_range", lambda: MeterReading.check_result.in_(OUT_OF_RANGE)),
    ExceptionKind("skipped", lambda: MeterReading.skip_code.is_not(None)),
    ExceptionKind("estimated", lambda: MeterReading.reading_type == "estimated"),
    ExceptionKind("rollover", lambda: MeterReading.rollover.is_(True)),
    ExceptionKind("trouble", lambda: MeterReading.trouble_code.is_not(None)),
    ExceptionKind("superseded", lambda: MeterReading.superseded_by.is_not(None)),
)
EXCEPTION_CODES: tuple[str, ...] = tuple(kind.code for kind in EXCEPTION_KINDS)
_KIND = {kind.code: kind for kind in EXCEPTION_KINDS}


def any_exception() -> ColumnElement[bool]:
    return or_(*(kind.condition() for kind in EXCEPTION_KINDS))


def exceptions_of(row: Any) -> list[str]:
    """The exception codes flagged on a row of `reading_rows` (in EXCEPTION_KINDS order)."""
    return [code for code in EXCEPTION_CODES if getattr(row, f"x_{code}")]


# --- query parameters (pages and API) ---------------------------------------------------------


class QuerySchema(Schema):
    """Query-string parameters: empty values mean "not given" (an HTML form sends them), and a page."""

    class Meta:
        unknown = RAISE

    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=MAX_PAGE))
    per_page = fields.Integer(load_default=PER_PAGE, validate=validate.Range(min=1, max=MAX_PER_PAGE))

    @pre_load
    def _drop_empty(self, data: Mapping[str, Any], **kwargs: Any) -> dict[str, Any]:
        return {key: value for key, value in data.items() if value not in ("", None)}


class ReadingQuerySchema(QuerySchema):
    route_id = Id(metadata={"description": "Readings taken on this route"})
    reader_id = Id(metadata={"description": "Readings by this meter reader (user id)"})
    meter = fields.String(validate=validate.Length(max=40), metadata={"description": "Meter number, or its beginning"})
    date_from = fields.Date(metadata={"description": "Read on or after this day (UTC)"})
    date_to = fields.Date(metadata={"description": "Read on or before this day (UTC)"})
    reading_type = fields.String(validate=validate.OneOf(list(codes.READING_TYPES)))
    exceptions_only = fields.Boolean(load_default=False)
    exception = fields.String(
        validate=validate.OneOf(EXCEPTION_CODES), metadata={"description": "Only exceptions of this kind"}
    )
    current_only = fields.Boolean(load_default=False, metadata={"description": "Hide superseded readings"})

    @validates_schema
    def _date_order(self, data: Mapping[str, Any], **kwargs: Any) -> None:
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            raise ValidationError("The end date is before the start date.", "date_to")

    @post_load
    def _make(self, data: dict[str, Any], **kwargs: Any) -> ReadingFilter:
        return ReadingFilter(**data)


class RouteProgressQuerySchema(QuerySchema):
    reader_id = Id(metadata={"description": "Routes assigned to this meter reader (user id)"})

    @post_load
    def _make(self, data: dict[str, Any], **kwargs: Any) -> RouteFilter:
        return RouteFilter(**data)


@dataclass(frozen=True)
class ReadingFilter:
    route_id: str | None = None
    reader_id: str | None = None
    meter: str | None = None
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    reading_type: str | None = None
    exceptions_only: bool = False
    exception: str | None = None
    current_only: bool = False
    page: int = 1
    per_page: int = PER_PAGE


@dataclass(frozen=True)
class RouteFilter:
    reader_id: str | None = None
    page: int = 1
    per_page: int = PER_PAGE


# --- pages ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """One page of rows and the total they were taken from."""

    items: Sequence[Any]
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages

    @property
    def first(self) -> int:
        return 0 if not self.items else (self.page - 1) * self.per_page + 1

    @property
    def last(self) -> int:
        return (self.page - 1) * self.per_page + len(self.items)


def contains_text(column: Any, text: str) -> ColumnElement[bool]:
    """`column` contains `text`, case-insensitively, % and _ taken literally: the lists' text search.
    SQLite's LIKE already ignores case exactly as far as its lower() does (ASCII letters), so there the
    lower() on both sides is dropped: it doubles the cost of scanning 100k names."""
    if db.engine.dialect.name == "sqlite":
        return column.contains(text, autoescape=True)
    return column.icontains(text, autoescape=True)


def fetch_page(statement: Select, total: int, page: int, per_page: int) -> Page:
    """Rows `page` of `statement` (which must have a total order) with a total counted separately: the
    count query stays as small as the filters allow instead of counting the whole joined select."""
    rows = db.session.execute(statement.limit(per_page).offset((page - 1) * per_page)).all()
    return Page(rows, page, per_page, total)


# --- the readings list -------------------------------------------------------------------------


def _day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), dt.UTC)


def _conditions(f: ReadingFilter) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if f.route_id:
        where.append(MeterReading.route_id == f.route_id)
    if f.reader_id:
        where.append(MeterReading.reader_id == f.reader_id)
    if f.meter:
        # the meters first (a prefix of a few hundred), then their readings through (meter_id, read_at):
        # joined, SQLite walks every reading newest first looking for the meters
        meters = select(Meter.id).where(Meter.number.startswith(f.meter.strip(), autoescape=True))
        where.append(MeterReading.meter_id.in_(meters))
    if f.date_from:
        where.append(MeterReading.read_at >= _day_start(f.date_from))
    if f.date_to:
        where.append(MeterReading.read_at < _day_start(f.date_to + dt.timedelta(days=1)))
    if f.reading_type:
        where.append(MeterReading.reading_type == f.reading_type)
    if f.exception:
        where.append(_KIND[f.exception].condition())
    elif f.exceptions_only:
        where.append(any_exception())
    if f.current_only:
        where.append(MeterReading.superseded_by.is_(None))
    return where


READING_ORDER = (MeterReading.read_at.desc(), MeterReading.id.desc())  # newest first; the id breaks ties


def reading_rows(f: ReadingFilter) -> Select:
    """The filtered readings, newest first, each row with its meter, customer, route and reader and one
    `x_<kind>` flag per exception kind: one statement, no query per row."""
    return _with_context(select(MeterReading), f)


# what the CSV export needs of a reading: plain columns, no JSON to decode, no ORM object per row
EXPORT_COLUMNS = (
    "id", "read_at", "meter_id", "route_id", "reader_id", "reading_type", "value", "consumption", "check_result",
    "rollover", "skip_code", "trouble_code", "comment_code", "note", "supersedes", "superseded_by",
)  # fmt: skip


def reading_export_rows(f: ReadingFilter) -> Select:
    """`reading_rows` for the CSV export: the reading's EXPORT_COLUMNS instead of the mapped object."""
    return _with_context(select(*(getattr(MeterReading, name) for name in EXPORT_COLUMNS)), f)


def _with_context(statement: Select, f: ReadingFilter) -> Select:
    flags = [case((kind.condition(), True), else_=False).label(f"x_{kind.code}") for kind in EXCEPTION_KINDS]
    return (
        statement.add_columns(
            Meter.number.label("meter_number"),
            Customer.id.label("customer_id"),
            Customer.name.label("customer_name"),
            Customer.account_no.label("account_no"),
            Route.code.label("route_code"),
            User.display_name.label("reader_name"),
            *flags,
        )
        .select_from(MeterReading)
        .join(Meter, Meter.id == MeterReading.meter_id)
        .join(Premise, Premise.id == Meter.premise_id)
        .join(Customer, Customer.id == Premise.customer_id)
        .outerjoin(Route, Route.id == MeterReading.route_id)
        .outerjoin(User, User.id == MeterReading.reader_id)
        .where(*_conditions(f))
        .order_by(*READING_ORDER)
    )


def reading_summary(f: ReadingFilter) -> dict[str, int]:
    """{"total": readings matching `f`, "<kind>": how many of them are exceptions of that kind}. Counting
    walks every matching reading (a million without filters): kept per data version (cached_figures)."""
    unpaged = replace(f, page=1, per_page=PER_PAGE)
    return dict(cached_figures(("reading_summary", unpaged), lambda: _reading_summary(unpaged)))


def _reading_summary(f: ReadingFilter) -> dict[str, int]:
    counts = (func.coalesce(func.sum(case((k.condition(), 1), else_=0)), 0).label(k.code) for k in EXCEPTION_KINDS)
    statement = select(func.count().label("total"), *counts).select_from(MeterReading)
    row = db.session.execute(statement.where(*_conditions(f))).one()
    return {key: int(value) for key, value in row._mapping.items()}


def reading_page(f: ReadingFilter) -> tuple[Page, dict[str, int]]:
    """A page of `reading_rows(f)` and the summary of every matching reading. The page's ids are chosen
    from meter_readings alone, then joined: the database orders readings, not the whole five-table join,
    and an index on read_at can serve the order directly."""
    summary = reading_summary(f)
    ids = select(MeterReading.id).where(*_conditions(f)).order_by(*READING_ORDER)
    ids = ids.limit(f.per_page).offset((f.page - 1) * f.per_page)
    rows = db.session.execute(reading_rows(ReadingFilter()).where(MeterReading.id.in_(ids.subquery().select())))
    return Page(rows.all(), f.page, f.per_page, summary["total"]), summary


def reading_detail(reading_id: str) -> Any | None:
    """One reading as a row of `reading_rows`, or None."""
    return db.session.execute(reading_rows(ReadingFilter()).where(MeterReading.id == reading_id)).first()


def corrections_of(reading_id: str) -> list[MeterReading]:
    """Every reading sent as a correction of this one (the newest stamp is the one that stands)."""
    statement = select(MeterReading).where(MeterReading.supersedes == reading_id).order_by(MeterReading.hlc)
    return list(db.session.execute(statement).scalars())


# --- route progress ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RouteProgress:
    route_id: str
    code: str
    name: str
    reader_id: str | None
    reader_name: str | None
    cycle_start: dt.date | None
    cycle_end: dt.date | None
    meters: int
    read: int
    skipped: int
    out_of_range: int
    estimated: int  # meters whose reading this cycle is an estimate
    estimated_consecutive: int  # meters estimated ESTIMATED_STREAK or more cycles in a row

    @property
    def remaining(self) -> int:
        return self.meters - self.read - self.skipped

    @property
    def percent_done(self) -> float:
        return 0.0 if not self.meters else 100.0 * (self.read + self.skipped) / self.meters

    @property
    def percent_read(self) -> float:
        return 0.0 if not self.meters else 100.0 * self.read / self.meters

    @property
    def percent_skipped(self) -> float:
        return 0.0 if not self.meters else 100.0 * self.skipped / self.meters


def _flag(condition: ColumnElement[bool]) -> Any:
    return func.max(case((condition, 1), else_=0))


def route_progress_rows(f: RouteFilter) -> Select:
    """Per route (by code): reader, cycle, and the meter counts of RouteProgress, in one statement."""
    per_meter = (
        select(
            Meter.route_id.label("route_id"),
            _flag(MeterReading.value.is_not(None)).label("has_value"),
            _flag(and_(MeterReading.value.is_not(None), MeterReading.check_result.in_(OUT_OF_RANGE))).label("oor"),
            _flag(and_(MeterReading.value.is_not(None), MeterReading.reading_type == "estimated")).label("est"),
        )
        .join(Route, Route.id == Meter.route_id)
        .join(MeterReading, MeterReading.meter_id == Meter.id)
        .where(
            MeterReading.superseded_by.is_(None),
            MeterReading.read_at >= Route.cycle_start,
            # implied by the line above, but a bound the database can apply before any join (or through an
            # index on read_at): only the current cycles' readings are aggregated, not the whole history
            MeterReading.read_at >= select(func.min(Route.cycle_start)).scalar_subquery(),
        )
        .group_by(Meter.route_id, Meter.id)
        .subquery()
    )
    done = (
        select(
            per_meter.c.route_id,
            func.sum(per_meter.c.has_value).label("read"),
            func.sum(1 - per_meter.c.has_value).label("skipped"),  # effective readings, none with a value
            func.sum(per_meter.c.oor).label("out_of_range"),
            func.sum(per_meter.c.est).label("estimated"),
        )
        .group_by(per_meter.c.route_id)
        .subquery()
    )
    totals = (
        select(
            Meter.route_id.label("route_id"),
            func.count().label("meters"),
            func.sum(case((Meter.consecutive_estimates >= ESTIMATED_STREAK, 1), else_=0)).label("streaks"),
        )
        .where(Meter.route_id.is_not(None))
        .group_by(Meter.route_id)
        .subquery()
    )
    statement = (
        select(
            Route.id,
            Route.code,
            Route.name,
            Route.assigned_to,
            User.display_name,
            Route.cycle_start,
            Route.cycle_end,
            func.coalesce(totals.c.meters, 0).label("meters"),
            func.coalesce(done.c.read, 0).label("read"),
            func.coalesce(done.c.skipped, 0).label("skipped"),
            func.coalesce(done.c.out_of_range, 0).label("out_of_range"),
            func.coalesce(done.c.estimated, 0).label("estimated"),
            func.coalesce(totals.c.streaks, 0).label("estimated_consecutive"),
        )
        .outerjoin(User, User.id == Route.assigned_to)
        .outerjoin(totals, totals.c.route_id == Route.id)
        .outerjoin(done, done.c.route_id == Route.id)
        .order_by(Route.code)
    )
    if f.reader_id:
        statement = statement.where(Route.assigned_to == f.reader_id)
    return statement


PROGRESS_COUNTS = ("meters", "read", "skipped", "out_of_range", "estimated", "estimated_consecutive")


def as_progress(row: Sequence[Any]) -> RouteProgress:
    values = list(row)
    return RouteProgress(*values[:7], *(int(v) for v in values[7:]))


def route_progress_page(f: RouteFilter) -> tuple[Page, RouteProgress]:
    """A page of routes and the totals over every route the filter selects. Routes number in the hundreds,
    not the thousands: one aggregate query serves both (the counting is the cost, not the rows), and its
    result is kept per data version (cached_figures)."""
    everyone = replace(f, page=1, per_page=PER_PAGE)
    every: list[RouteProgress] = cached_figures(
        ("route_progress", everyone),
        lambda: [as_progress(row) for row in db.session.execute(route_progress_rows(everyone))],
    )
    sums = [sum(getattr(p, name) for p in every) for name in PROGRESS_COUNTS]
    total = RouteProgress("", "", "", None, None, None, None, *sums)
    start = (f.page - 1) * f.per_page
    return Page(every[start : start + f.per_page], f.page, f.per_page, len(every)), total


# --- choices for filters -------------------------------------------------------------------------


def route_choices() -> list[tuple[str, str, str]]:
    """(id, code, name) of every route, by code."""
    return [tuple(row) for row in db.session.execute(select(Route.id, Route.code, Route.name).order_by(Route.code))]


def reader_choices() -> list[tuple[str, str]]:
    """(id, display name) of meter readers, by name."""
    statement = select(User.id, User.display_name).where(User.role == "meter_reader").order_by(User.display_name)
    return [tuple(row) for row in db.session.execute(statement)]
