"""Key performance indicators of the customer-facing processes (DESIGN.md section 4), for the KPI
dashboard and the staff API. docs/analysis.md holds the same definitions for people.

How a period counts. A duration is counted in the period (and the trend bucket) of the moment that ends
it — an arrival, a completion, a resolution — so a closed week's figures do not move as slow jobs of
that week finish later; counts of things received (complaints) go by their creation. Times are the
moments recorded: the job's creation (office) and the status events' `recorded_at` (the crew's device).

- **Response time**: job creation -> the first `on_site` status event of the job (any round). A device
  clock behind the office's can put an arrival before the creation: such a duration counts as 0.
- **Completion time**: creation -> the job's completion, for jobs whose standing outcome is `completed`
  (the last round's; a job returned to the field is complete when its last round completes).
- **Finished jobs**: jobs whose status is completed, cannot-complete or closed after one of those, with
  the field's outcome in the job's current round and that round not cancelled. Cancelled jobs and work in
  cancelled rounds never count. The outcome of a round holding both a completion and a cannot-complete is
  the one with the later stamp (as the merge decides).
- **First-time-fix rate**: finished jobs still in round 1 whose outcome is `completed` and whose round 1
  holds no `cannot_complete`, over all finished jobs; counted when the job finished.
- **Jobs per worker**: completed jobs (as for completion time) per assignee, with their first-time-fix
  rate and time on site (lifecycle.time_on_site_ms over the completing round); every active lineman is
  listed, with 0 when idle.
- **Readings**: effective readings (not superseded) read in the period, per route and per reader: done
  (a value), skipped (no value), out of range (the server's hi/lo check said low or high; also done),
  estimated (also done).
- **Complaints** (jobs of type `complaint`): received (created in the period); resolved (completed, or
  closed by the office whatever came before) with the resolution time creation -> completion or close;
  still open (received in the period and not finished now).

Durations are summarised by count, median and 90th percentile (linear interpolation between closest
ranks, as numpy's default and spreadsheets' PERCENTILE.INC): a few jobs that waited for days would make
a mean describe nobody. Periods and buckets: services/periods.py (UTC days).

Work stays bounded: job facts come from one aggregate query (one row per job touched in the period, a
few thousand rows for 10 000 jobs), readings are counted by the database, and only completed jobs'
status events of their last round are read for time on site. A report is kept per data version
(periods.cached_figures).
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, pre_load, validate, validates_schema
from sqlalchemy import Date, and_, case, func, or_, select, union

from sync_protocol import HLC
from sync_protocol.lifecycle import FINISHED, Status, time_on_site_ms

from ..extensions import db
from ..models import Job, JobEvent, MeterReading, Route, User
from .periods import (
    MAX_BUCKETS,
    MAX_DAYS,
    N_,
    Grouping,
    Period,
    Preset,
    bucket_count,
    bucket_label,
    bucket_start,
    buckets,
    cached_figures,
    preset_period,
    today_utc,
)
from .readinglist import OUT_OF_RANGE

COMPLAINT = "complaint"
ID_CHUNK = 2000  # ids per IN (...) list: well under SQLite's 32766 parameters
FINISHED_VALUES = tuple(status.value for status in FINISHED)
COMPLETED, CANNOT_COMPLETE, CLOSED = Status.COMPLETED.value, Status.CANNOT_COMPLETE.value, Status.CLOSED.value


# --- summaries -------------------------------------------------------------------------------------


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """The q-quantile (0 <= q <= 1) of sorted values, interpolating linearly between closest ranks."""
    if not ordered:
        return None
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Distribution:
    """Durations in seconds: how many, the median and the 90th percentile."""

    count: int = 0
    median: float | None = None
    p90: float | None = None

    @classmethod
    def of(cls, values: Iterable[float]) -> Distribution:
        ordered = sorted(values)
        return cls(len(ordered), percentile(ordered, 0.5), percentile(ordered, 0.9))


@dataclass(frozen=True)
class Rate:
    part: int = 0
    whole: int = 0

    @property
    def value(self) -> float | None:
        return self.part / self.whole if self.whole else None


# --- job facts: one aggregate row per job ---------------------------------------------------------------


@dataclass(frozen=True)
class JobFacts:
    id: str
    job_type: str
    priority: int
    assigned_to: str | None
    status: str
    round: int
    created_at: dt.datetime
    arrived_at: dt.datetime | None  # first on-site mark, any round
    finished_at: dt.datetime | None  # the standing outcome's time, when the job is finished
    outcome: str | None  # completed | cannot_complete, when finished
    first_time_fix: bool
    resolved_at: dt.datetime | None  # complaints (and any job): completion, or the office's close

    @property
    def response_s(self) -> float | None:
        return None if self.arrived_at is None else _seconds(self.created_at, self.arrived_at)

    @property
    def completion_s(self) -> float | None:
        if self.outcome != Status.COMPLETED.value or self.finished_at is None:
            return None
        return _seconds(self.created_at, self.finished_at)

    @property
    def resolution_s(self) -> float | None:
        return None if self.resolved_at is None else _seconds(self.created_at, self.resolved_at)


def _seconds(start: dt.datetime, end: dt.datetime) -> float:
    return max(0.0, (end - start).total_seconds())


def _later(first: str | None, second: str | None) -> bool:
    """Whether stamp `first` is later than `second` (missing stamps lose)."""
    if first is None:
        return False
    if second is None:
        return True
    return HLC.parse(first) > HLC.parse(second)


def facts_of(row: Any) -> JobFacts:
    """A job's facts from its aggregate row (see job_facts)."""
    status, round_ = row.status, row.round
    cancelled_here = row.cancelled_round is not None and row.cancelled_round >= round_
    outcome = None
    if not cancelled_here:
        if status in (COMPLETED, CANNOT_COMPLETE):
            outcome = status
        elif status == CLOSED and (row.completed_hlc or row.cannot_hlc):
            outcome = COMPLETED if _later(row.completed_hlc, row.cannot_hlc) else CANNOT_COMPLETE
    finished_at = row.completed_at if outcome == COMPLETED else row.cannot_at if outcome == CANNOT_COMPLETE else None
    if finished_at is None:
        outcome = None
    # a complaint (any job) is resolved by its completion, or else by the office's close
    resolved_at = finished_at if outcome == COMPLETED else row.closed_at if status == CLOSED else None
    return JobFacts(
        id=row.id,
        job_type=row.job_type,
        priority=row.priority,
        assigned_to=row.assigned_to,
        status=status,
        round=round_,
        created_at=row.created_at,
        arrived_at=row.arrived_at,
        finished_at=finished_at,
        outcome=outcome,
        first_time_fix=outcome == COMPLETED and round_ == 1 and row.cannot_at is None,
        resolved_at=resolved_at,
    )


