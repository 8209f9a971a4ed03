"""Reporting periods and their grouping, shared by the KPI dashboard and the value analysis.

A period is a range of whole UTC days, both ends included: `Period(date(2025, 1, 1), date(2025, 1, 31))`
is January. Queries use the half-open instant range [start_at, end_at) (midnight UTC of the first day to
midnight UTC after the last), so a fact stamped exactly at midnight belongs to one day only.

Presets are relative to "today" (UTC): `7d` and `30d` are the last 7 and 30 days including today,
`quarter` is the current calendar quarter to date, `last_quarter` the previous calendar quarter, `12m`
the last twelve months (the same day a year ago excluded, today included).

Grouping buckets a period into days, ISO weeks (Monday to Sunday) or calendar months. The first and last
bucket may be partial; they are labelled by the bucket they belong to, not cut to the period.

Figures over a period (an ABC analysis, the KPIs, route progress, reading counts) aggregate up to a
million readings: `cached_figures` keeps them per app process, each valid for the `data_version()` it was
computed at, so a page shows new readings and jobs on the first load after they arrive.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from flask import current_app
from sqlalchemy import func, select

from ..extensions import db
from ..models import Customer, Job, MeterReading, User
from .changefeed import head

T = TypeVar("T")

MAX_DAYS = 3700  # ten years: a bound on what a request may ask the database to scan
MAX_BUCKETS = 400  # more points than a chart can show: choose a coarser grouping


class Grouping(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


class Preset(StrEnum):
    LAST_7_DAYS = "7d"
    LAST_30_DAYS = "30d"
    QUARTER = "quarter"
    LAST_QUARTER = "last_quarter"
    LAST_12_MONTHS = "12m"
    CUSTOM = "custom"


@dataclass(frozen=True)
class Period:
    start: dt.date  # first day, included
    end: dt.date  # last day, included

    def __post_init__(self) -> None:
        if self.start > self.end:
            raise ValueError("a period ends on or after its start")

    @property
    def start_at(self) -> dt.datetime:
        return midnight(self.start)

    @property
    def end_at(self) -> dt.datetime:
        """Midnight UTC after the last day: the exclusive end."""
        return midnight(self.end + dt.timedelta(days=1))

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def contains(self, instant: dt.datetime | None) -> bool:
        return instant is not None and self.start_at <= instant < self.end_at


def N_(message: str) -> str:  # noqa: N802 - gettext's conventional name
    """Marks a message for extraction (pybabel knows N_) without translating it here: services have no
    language; the page translates the message when it shows it, the API sends it as is."""
    return message


def midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), dt.UTC)


def today_utc() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def add_months(day: dt.date, months: int) -> dt.date:
    """The same day `months` later (or earlier), clamped to the month's last day (31 Jan + 1 = 28/29 Feb)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    first_next = dt.date(year + (month + 1) // 12, (month + 1) % 12 + 1, 1)
    last_day = (first_next - dt.timedelta(days=1)).day
    return dt.date(year, month + 1, min(day.day, last_day))


def quarter_start(day: dt.date) -> dt.date:
    return dt.date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)


def last_months(today: dt.date, months: int = 12) -> Period:
    """The last `months` months up to and including today."""
    return Period(add_months(today, -months) + dt.timedelta(days=1), today)


def preset_period(preset: Preset | str, today: dt.date | None = None) -> Period:
    """The period a preset names, relative to `today` (UTC). `custom` has no period of its own."""
    today = today or today_utc()
    preset = Preset(preset)
    if preset is Preset.LAST_7_DAYS:
        return Period(today - dt.timedelta(days=6), today)
    if preset is Preset.LAST_30_DAYS:
        return Period(today - dt.timedelta(days=29), today)
    if preset is Preset.QUARTER:
        return Period(quarter_start(today), today)
    if preset is Preset.LAST_QUARTER:
        this = quarter_start(today)
        return Period(add_months(this, -3), this - dt.timedelta(days=1))
    if preset is Preset.LAST_12_MONTHS:
        return last_months(today, 12)
    raise ValueError("a custom period needs its start and end")


def bucket_start(day: dt.date, grouping: Grouping) -> dt.date:
    """The first day of the bucket `day` falls in."""
    if grouping is Grouping.DAY:
        return day
    if grouping is Grouping.WEEK:
        return day - dt.timedelta(days=day.weekday())
    return day.replace(day=1)


def next_bucket(start: dt.date, grouping: Grouping) -> dt.date:
    if grouping is Grouping.DAY:
        return start + dt.timedelta(days=1)
    if grouping is Grouping.WEEK:
        return start + dt.timedelta(days=7)
    return add_months(start, 1)


