"""Customers as the service centre sees them: the searchable list and one customer's page (premises and
meters, consumption history, jobs and complaints). Pages, staff API and CSV export share these queries.

Definitions:
- Consumption history: per calendar month (UTC) of the last N, the sum of the `consumption` of the
  customer's *effective* readings (not superseded) dated in that month. A reading's consumption covers the
  days since the previous read and is attributed to the month it was read in, as a bill is; estimates
  count (they are billed) and are counted separately; a negative consumption (an estimate corrected by an
  actual read) reduces its month. Months without readings are present with zero readings.
- A job is *open* until it is finished (sync_protocol.lifecycle.FINISHED: completed, cannot complete,
  closed, cancelled).
- A complaint (job type `complaint`) is *resolved* when its status is completed or closed; its resolution
  time runs from its creation to the first completed/closed status of its current round (a complaint
  returned to the field for correction is resolved by the round that stands).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from marshmallow import fields, post_load, validate
from sqlalchemy import ColumnElement, Select, func, or_, select

from sync_protocol import codes
from sync_protocol.lifecycle import FINISHED, Status

from ..extensions import db
from ..models import Customer, Job, JobEvent, Meter, MeterReading, Premise
from . import analysis
from .periods import Grouping, Period, add_months, bucket_start, buckets, today_utc
from .readinglist import PER_PAGE, Page, QuerySchema, contains_text

HISTORY_MONTHS = 12
JOBS_SHOWN = 100
FINISHED_STATUSES = tuple(sorted(status.value for status in FINISHED))
RESOLVED_STATUSES = (Status.COMPLETED.value, Status.CLOSED.value)


# --- the list ----------------------------------------------------------------------------------------


class CustomerQuerySchema(QuerySchema):
    q = fields.String(
        validate=validate.Length(max=100), metadata={"description": "Part of the name, account number or phone"}
    )
    segment = fields.String(validate=validate.OneOf(list(codes.CUSTOMER_SEGMENTS)))
    vip = fields.Boolean(metadata={"description": "true: VIP customers only; false: the others"})

    @post_load
    def _make(self, data: dict[str, Any], **kwargs: Any) -> CustomerFilter:
        return CustomerFilter(**data)


@dataclass(frozen=True)
class CustomerFilter:
    q: str | None = None
    segment: str | None = None
    vip: bool | None = None
    page: int = 1
    per_page: int = PER_PAGE


def _digits_of(column: Any) -> Any:
    """The column with the separators people type in phone numbers removed (in SQL, on both backends)."""
    for separator in (" ", "-", "+", "(", ")", "."):
        column = func.replace(column, separator, "")
    return column


def _conditions(f: CustomerFilter) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    text = (f.q or "").strip()
    if text:
        matches = [
            contains_text(Customer.name, text),
            Customer.account_no.startswith(text, autoescape=True),
        ]
        digits = re.sub(r"\D", "", text)
        if len(digits) >= 3 and re.fullmatch(r"[\d\s()+.\-]+", text):
            matches.append(_digits_of(Customer.phone).contains(digits, autoescape=True))
        where.append(or_(*matches))
    if f.segment:
        where.append(Customer.segment == f.segment)
    if f.vip is not None:
        where.append(Customer.vip.is_(f.vip))
    return where


def customer_rows(f: CustomerFilter) -> Select:
    """The matching customers by name, each with its first address, premises count and open jobs (scalar
    subqueries: evaluated for the rows of the page only, through the customer_id indexes)."""
    address = (
        select(func.min(Premise.address)).where(Premise.customer_id == Customer.id).scalar_subquery().label("address")
    )
    premises = select(func.count()).where(Premise.customer_id == Customer.id).scalar_subquery().label("premises")
    open_jobs = (
        select(func.count())
        .where(Job.customer_id == Customer.id, Job.status.not_in(FINISHED_STATUSES))
        .scalar_subquery()
        .label("open_jobs")
    )
    return (
        select(Customer, address, premises, open_jobs)
        .where(*_conditions(f))
        .order_by(Customer.name, Customer.account_no)
    )


def customer_page(f: CustomerFilter) -> Page:
    """A page of `customer_rows(f)` and how many customers match. The page's customers are chosen first
    (name order, from customers alone), so the per-row subqueries run for those rows only: SQLite would
    otherwise evaluate them for every match before sorting (thousands for a common surname)."""
    total = db.session.execute(select(func.count()).select_from(Customer).where(*_conditions(f))).scalar_one()
    ids = select(Customer.id).where(*_conditions(f)).order_by(Customer.name, Customer.account_no)
    ids = ids.limit(f.per_page).offset((f.page - 1) * f.per_page)
    rows = db.session.execute(customer_rows(CustomerFilter()).where(Customer.id.in_(ids.subquery().select())))
    return Page(rows.all(), f.page, f.per_page, total)


# --- one customer --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MonthTotal:
    month: dt.date  # first day of the month
    consumption: float
    readings: int
    estimated: int


@dataclass(frozen=True)
class PremiseView:
    premise: Premise
    meters: list[Meter]


@dataclass(frozen=True)
class JobRow:
    job: Job
    resolved_at: dt.datetime | None = None

    @property
    def resolution_hours(self) -> float | None:
        if self.resolved_at is None:
            return None
        return max((self.resolved_at - self.job.created_at).total_seconds(), 0.0) / 3600


@dataclass(frozen=True)
class ComplaintSummary:
    total: int
    open: int
    resolved: int
    mean_hours: float | None
    longest_hours: float | None


@dataclass(frozen=True)
class CustomerDetail:
    customer: Customer
    premises: list[PremiseView]
    consumption: list[MonthTotal]
    jobs: list[JobRow]
    jobs_total: int
    complaints: list[JobRow]
    complaint_summary: ComplaintSummary
    value: analysis.CustomerRow | None = None  # ABC class, rank, volume over `value_period`
    value_period: Period | None = None

    @property
    def value_class(self) -> str | None:
        return None if self.value is None else self.value.abc.value


def history_period(months: int = HISTORY_MONTHS, today: dt.date | None = None) -> Period:
    """The current calendar month (to today) and the `months - 1` whole months before it."""
    today = today or today_utc()
    return Period(add_months(bucket_start(today, Grouping.MONTH), -(months - 1)), today)


def consumption_history(
    customer_id: str, months: int = HISTORY_MONTHS, today: dt.date | None = None
) -> list[MonthTotal]:
    """Monthly totals of the customer's effective consumption, oldest month first, the current month last."""
    period = history_period(months, today)
    statement = (
        select(MeterReading.read_at, MeterReading.consumption, MeterReading.reading_type)
        .join(Meter, Meter.id == MeterReading.meter_id)
        .join(Premise, Premise.id == Meter.premise_id)
        .where(
            Premise.customer_id == customer_id,
            MeterReading.superseded_by.is_(None),
            MeterReading.consumption.is_not(None),
            MeterReading.read_at >= period.start_at,
            MeterReading.read_at < period.end_at,
        )
    )
    totals: dict[dt.date, list[float]] = {month: [0.0, 0, 0] for month in buckets(period, Grouping.MONTH)}
    for read_at, used, reading_type in db.session.execute(statement):
        bucket = totals[bucket_start(read_at.date(), Grouping.MONTH)]
        bucket[0] += used
        bucket[1] += 1
        bucket[2] += reading_type == "estimated"
    return [MonthTotal(month, round(total, 3), int(n), int(est)) for month, (total, n, est) in totals.items()]