def job_facts(period: Period) -> list[JobFacts]:
    """Facts of every job created in the period or with a status event recorded in it: one query,
    grouped by job, whose aggregates pick the moments the KPIs need from the job's status events."""
    event = JobEvent
    in_round = event.round == Job.round

    def moment(condition: Any) -> Any:
        return case((condition, event.recorded_at))

    def stamp(condition: Any) -> Any:
        return case((condition, event.hlc))

    # the jobs created in the period or touched in it, as one id list: the database then looks up those
    # jobs (a few thousand) by key instead of testing `created OR touched` on every job (100k)
    created = select(Job.id).where(Job.created_at >= period.start_at, Job.created_at < period.end_at)
    touched = select(event.job_id).where(
        event.kind == "status", event.recorded_at >= period.start_at, event.recorded_at < period.end_at
    )
    columns = (Job.id, Job.job_type, Job.priority, Job.assigned_to, Job.status, Job.round, Job.created_at)
    statement = (
        select(
            *columns,
            func.min(moment(event.status == Status.ON_SITE.value)).label("arrived_at"),
            func.max(moment(and_(event.status == Status.COMPLETED.value, in_round))).label("completed_at"),
            func.max(stamp(and_(event.status == Status.COMPLETED.value, in_round))).label("completed_hlc"),
            func.max(moment(and_(event.status == Status.CANNOT_COMPLETE.value, in_round))).label("cannot_at"),
            func.max(stamp(and_(event.status == Status.CANNOT_COMPLETE.value, in_round))).label("cannot_hlc"),
            func.max(case((event.status == Status.CANCELLED.value, event.round))).label("cancelled_round"),
            func.max(moment(event.status == Status.CLOSED.value)).label("closed_at"),
        )
        .join(event, and_(event.job_id == Job.id, event.kind == "status"))
        .where(Job.id.in_(union(created, touched)))
        .group_by(*columns)
        .order_by(Job.id)  # the order the whole-table scan gave
    )
    # the Core connection: rows without the ORM's result machinery per row
    return [facts_of(row) for row in db.session.connection().execute(statement)]