def buckets(period: Period, grouping: Grouping) -> Iterator[dt.date]:
    """The start of every bucket that overlaps the period, in order (empty buckets included)."""
    current = bucket_start(period.start, grouping)
    while current <= period.end:
        yield current
        current = next_bucket(current, grouping)


def bucket_count(period: Period, grouping: Grouping) -> int:
    if grouping is Grouping.DAY:
        return period.days
    if grouping is Grouping.WEEK:
        return (bucket_start(period.end, grouping) - bucket_start(period.start, grouping)).days // 7 + 1
    return (period.end.year - period.start.year) * 12 + period.end.month - period.start.month + 1


def bucket_label(start: dt.date, grouping: Grouping) -> str:
    """A short, language-neutral label: 2025-03-14, 2025-W11 (ISO week), 2025-03."""
    if grouping is Grouping.DAY:
        return start.isoformat()
    if grouping is Grouping.WEEK:
        year, week, _ = start.isocalendar()
        return f"{year}-W{week:02d}"
    return start.strftime("%Y-%m")


# --- figures over the big tables, cached per data version -------------------------------------------

FIGURES_KEY = "fieldsync.figures"
FIGURES_ENTRIES = 16  # least recently used dropped first
# kinds of figures (a key's first item) that are large: an ABC analysis of 100k customers holds ~50 MB,
# so a worker keeps two (the customer pages' default period and the period being analysed)
FIGURES_KIND_ENTRIES = {"abc": 2}
# Customers and routes are reference data loaded from outside, not through this server: an edit made
# there in place (no new row) is not in the data version, and shows once an entry is this old.
FIGURES_MAX_AGE_S = 600.0


def data_version() -> tuple[Any, ...]:
    """A stamp that changes whenever the data behind the period figures does, cheaply (index lookups and
    counts of small tables): the change log's head (every push, office edit and merge commits a row, in
    commit order), the newest reading received and job created (rows loaded without the change log, e.g.
    a bulk import), and counts of customers and active users (imports, an admin deactivating a user)."""
    def scalar(statement: Any) -> Any:
        return statement.scalar_subquery()

    stamp = db.session.execute(
        select(
            scalar(select(func.max(MeterReading.received_at))),
            scalar(select(func.max(Job.created_at))),
            scalar(select(func.count()).select_from(Customer)),
            scalar(select(func.count()).select_from(User).where(User.active.is_(True))),
        )
    ).one()
    return (head(), *stamp)


@dataclass
class _Figures:
    version: tuple[Any, ...]
    made: float
    value: Any


class FigureCache:
    """Computed figures by key, each valid for the data version it was computed at. Per process (each
    worker fills its own); thread-safe; a miss computes outside the lock (two threads may both compute)."""

    def __init__(
        self,
        entries: int = FIGURES_ENTRIES,
        max_age_s: float = FIGURES_MAX_AGE_S,
        kind_entries: Mapping[str, int] = FIGURES_KIND_ENTRIES,
    ) -> None:
        self.entries, self.max_age_s, self.kind_entries = entries, max_age_s, kind_entries
        self._items: OrderedDict[Hashable, _Figures] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        # the stamp is read before the figures, in the same transaction: a change committed in between
        # makes the entry older than its stamp says, so the next request computes again (never the reverse)
        version = data_version()
        now = time.monotonic()
        with self._lock:
            entry = self._items.get(key)
            if entry is not None and entry.version == version and now - entry.made < self.max_age_s:
                self._items.move_to_end(key)
                return entry.value
        value = compute()
        with self._lock:
            self._items[key] = _Figures(version, now, value)
            self._items.move_to_end(key)
            kind = _kind(key)
            limit = self.kind_entries.get(kind) if kind is not None else None
            if limit is not None:
                same = [other for other in self._items if _kind(other) == kind]  # oldest first
                for other in same[: max(0, len(same) - limit)]:
                    del self._items[other]
            while len(self._items) > self.entries:
                self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def _kind(key: Hashable) -> str | None:
    return key[0] if isinstance(key, tuple) and key and isinstance(key[0], str) else None


def cached_figures(key: Hashable, compute: Callable[[], T]) -> T:
    """`compute()`, or its result from this app's cache if the data has not changed since (data_version).
    `key` names the figures and every argument they depend on."""
    cache = current_app.extensions.get(FIGURES_KEY)
    if cache is None:
        cache = current_app.extensions.setdefault(FIGURES_KEY, FigureCache())
    return cache.get(key, compute)
