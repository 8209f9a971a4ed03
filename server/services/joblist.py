"""Jobs and conflicts as the service centre sees them: the filtered lists, a job's full record, and the
rows of their CSV exports. The pages, the CSV exports and the staff API all build their queries here, so
a list on a page, in a spreadsheet and in the API always agree.

- Filters come from the query string through one marshmallow schema per list (`JobQuerySchema`,
  `ConflictQuerySchema`): the staff API refuses a bad value (422), a page ignores it and says so.
- A list query joins customers (search, segment, VIP); what a page shows beside each job (customer,
  premise, assignee, last field activity) is loaded for the whole page in one query per table, never
  per row. The CSV export is a single joined query streamed in chunks.
- A job's timeline is every event of every round, field and office alike, in HLC order (the order the
  merge used), each with its device time (`recorded_at`) and the server's receive time (`received_at`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, pre_load, validate, validates_schema
from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.orm import aliased

from sync_protocol import HLC, codes, flatten_messages
from sync_protocol.hlc import HLCFormatError
from sync_protocol.lifecycle import Status, time_on_site_ms
from sync_protocol.merge import ConflictKind
from sync_protocol.schemas import Id

from ..extensions import db
from ..models import ConflictRecord, Customer, Device, Job, JobEvent, Premise, User
from .conflicts import REVIEW_NOTE_START, parse_review_note
from .periods import cached_figures
from .readinglist import MAX_PAGE, contains_text

PER_PAGE = 50
STATUSES: tuple[str, ...] = tuple(s.value for s in Status)
SEGMENTS: tuple[str, ...] = tuple(codes.CUSTOMER_SEGMENTS)
CONFLICT_KINDS: tuple[str, ...] = tuple(k.value for k in ConflictKind)
UNASSIGNED = "none"  # the assignee filter's value for jobs nobody holds
SORTS = {
    "-created": lambda: (Job.created_at.desc(), Job.id.desc()),
    "created": lambda: (Job.created_at.asc(), Job.id.asc()),
    "priority": lambda: (Job.priority.asc(), Job.created_at.desc(), Job.id.desc()),  # most urgent first
    "-priority": lambda: (Job.priority.desc(), Job.created_at.desc(), Job.id.desc()),
}
CONFLICT_STATES = ("open", "reviewed", "all")


# --- query parameters (pages, CSV and API) --------------------------------------------------------


class QuerySchema(Schema):
    """Query-string parameters: empty values mean "not given" (an HTML form sends them); lists may be
    repeated (`status=new&status=assigned`) or comma-separated; a page and its size."""

    class Meta:
        unknown = RAISE

    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=MAX_PAGE))
    per_page = fields.Integer(load_default=PER_PAGE, validate=validate.Range(min=1, max=200))

    @pre_load
    def _drop_empty(self, data: Mapping[str, Any], **kwargs: Any) -> dict[str, Any]:
        cleaned: dict[str, Any] = {}
        for key, value in data.items():
            if isinstance(value, list):
                value = [item for item in value if item not in ("", None)]
                if value:
                    cleaned[key] = value
            elif value not in ("", None):
                cleaned[key] = value
        return cleaned


class JobQuerySchema(QuerySchema):
    q = fields.String(
        validate=validate.Length(max=200),
        metadata={"description": "Search: job number, summary, customer name or account number"},
    )
    status = fields.List(fields.String(validate=validate.OneOf(STATUSES)), metadata={"description": "Any of"})
    assignee = fields.String(
        validate=validate.Length(max=64),
        metadata={"description": f'Assigned to this field user (user id); "{UNASSIGNED}" for nobody'},
    )
    customer = fields.String(
        validate=validate.Length(max=64), metadata={"description": "The customer's account number or id"}
    )
    priority = fields.List(
        fields.Integer(validate=validate.OneOf(list(codes.PRIORITIES))), metadata={"description": "Any of (1-4)"}
    )
    created_from = fields.Date(metadata={"description": "Created on or after this day (UTC)"})
    created_to = fields.Date(metadata={"description": "Created on or before this day (UTC)"})
    segment = fields.String(validate=validate.OneOf(SEGMENTS), metadata={"description": "Customer value segment"})
    vip = fields.Boolean(load_default=False, metadata={"description": "VIP customers only"})
    sort = fields.String(load_default="-created", validate=validate.OneOf(list(SORTS)))

    @validates_schema
    def _date_order(self, data: Mapping[str, Any], **kwargs: Any) -> None:
        if data.get("created_from") and data.get("created_to") and data["created_from"] > data["created_to"]:
            raise ValidationError("The end date is before the start date.", "created_to")

    @post_load
    def _make(self, data: dict[str, Any], **kwargs: Any) -> JobFilter:
        return JobFilter.of(data)


class ConflictQuerySchema(QuerySchema):
    state = fields.String(
        load_default="open",
        validate=validate.OneOf(CONFLICT_STATES),
        metadata={"description": "open (not reviewed yet), reviewed, or all"},
    )
    kind = fields.String(validate=validate.OneOf(CONFLICT_KINDS))
    user = Id(metadata={"description": "Conflicts about this field user's changes (user id)"})
    job = Id(metadata={"description": "Conflicts about this job (job id)"})

    @post_load
    def _make(self, data: dict[str, Any], **kwargs: Any) -> ConflictFilter:
        return ConflictFilter(**data)


@dataclass(frozen=True)
class JobFilter:
    page: int = 1
    per_page: int = PER_PAGE
    q: str = ""
    status: tuple[str, ...] = ()
    assignee: str | None = None
    customer: str | None = None
    priority: tuple[int, ...] = ()
    created_from: dt.date | None = None
    created_to: dt.date | None = None
    segment: str | None = None
    vip: bool = False
    sort: str = "-created"

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> JobFilter:
        values = dict(data)
        for name in ("status", "priority"):
            if name in values:
                values[name] = tuple(dict.fromkeys(values[name]))
        values["q"] = (values.get("q") or "").strip()
        return cls(**values)


@dataclass(frozen=True)
class ConflictFilter:
    page: int = 1
    per_page: int = PER_PAGE
    state: str = "open"
    kind: str | None = None
    user: str | None = None
    job: str | None = None


def query_data(args: Any, schema: Schema) -> dict[str, Any]:
    """A request's query string (a MultiDict) as the schema's input: list fields get every value
    (comma-separated ones split), other fields their first."""
    data: dict[str, Any] = {}
    for name in args:
        values = args.getlist(name)
        if isinstance(schema.fields.get(name), fields.List):
            data[name] = [part.strip() for value in values for part in str(value).split(",")]
        else:
            data[name] = values[0]
    return data


def load_query(schema: Schema, args: Any, *, strict: bool, ignore: Iterable[str] = ()) -> tuple[Any, dict]:
    """(filter, errors). Strict: a bad value raises ValidationError (the API answers 422). Lenient (a
    page): bad values and the names in `ignore` are dropped, the rest still filters, errors are returned
    so the page can show them next to their fields."""
    data = query_data(args, schema)
    for name in ignore:
        data.pop(name, None)
    if strict:
        return schema.load(data), {}
    data = {name: value for name, value in data.items() if name in schema.fields}
    try:
        return schema.load(data), {}
    except ValidationError as exc:
        errors: dict[str, list[str]] = {}
        for path, messages in flatten_messages(exc.messages).items():
            errors.setdefault(path.split(".")[0], []).extend(messages)
        kept = {name: value for name, value in data.items() if name not in errors}
        try:
            return schema.load(kept), errors
        except ValidationError:  # a rule across fields still fails: start from the defaults
            return schema.load({}), errors


# --- the job list -----------------------------------------------------------------------------------


def _day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), dt.UTC)


def job_conditions(f: JobFilter) -> list[ColumnElement[bool]]:
    """The filter as SQL conditions on Job and Customer (every list query joins the customer)."""
    where: list[ColumnElement[bool]] = []
    if f.q:
        text = f.q
        where.append(
            or_(
                contains_text(Job.number, text),
                contains_text(Job.summary, text),
                contains_text(Customer.name, text),
                Customer.account_no.startswith(text, autoescape=True),
            )
        )
    if f.status:
        where.append(Job.status.in_(f.status))
    if f.assignee == UNASSIGNED:
        where.append(Job.assigned_to.is_(None))
    elif f.assignee:
        where.append(Job.assigned_to == f.assignee)
    if f.customer:
        where.append(or_(Customer.account_no == f.customer, Customer.id == f.customer))
    if f.priority:
        where.append(Job.priority.in_(f.priority))
    if f.created_from:
        where.append(Job.created_at >= _day_start(f.created_from))
    if f.created_to:
        where.append(Job.created_at < _day_start(f.created_to + dt.timedelta(days=1)))
    if f.segment:
        where.append(Customer.segment == f.segment)
    if f.vip:
        where.append(Customer.vip.is_(True))
    return where


def job_select(f: JobFilter) -> Select:
    """The filtered, sorted jobs (for a page: `rows_for` adds what is shown beside each)."""
    return (
        select(Job).join(Customer, Customer.id == Job.customer_id).where(*job_conditions(f)).order_by(*SORTS[f.sort]())
    )


def job_count(f: JobFilter) -> int:
    """How many jobs match `f` (any page). A text search cannot use an index (a substring of four
    columns), so the count scans every job: kept per data version (periods.cached_figures)."""
    everything = replace(f, page=1, per_page=PER_PAGE, sort="-created")

    def count() -> int:
        statement = (
            select(func.count())
            .select_from(Job)
            .join(Customer, Customer.id == Job.customer_id)
            .where(*job_conditions(everything))
        )
        return int(db.session.execute(statement).scalar_one())

    return cached_figures(("job_count", everything), count)


def job_export_select(f: JobFilter) -> Select:
    """The same jobs, as the columns a CSV row shows (no ORM objects): one query, streamed."""
    return (
        select(
            Job.number,
            Job.created_at,
            Job.status,
            Job.round,
            Job.priority,
            Job.job_type,
            Job.summary,
            Customer.account_no,
            Customer.name.label("customer_name"),
            Customer.segment,
            Customer.vip,
            Premise.address,
            User.username,
            User.display_name,
            Job.scheduled_start,
            Job.scheduled_end,
            Job.resolution_code,
            Job.resolution_note,
        )
        .join(Customer, Customer.id == Job.customer_id)
        .join(Premise, Premise.id == Job.premise_id)
        .outerjoin(User, User.id == Job.assigned_to)
        .where(*job_conditions(f))
        .order_by(*SORTS[f.sort]())
    )


@dataclass(frozen=True)
class JobRow:
    job: Job
    customer: Customer
    premise: Premise | None
    assignee: User | None
    last_field_at: dt.datetime | None  # when the server last received a field event for the job


def _by_id(model: Any, ids: Iterable[Any]) -> dict[Any, Any]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return {obj.id: obj for obj in db.session.execute(select(model).where(model.id.in_(wanted))).scalars()}


def rows_for(jobs: Sequence[Job]) -> list[JobRow]:
    """What a list shows beside each job, loaded for all of them at once (one query per table)."""
    customers = _by_id(Customer, (j.customer_id for j in jobs))
    premises = _by_id(Premise, (j.premise_id for j in jobs))
    users = _by_id(User, (j.assigned_to for j in jobs))
    last: dict[str, dt.datetime] = {}
    if jobs:
        last = dict(
            db.session.execute(
                select(JobEvent.job_id, func.max(JobEvent.received_at))
                .where(JobEvent.job_id.in_([j.id for j in jobs]), JobEvent.source == "field")
                .group_by(JobEvent.job_id)
            ).all()
        )
    return [
        JobRow(j, customers[j.customer_id], premises.get(j.premise_id), users.get(j.assigned_to), last.get(j.id))
        for j in jobs
    ]


def field_users() -> list[User]:
    """Active field users (who may be assigned work), by role then name."""
    return list(
        db.session.execute(
            select(User)
            .where(User.role.in_(User.FIELD_ROLES), User.active.is_(True))
            .order_by(User.role, User.display_name)
        ).scalars()
    )


# --- one job ----------------------------------------------------------------------------------------


def hlc_time(stamp: str | None) -> dt.datetime | None:
    """The physical time of an HLC stamp (None for a missing or malformed one)."""
    try:
        return dt.datetime.fromtimestamp(HLC.parse(stamp).wall_ms / 1000, dt.UTC) if stamp else None
    except HLCFormatError:
        return None


def hlc_node(stamp: str | None) -> str:
    try:
        return HLC.parse(stamp).node if stamp else ""
    except HLCFormatError:
        return ""


def _ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True)
class TimelineEntry:
    event: JobEvent
    author: User | None
    device: Device | None


@dataclass(frozen=True)
class JobDetail:
    job: Job
    customer: Customer
    premise: Premise | None
    assignee: User | None
    timeline: list[TimelineEntry]
    time_on_site_ms: int | None  # of the current round
    conflicts: list[ConflictRow]

    @property
    def notes(self) -> list[TimelineEntry]:
        return [entry for entry in self.timeline if entry.event.kind == "note"]

    @property
    def materials(self) -> list[TimelineEntry]:
        return [entry for entry in self.timeline if entry.event.kind == "material"]


def job_detail(job_id: str) -> JobDetail | None:
    job = db.session.get(Job, job_id)
    if job is None:
        return None
    events = list(
        db.session.execute(
            select(JobEvent).where(JobEvent.job_id == job.id).order_by(JobEvent.hlc, JobEvent.id)
        ).scalars()
    )
    users = _by_id(User, [job.assigned_to, *(e.author_id for e in events)])
    devices = _by_id(Device, (e.device_id for e in events))
    timeline = [TimelineEntry(e, users.get(e.author_id), devices.get(e.device_id)) for e in events]
    marks = [
        (Status(e.status), _ms(e.recorded_at))
        for e in events
        if e.kind == "status" and e.round == job.round and e.status in STATUSES
    ]
    conflicts = conflict_rows(
        db.session.execute(
            select(ConflictRecord)
            .where(ConflictRecord.entity == "job", ConflictRecord.entity_id == job.id)
            .order_by(ConflictRecord.created_at.desc(), ConflictRecord.id.desc())
        ).scalars()
    )
    return JobDetail(
        job,
        db.session.get(Customer, job.customer_id),
        db.session.get(Premise, job.premise_id),
        users.get(job.assigned_to),
        timeline,
        time_on_site_ms(marks),
        conflicts,
    )


# --- conflicts --------------------------------------------------------------------------------------


def conflict_select(f: ConflictFilter) -> Select:
    where: list[ColumnElement[bool]] = []
    if f.state == "open":
        where.append(ConflictRecord.resolved_at.is_(None))
    elif f.state == "reviewed":
        where.append(ConflictRecord.resolved_at.is_not(None))
    if f.kind:
        where.append(ConflictRecord.kind == f.kind)
    if f.user:
        where.append(ConflictRecord.user_id == f.user)
    if f.job:
        where.append(ConflictRecord.entity == "job")
        where.append(ConflictRecord.entity_id == f.job)
    return select(ConflictRecord).where(*where).order_by(ConflictRecord.created_at.desc(), ConflictRecord.id.desc())


def conflict_export_select(f: ConflictFilter) -> Select:
    """The same conflicts, joined with what a CSV row names: (conflict, job number, user, device, reviewer)."""
    owner, reviewer = aliased(User), aliased(User)
    return (
        conflict_select(f)
        .add_columns(Job.number, owner.username, Device.name, reviewer.username)
        .outerjoin(Job, and_(ConflictRecord.entity == "job", Job.id == ConflictRecord.entity_id))
        .outerjoin(owner, owner.id == ConflictRecord.user_id)
        .outerjoin(Device, Device.id == ConflictRecord.device_id)
        .outerjoin(reviewer, reviewer.id == ConflictRecord.resolved_by)
    )


@dataclass(frozen=True)
class ConflictRow:
    conflict: ConflictRecord
    job: Job | None
    user: User | None  # whose change lost or was flagged
    device: Device | None
    reviewer: User | None
    review_note: str | None

    @property
    def winner_at(self) -> dt.datetime | None:
        return hlc_time(self.conflict.winner_hlc)

    @property
    def loser_at(self) -> dt.datetime | None:
        return hlc_time(self.conflict.loser_hlc)


def conflict_rows(conflicts: Iterable[ConflictRecord]) -> list[ConflictRow]:
    """What a list shows beside each conflict, loaded for all of them at once."""
    records = list(conflicts)
    job_ids = {c.entity_id for c in records if c.entity == "job"}
    jobs = _by_id(Job, job_ids)
    users = _by_id(User, [*(c.user_id for c in records), *(c.resolved_by for c in records)])
    devices = _by_id(Device, (c.device_id for c in records))
    notes: dict[int, str] = {}
    reviewed_jobs = {c.entity_id for c in records if c.entity == "job" and c.resolved_at is not None}
    if reviewed_jobs:
        texts = db.session.execute(
            select(JobEvent.text).where(
                JobEvent.job_id.in_(reviewed_jobs),
                JobEvent.kind == "note",
                JobEvent.source == "office",
                JobEvent.text.startswith(REVIEW_NOTE_START, autoescape=True),
            )
        ).scalars()
        for text in texts:
            parsed = parse_review_note(text)
            if parsed is not None:
                notes[parsed[0]] = parsed[1]
    return [
        ConflictRow(
            c,
            jobs.get(c.entity_id) if c.entity == "job" else None,
            users.get(c.user_id),
            devices.get(c.device_id),
            users.get(c.resolved_by),
            notes.get(c.id),
        )
        for c in records
    ]