def _chunks(items: Sequence[str], size: int = ID_CHUNK) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def time_on_site_s(job_ids: Sequence[str]) -> dict[str, float]:
    """{job id: seconds on site in the job's current round} (lifecycle.time_on_site_ms)."""
    marks: dict[str, list[tuple[Status, int]]] = defaultdict(list)
    kinds = [Status.ON_SITE.value, Status.ON_HOLD.value, Status.COMPLETED.value, Status.CANNOT_COMPLETE.value]
    for chunk in _chunks(list(job_ids)):
        statement = (
            select(JobEvent.job_id, JobEvent.status, JobEvent.recorded_at)
            .join(Job, Job.id == JobEvent.job_id)
            .where(
                JobEvent.job_id.in_(chunk),
                JobEvent.kind == "status",
                JobEvent.round == Job.round,
                JobEvent.status.in_(kinds),
            )
        )
        for job_id, status, recorded_at in db.session.connection().execute(statement):  # Core: plain rows
            marks[job_id].append((Status(status), int(recorded_at.timestamp() * 1000)))
    result = {}
    for job_id, job_marks in marks.items():
        ms = time_on_site_ms(job_marks)
        if ms is not None:
            result[job_id] = ms / 1000
    return result


# --- readings, counted by the database --------------------------------------------------------------


@dataclass(frozen=True)
class ReadingCounts:
    key: str | None  # route id, reader id, or None (no route / unknown reader)
    label: str
    done: int = 0
    skipped: int = 0
    out_of_range: int = 0
    estimated: int = 0

    @property
    def total(self) -> int:
        return self.done + self.skipped

    @property
    def in_range(self) -> int:
        """Done and not out of range (the stacked chart's first part)."""
        return self.done - self.out_of_range

    @property
    def skip_rate(self) -> float | None:
        return self.skipped / self.total if self.total else None

    @property
    def out_of_range_rate(self) -> float | None:
        return self.out_of_range / self.done if self.done else None


def _reading_counts(period: Period, key: Any) -> dict[Any, tuple[int, int, int, int]]:
    reading = MeterReading
    statement = (
        select(
            key,
            func.sum(case((reading.value.is_not(None), 1), else_=0)),
            func.sum(case((reading.value.is_(None), 1), else_=0)),
            func.sum(case((reading.check_result.in_(OUT_OF_RANGE), 1), else_=0)),
            func.sum(case((and_(reading.reading_type == "estimated", reading.value.is_not(None)), 1), else_=0)),
        )
        .where(
            reading.superseded_by.is_(None),
            reading.read_at >= period.start_at,
            reading.read_at < period.end_at,
        )
        .group_by(key)
    )
    return {
        row[0]: (int(row[1] or 0), int(row[2] or 0), int(row[3] or 0), int(row[4] or 0))
        for row in db.session.execute(statement)
    }


def readings_by_route(period: Period) -> list[ReadingCounts]:
    """Every route (in code order), then readings without a route, if any."""
    counts = _reading_counts(period, MeterReading.route_id)
    routes = db.session.execute(select(Route.id, Route.code, Route.name).order_by(Route.code)).all()
    result = [ReadingCounts(rid, f"{code} {name}", *counts.pop(rid, (0, 0, 0, 0))) for rid, code, name in routes]
    for rid, values in sorted(counts.items(), key=lambda item: str(item[0])):
        result.append(ReadingCounts(rid, str(rid or ""), *values))
    return result


def readings_by_reader(period: Period) -> list[ReadingCounts]:
    """Every active meter reader and anyone else who read in the period, by name; unknown readers last."""
    counts = _reading_counts(period, MeterReading.reader_id)
    people = db.session.execute(
        select(User.id, User.display_name).where(
            or_(and_(User.role == "meter_reader", User.active.is_(True)), User.id.in_([k for k in counts if k]))
        )
    ).all()
    result = sorted(
        (ReadingCounts(uid, name, *counts.pop(uid, (0, 0, 0, 0))) for uid, name in people),
        key=lambda r: (r.label.casefold(), r.key or ""),
    )
    for uid, values in counts.items():  # only readings without a reader (or of a deleted user) remain
        result.append(ReadingCounts(uid, "", *values))
    return result


def readings_by_day(period: Period) -> dict[dt.date, tuple[int, int, int, int]]:
    """{UTC day: (done, skipped, out of range, estimated)}, counted by the database."""
    day = func.date(MeterReading.read_at, type_=Date)
    counts = _reading_counts(period, day)
    return {
        (value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))): c for value, c in counts.items()
    }


# --- the report ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerKpi:
    user_id: str
    name: str
    completed: int
    first_time_fix: Rate
    time_on_site: Distribution


@dataclass(frozen=True)
class ComplaintKpi:
    received: int
    resolved: int
    still_open: int
    resolution: Distribution


