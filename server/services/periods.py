"""Reporting periods and their grouping, shared by the KPI dashboard and the value analysis.

A period is a range of whole UTC days, both ends included: `Period(date(2025, 1, 1), date(2025, 1, 31))`
is January. Queries use the half-open instant range [start_at, end_at) (midnight UTC of the first day to
midnight UTC after the last), so a fact stamped exactly at midnight belongs to one day only.

Presets are relative to "today" (UTC): `7d` and `30d` are the last 7 and 30 days including today,
`quarter` is the current calendar quarter to date, `last_quarter` the previous calendar quarter, `12m`
the last twelve months (the same day a year ago excluded, today included).

Grouping buckets a period into days, ISO weeks (Monday to Sunday) or calendar months. The first and last
bucket may be partial; they are labelled by the bucket they belong to, not cut to the period.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

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