def _resolved_at(customer_id: str) -> dict[str, dt.datetime]:
    """{job id: first completed/closed status of its current round} for the customer's finished jobs."""
    statement = (
        select(JobEvent.job_id, func.min(JobEvent.recorded_at))
        .join(Job, Job.id == JobEvent.job_id)
        .where(
            Job.customer_id == customer_id,
            Job.status.in_(RESOLVED_STATUSES),
            JobEvent.kind == "status",
            JobEvent.status.in_(RESOLVED_STATUSES),
            JobEvent.round == Job.round,
        )
        .group_by(JobEvent.job_id)
    )
    return {job_id: at for job_id, at in db.session.execute(statement)}


def summarise_complaints(complaints: list[JobRow]) -> ComplaintSummary:
    hours = [row.resolution_hours for row in complaints if row.resolution_hours is not None]
    return ComplaintSummary(
        total=len(complaints),
        open=sum(row.job.status not in FINISHED_STATUSES for row in complaints),
        resolved=len(hours),
        mean_hours=sum(hours) / len(hours) if hours else None,
        longest_hours=max(hours) if hours else None,
    )


def customer_detail(customer_id: str, today: dt.date | None = None) -> CustomerDetail | None:
    """Everything the customer page shows, in a fixed number of queries (none per premise or job)."""
    customer = db.session.get(Customer, customer_id)
    if customer is None:
        return None
    premises = list(
        db.session.execute(
            select(Premise).where(Premise.customer_id == customer_id).order_by(Premise.address)
        ).scalars()
    )
    meters: dict[str, list[Meter]] = {premise.id: [] for premise in premises}
    if premises:
        statement = select(Meter).where(Meter.premise_id.in_(list(meters))).order_by(Meter.number)
        for meter in db.session.execute(statement).scalars():
            meters[meter.premise_id].append(meter)
    jobs_total = db.session.execute(
        select(func.count()).select_from(Job).where(Job.customer_id == customer_id)
    ).scalar_one()
    resolved = _resolved_at(customer_id)
    jobs = [
        JobRow(job, resolved.get(job.id))
        for job in db.session.execute(
            select(Job)
            .where(Job.customer_id == customer_id)
            .order_by(Job.created_at.desc(), Job.id.desc())
            .limit(JOBS_SHOWN)
        ).scalars()
    ]
    complaints = [
        JobRow(job, resolved.get(job.id))
        for job in db.session.execute(
            select(Job)
            .where(Job.customer_id == customer_id, Job.job_type == "complaint")
            .order_by(Job.created_at.desc(), Job.id.desc())
        ).scalars()
    ]
    return CustomerDetail(
        customer=customer,
        premises=[PremiseView(premise, meters[premise.id]) for premise in premises],
        consumption=consumption_history(customer_id, today=today),
        jobs=jobs,
        jobs_total=jobs_total,
        complaints=complaints,
        complaint_summary=summarise_complaints(complaints),
        value=value_class(customer_id),
        value_period=analysis.default_period(),
    )


def value_class(customer_id: str) -> analysis.CustomerRow | None:
    """The customer's ABC class, rank and volume from the value analysis (its default period and rule)."""
    return analysis.customer_class(customer_id)