@dataclass(frozen=True)
class TrendPoint:
    start: dt.date
    label: str
    response: Distribution
    completed: int
    first_time_fix: Rate
    complaints_received: int
    complaints_resolved: int
    readings_done: int
    readings_skipped: int
    readings_out_of_range: int


@dataclass(frozen=True)
class KpiReport:
    period: Period
    grouping: Grouping
    response: Distribution
    completion: Distribution
    first_time_fix: Rate
    awaiting_arrival: int  # created in the period, not yet on site, not finished
    response_by_priority: list[tuple[int, Distribution]]
    workers: list[WorkerKpi]
    complaints: ComplaintKpi
    routes: list[ReadingCounts]
    readers: list[ReadingCounts]
    readings: ReadingCounts  # all of them
    trend: list[TrendPoint] = field(default_factory=list)


def build_report(period: Period, grouping: Grouping) -> KpiReport:
    """Every KPI over the period, with the trend in buckets of `grouping`. Kept per data version
    (periods.cached_figures): the first load after a sync or an office change computes it again."""
    return cached_figures(("kpis", period, grouping), lambda: _build_report(period, grouping))


def _build_report(period: Period, grouping: Grouping) -> KpiReport:
    facts = job_facts(period)
    within = period.contains
    arrived = [f for f in facts if within(f.arrived_at)]
    finished = [f for f in facts if f.outcome and within(f.finished_at)]
    completed = [f for f in finished if f.outcome == Status.COMPLETED.value]
    created = [f for f in facts if within(f.created_at)]

    by_priority: dict[int, list[float]] = defaultdict(list)
    for f in arrived:
        by_priority[f.priority].append(f.response_s or 0.0)

    complaints = [f for f in facts if f.job_type == COMPLAINT]
    resolved = [f for f in complaints if within(f.resolved_at)]
    received = [f for f in complaints if within(f.created_at)]

    routes, readers = readings_by_route(period), readings_by_reader(period)
    days = readings_by_day(period)

    return KpiReport(
        period=period,
        grouping=grouping,
        response=Distribution.of(f.response_s or 0.0 for f in arrived),
        completion=Distribution.of(f.completion_s or 0.0 for f in completed),
        first_time_fix=Rate(sum(1 for f in finished if f.first_time_fix), len(finished)),
        awaiting_arrival=sum(1 for f in created if f.arrived_at is None and f.status not in FINISHED_VALUES),
        response_by_priority=[(p, Distribution.of(values)) for p, values in sorted(by_priority.items())],
        workers=_workers(completed, finished),
        complaints=ComplaintKpi(
            received=len(received),
            resolved=len(resolved),
            still_open=sum(1 for f in received if f.status not in FINISHED_VALUES),
            resolution=Distribution.of(f.resolution_s or 0.0 for f in resolved),
        ),
        routes=routes,
        readers=readers,
        readings=ReadingCounts(
            None,
            "",
            *(sum(values[i] for values in days.values()) for i in range(4)),
        ),
        trend=_trend(period, grouping, arrived, finished, received, resolved, days),
    )


def _workers(completed: Sequence[JobFacts], finished: Sequence[JobFacts]) -> list[WorkerKpi]:
    on_site = time_on_site_s([f.id for f in completed])
    credited = {f.assigned_to for f in finished if f.assigned_to}
    people = db.session.execute(
        select(User.id, User.display_name).where(
            or_(and_(User.role == "lineman", User.active.is_(True)), User.id.in_(sorted(credited)))
        )
    ).all()
    result = []
    for user_id, name in people:
        mine = [f for f in completed if f.assigned_to == user_id]
        done = [f for f in finished if f.assigned_to == user_id]
        result.append(
            WorkerKpi(
                user_id=user_id,
                name=name,
                completed=len(mine),
                first_time_fix=Rate(sum(1 for f in done if f.first_time_fix), len(done)),
                time_on_site=Distribution.of(on_site[f.id] for f in mine if f.id in on_site),
            )
        )
    result.sort(key=lambda w: (-w.completed, w.name.casefold(), w.user_id))
    return result


def _trend(
    period: Period,
    grouping: Grouping,
    arrived: Sequence[JobFacts],
    finished: Sequence[JobFacts],
    received: Sequence[JobFacts],
    resolved: Sequence[JobFacts],
    days: Mapping[dt.date, tuple[int, int, int, int]],
) -> list[TrendPoint]:
    def bucket(moment: dt.datetime | None) -> dt.date:
        assert moment is not None
        return bucket_start(moment.astimezone(dt.UTC).date(), grouping)

    responses: dict[dt.date, list[float]] = defaultdict(list)
    for f in arrived:
        responses[bucket(f.arrived_at)].append(f.response_s or 0.0)
    finished_in: dict[dt.date, list[JobFacts]] = defaultdict(list)
    for f in finished:
        finished_in[bucket(f.finished_at)].append(f)
    received_in: dict[dt.date, int] = defaultdict(int)
    for f in received:
        received_in[bucket(f.created_at)] += 1
    resolved_in: dict[dt.date, int] = defaultdict(int)
    for f in resolved:
        resolved_in[bucket(f.resolved_at)] += 1
    readings_in: dict[dt.date, list[int]] = defaultdict(lambda: [0, 0, 0])
    for day, (done, skipped, out, _estimated) in days.items():
        totals = readings_in[bucket_start(day, grouping)]
        totals[0] += done
        totals[1] += skipped
        totals[2] += out

    points = []
    for start in buckets(period, grouping):
        jobs = finished_in.get(start, [])
        done, skipped, out = readings_in.get(start, [0, 0, 0])
        points.append(
            TrendPoint(
                start=start,
                label=bucket_label(start, grouping),
                response=Distribution.of(responses.get(start, [])),
                completed=sum(1 for f in jobs if f.outcome == Status.COMPLETED.value),
                first_time_fix=Rate(sum(1 for f in jobs if f.first_time_fix), len(jobs)),
                complaints_received=received_in.get(start, 0),
                complaints_resolved=resolved_in.get(start, 0),
                readings_done=done,
                readings_skipped=skipped,
                readings_out_of_range=out,
            )
        )
    return points


# --- request parameters (the page and the staff API) ----------------------------------------------


def default_grouping(period: Period) -> Grouping:
    if period.days <= 31:
        return Grouping.DAY
    if period.days <= 190:
        return Grouping.WEEK
    return Grouping.MONTH


class KpiQuerySchema(Schema):
    """The period (a preset, or `custom` with start and end) and the trend's grouping. Empty values mean
    "not given". Without a preset, given dates make a custom range; without either, the last 30 days."""

    class Meta:
        unknown = EXCLUDE

    preset = fields.String(
        validate=validate.OneOf([p.value for p in Preset if p is not Preset.LAST_12_MONTHS]),
        metadata={"description": "7d, 30d, quarter (this calendar quarter so far), last_quarter, or custom"},
    )
    start = fields.Date(metadata={"description": "custom: first day (UTC)"})
    end = fields.Date(metadata={"description": "custom: last day (UTC), included"})
    group = fields.String(
        validate=validate.OneOf([g.value for g in Grouping]),
        metadata={"description": "Trend buckets: day, week (ISO) or month; default by the period's length"},
    )

    @pre_load
    def _drop_empty(self, data: Mapping[str, Any], **kwargs: Any) -> dict[str, Any]:
        return {key: value for key, value in data.items() if value not in ("", None)}

    @validates_schema
    def _consistent(self, data: Mapping[str, Any], **kwargs: Any) -> None:
        preset = data.get("preset") or (Preset.CUSTOM if data.get("start") or data.get("end") else None)
        if preset != Preset.CUSTOM:
            return
        start, end = data.get("start"), data.get("end")
        if start is None:
            raise ValidationError(N_("Give the first day of the range."), "start")
        if end is None:
            raise ValidationError(N_("Give the last day of the range."), "end")
        if start > end:
            raise ValidationError(N_("The end is before the start."), "end")
        if (end - start).days + 1 > MAX_DAYS:
            raise ValidationError(N_("The period is too long."), "start")
        if data.get("group") and bucket_count(Period(start, end), Grouping(data["group"])) > MAX_BUCKETS:
            raise ValidationError(N_("Too many points: choose a coarser grouping."), "group")

    @post_load
    def _make(self, data: dict[str, Any], **kwargs: Any) -> KpiQuery:
        dates = data.get("start") or data.get("end")
        preset = Preset(data.get("preset") or (Preset.CUSTOM if dates else Preset.LAST_30_DAYS))
        custom = preset is Preset.CUSTOM
        period = Period(data["start"], data["end"]) if custom else preset_period(preset, today_utc())
        grouping = Grouping(data["group"]) if data.get("group") else default_grouping(period)
        if bucket_count(period, grouping) > MAX_BUCKETS:
            raise ValidationError(N_("Too many points: choose a coarser grouping."), "group")
        return KpiQuery(preset, period, grouping, grouping_given="group" in data)


@dataclass(frozen=True)
class KpiQuery:
    preset: Preset
    period: Period
    grouping: Grouping
    grouping_given: bool = False
