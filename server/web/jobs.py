"""Service-centre pages: the job list (search, filters, sort, CSV, live updates), a job's full record
with the office's actions, and the create-job form.

Every office action is a POST form (CSRF-checked by the blueprint) that runs one service of
`services/office.py` inside `write_transaction`, then flashes what happened and redirects to the job
(post/redirect/get). An action the job's status does not allow, or a bad form, changes nothing: the page
is shown again with the reason (409 when the job's status forbids it, 422 for a bad form).

Helpers for every page's templates, registered here:
- `value|code_label("status")`: the translated label of a status or code (tables in LABELS; the code
  lists of sync_protocol.codes are English msgids translated when shown); `moment|when` (UTC);
  `ms|duration`; `value|plain` (a conflict value as text).
- `url_with(name=value, ...)`: this page's URL with some query parameters changed (None removes one),
  filters kept; `fragment` and `format` are always dropped unless given.

Live updates (reusable by any list page): put the table (and its pager) in its own template, render it
inside a container `<div data-live-url="{{ url_with(fragment=1) }}">`, give each row
`data-live-key="<stable id>"`, load static/live.js, and in the view return only that template when
`live_fragment()` is true (see `jobs_list`). The script re-fetches the fragment every 10 s and swaps it in,
highlighting new rows; details in live.js.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from flask import abort, flash, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import or_, select

from sync_protocol import Actor, ProtocolError, Status, codes
from sync_protocol.lifecycle import allowed_next, next_round
from sync_protocol.schemas import MAX_NOTE_CHARS

from ..database import write_transaction
from ..extensions import db
from ..models import Customer, Job, Premise, User
from ..services import joblist, office
from ..services.jobstate import lock_job
from ..services.records import iso
from . import bp
from .access import staff_required
from .listing import csv_response, paginate, wants_csv

# --- labels: one helper for every status and code shown to people ----------------------------------

STATUS_LABELS = {
    "new": _l("New"),
    "assigned": _l("Assigned"),
    "en_route": _l("En route"),
    "on_site": _l("On site"),
    "on_hold": _l("On hold"),
    "completed": _l("Completed"),
    "cannot_complete": _l("Cannot complete"),
    "closed": _l("Closed"),
    "cancelled": _l("Cancelled"),
}
CONFLICT_KIND_LABELS = {
    "concurrent_edit": _l("Concurrent edit"),
    "work_after_cancel": _l("Field work after cancellation"),
}
EVENT_KIND_LABELS = {"status": _l("Status"), "note": _l("Note"), "material": _l("Material"), "accepted": _l("Accepted")}
SOURCE_LABELS = {"field": _l("Field"), "office": _l("Office")}
FLAG_LABELS = {
    "clock_skew": _l("Device clock off: time clamped"),
    "work_after_cancel": _l("Work after cancellation"),
}
SEGMENT_TAGS = {"safety": _l("Safety"), "social": _l("Social"), "profit": _l("Profit"), "standard": _l("Standard")}
ROLE_LABELS = {
    "lineman": _l("Lineman"),
    "meter_reader": _l("Meter reader"),
    "staff": _l("Staff"),
    "admin": _l("Administrator"),
}
JOB_FIELD_LABELS = {
    "status": _l("Status"),
    "resolution_code": _l("Resolution"),
    "cause": _l("Cause"),
    "resolution_note": _l("Resolution note"),
    "follow_up_needed": _l("Follow-up needed"),
    "contact_name": _l("Contact name"),
}
CONFLICT_STATE_LABELS = {"open": _l("Open"), "reviewed": _l("Reviewed"), "all": _l("All")}

LABELS: Mapping[str, Mapping[Any, Any]] = {
    "status": STATUS_LABELS,
    "conflict_kind": CONFLICT_KIND_LABELS,
    "conflict_state": CONFLICT_STATE_LABELS,
    "event_kind": EVENT_KIND_LABELS,
    "source": SOURCE_LABELS,
    "flag": FLAG_LABELS,
    "segment_tag": SEGMENT_TAGS,
    "role": ROLE_LABELS,
    "job_field": JOB_FIELD_LABELS,
    # sync_protocol's code lists: English msgids, translated when shown
    "job_type": codes.JOB_TYPES,
    "priority": codes.PRIORITIES,
    "segment": codes.CUSTOMER_SEGMENTS,
    "hazard": codes.HAZARD_CODES,
    "resolution": codes.RESOLUTION_CODES,
    "reading_type": codes.READING_TYPES,
    "skip": codes.SKIP_CODES,
    "trouble": codes.TROUBLE_CODES,
    "comment": codes.COMMENT_CODES,
}


@bp.app_template_filter("code_label")
def code_label(code: Any, table: str) -> str:
    """The label people see for `code` in `table` (translated); an unknown code is shown as it is."""
    if code is None or code == "":
        return ""
    labels = LABELS[table]
    if table == "priority" and isinstance(code, str) and code.isdigit():
        code = int(code)
    label = labels.get(code)
    if label is None:
        return str(code)
    return _(label) if isinstance(label, str) else str(label)


@bp.app_template_filter("when")
def when(moment: dt.datetime | None) -> str:
    """A moment as people read it, in UTC (the server's and the devices' common reference)."""
    if moment is None:
        return ""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S") + " UTC"


@bp.app_template_filter("duration")
def duration(ms: int | float | None) -> str:
    if ms is None:
        return ""
    sign = "-" if ms < 0 else ""
    seconds = round(abs(ms) / 1000)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours >= 48:
        return sign + _("%(days)d d %(hours)d h", days=hours // 24, hours=hours % 24)
    if hours:
        return sign + _("%(hours)d h %(minutes)02d min", hours=hours, minutes=minutes)
    if minutes:
        return sign + _("%(minutes)d min %(seconds)02d s", minutes=minutes, seconds=secs)
    return sign + _("%(seconds)d s", seconds=secs)


@bp.app_template_filter("plain")
def plain(value: Any, field: str | None = None) -> str:
    """A stored value (a conflict's winner or loser) as text; autoescaped like any other text."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return _("yes") if value else _("no")
    if field == "status":
        return code_label(value, "status")
    if field == "resolution_code":
        return code_label(value, "resolution")
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


@bp.app_template_global()
def url_with(**changes: Any) -> str:
    """This page's URL with the query parameters in `changes` replaced (None drops one)."""
    args = request.args.copy()
    for name in ("fragment", "format", *changes):
        args.poplist(name)
    for name, value in changes.items():
        if isinstance(value, list | tuple):
            args.setlist(name, [str(v) for v in value])
        elif value is not None:
            args[name] = str(value)
    query = urlencode(list(args.items(multi=True)))
    path = url_for(request.endpoint, **(request.view_args or {})) if request.endpoint else request.path
    return f"{path}?{query}" if query else path


def live_fragment() -> bool:
    """The request is live.js asking for the list's fragment only."""
    return request.args.get("fragment") == "1"


def fragment_response(template: str, **context: Any) -> Any:
    response = make_response(render_template(template, **context))
    response.headers["Cache-Control"] = "no-store"
    return response


# --- the list -----------------------------------------------------------------------------------------


@bp.get("/jobs")
@staff_required
def jobs_list() -> Any:
    f, errors = joblist.load_query(joblist.JobQuerySchema(), request.args, strict=False, ignore=("format", "fragment"))
    if wants_csv():
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M")
        return csv_response(f"jobs-{stamp}.csv", _csv_header(), joblist.job_export_select(f), _csv_row)
    page = paginate(joblist.job_select(f), per_page=f.per_page, total=lambda: joblist.job_count(f))
    context = {"filter": f, "errors": errors, "page": page, "rows": joblist.rows_for(page.items)}
    # Live updates: live.js asks for the same URL plus fragment=1 and gets only the table.
    if live_fragment():
        return fragment_response("jobs_table.html", **context)
    return render_template(
        "jobs_list.html",
        users=joblist.field_users(),
        statuses=joblist.STATUSES,
        segments=joblist.SEGMENTS,
        priorities=codes.PRIORITIES,
        unassigned=joblist.UNASSIGNED,
        **context,
    )


def _csv_header() -> list[str]:
    return [
        _("Job number"),
        _("Created (UTC)"),
        _("Status"),
        _("Round"),
        _("Priority"),
        _("Type"),
        _("Summary"),
        _("Account no."),
        _("Customer"),
        _("Segment"),
        _("VIP"),
        _("Address"),
        _("Assigned to"),
        _("Scheduled start (UTC)"),
        _("Scheduled end (UTC)"),
        _("Resolution"),
        _("Resolution note"),
    ]


def _csv_row(row: Any) -> list[Any]:
    return [
        row.number,
        iso(row.created_at),
        code_label(row.status, "status"),
        row.round,
        code_label(row.priority, "priority"),
        code_label(row.job_type, "job_type"),
        row.summary,
        row.account_no,
        row.customer_name,
        code_label(row.segment, "segment_tag"),
        _("yes") if row.vip else _("no"),
        row.address,
        f"{row.display_name} ({row.username})" if row.username else "",
        iso(row.scheduled_start),
        iso(row.scheduled_end),
        code_label(row.resolution_code, "resolution"),
        row.resolution_note,
    ]


# --- one job ------------------------------------------------------------------------------------------


def _offered(job: Job) -> dict[str, bool]:
    """The office's actions the job's status allows now (lifecycle.TRANSITIONS[OFFICE])."""
    current = Status(job.status)
    allowed = allowed_next(Actor.OFFICE, current)
    reopens = next_round(current, Status.ASSIGNED, job.round) > job.round
    return {
        "assign": Status.ASSIGNED in allowed and not reopens,
        "return": Status.ASSIGNED in allowed and reopens,
        "cancel": Status.CANCELLED in allowed,
        "close": Status.CLOSED in allowed,
        "edit": current not in (Status.CLOSED, Status.CANCELLED),
        "note": True,
    }


def _render_detail(job_id: str, *, error: str | None = None, action: str | None = None, status: int = 200) -> Any:
    detail = joblist.job_detail(job_id)
    if detail is None:
        abort(404)
    form = request.form if request.method == "POST" else {}
    page = render_template(
        "jobs_detail.html",
        d=detail,
        offered=_offered(detail.job),
        users=joblist.field_users(),
        error=error,
        failed_action=action,
        form=form,
        priorities=codes.PRIORITIES,
        max_note=MAX_NOTE_CHARS,
    )
    return page, status


@bp.get("/jobs/<job_id>")
@staff_required
def jobs_detail(job_id: str) -> Any:
    return _render_detail(job_id)


class Refused(Exception):
    """An office action the page refuses before (or instead of) calling a service: nothing changes."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _office_action(job_id: str, action: str, work: Callable[[Job], str]) -> Any:
    """Run `work` on the row-locked job in one write transaction; flash its message and redirect, or
    show the page again with the reason when it is refused (the transaction is rolled back)."""
    if db.session.get(Job, job_id) is None:
        abort(404)

    def unit() -> str:
        job = lock_job(job_id)
        if job is None:
            raise Refused(_("The job no longer exists."), 404)
        return work(job)

    try:
        message = write_transaction(unit)
    except Refused as exc:
        return _render_detail(job_id, error=exc.message, action=action, status=exc.status)
    except ProtocolError as exc:
        status = 409 if exc.code == "transition_not_allowed" else exc.status
        return _render_detail(job_id, error=_refusal(exc, job_id), action=action, status=status)
    flash(message)
    return redirect(url_for("web.jobs_detail", job_id=job_id))


def _refusal(exc: ProtocolError, job_id: str) -> str:
    if exc.code == "transition_not_allowed":
        job = db.session.get(Job, job_id)
        return _(
            "Not possible: the job is now %(status)s. The page shows its current state.",
            status=code_label(job.status if job else "", "status"),
        )
    if "assigned_to" in exc.fields:
        return _("Choose an active field user.")
    return _("Refused: %(reason)s", reason=exc.message)


def _require(offered: str, job: Job) -> None:
    if not _offered(job)[offered]:
        raise Refused(
            _(
                "Not possible: the job is now %(status)s. The page shows its current state.",
                status=code_label(job.status, "status"),
            ),
            409,
        )


def _text(name: str, *, required: bool, limit: int = MAX_NOTE_CHARS) -> str:
    value = (request.form.get(name) or "").strip()
    if required and not value:
        raise Refused(_("Please fill in this field."))
    if len(value) > limit:
        raise Refused(_("At most %(count)d characters.", count=limit))
    return value


def _field_user(name: str = "assigned_to") -> User:
    user = db.session.get(User, request.form.get(name) or "")
    if user is None or not user.active or not user.is_field:
        raise Refused(_("Choose an active field user."))
    return user


@bp.post("/jobs/<job_id>/assign")
@staff_required
def jobs_assign(job_id: str) -> Any:
    actor = current_user.id

    def work(job: Job) -> str:
        _require("assign", job)
        user = _field_user()
        if user.id == job.assigned_to:
            raise Refused(_("The job is already assigned to %(name)s.", name=user.display_name))
        reassigned = job.assigned_to is not None
        office.assign_job(job, user.id, actor_id=actor)
        if reassigned:
            return _("Job %(number)s reassigned to %(name)s.", number=job.number, name=user.display_name)
        return _("Job %(number)s assigned to %(name)s.", number=job.number, name=user.display_name)

    return _office_action(job_id, "assign", work)


@bp.post("/jobs/<job_id>/return")
@staff_required
def jobs_return(job_id: str) -> Any:
    actor = current_user.id

    def work(job: Job) -> str:
        _require("return", job)
        user = _field_user()
        note = _text("note", required=True)
        office.assign_job(job, user.id, actor_id=actor)
        office.add_note(job, note, actor)
        return _(
            "Job %(number)s returned to the field (round %(round)d), assigned to %(name)s.",
            number=job.number,
            round=job.round,
            name=user.display_name,
        )

    return _office_action(job_id, "return", work)


@bp.post("/jobs/<job_id>/cancel")
@staff_required
def jobs_cancel(job_id: str) -> Any:
    actor = current_user.id

    def work(job: Job) -> str:
        _require("cancel", job)
        reason = _text("reason", required=True)
        office.cancel_job(job, actor_id=actor, reason=reason)
        return _("Job %(number)s cancelled.", number=job.number)

    return _office_action(job_id, "cancel", work)


@bp.post("/jobs/<job_id>/close")
@staff_required
def jobs_close(job_id: str) -> Any:
    actor = current_user.id

    def work(job: Job) -> str:
        _require("close", job)
        office.close_job(job, actor_id=actor)
        return _("Job %(number)s closed.", number=job.number)

    return _office_action(job_id, "close", work)


@bp.post("/jobs/<job_id>/note")
@staff_required
def jobs_note(job_id: str) -> Any:
    actor = current_user.id

    def work(job: Job) -> str:
        office.add_note(job, _text("text", required=True), actor)
        return _("Note added to job %(number)s.", number=job.number)

    return _office_action(job_id, "note", work)


@bp.post("/jobs/<job_id>/edit")
@staff_required
def jobs_edit(job_id: str) -> Any:
    actor = current_user.id

    def work(job: Job) -> str:
        _require("edit", job)
        values, errors = _job_fields(request.form, editing=True)
        if errors:
            raise Refused("; ".join(f"{_field_name(name)}: {message}" for name, message in errors.items()))
        changed = {name: value for name, value in values.items() if getattr(job, name) != value}
        if not changed:
            raise Refused(_("Nothing changed."))
        office.edit_job(job, changed, actor_id=actor)
        return _("Job %(number)s updated.", number=job.number)

    return _office_action(job_id, "edit", work)


# --- create -------------------------------------------------------------------------------------------

FIELD_NAMES = {
    "customer_id": _l("Customer"),
    "premise_id": _l("Premise"),
    "job_type": _l("Type"),
    "priority": _l("Priority"),
    "summary": _l("Summary"),
    "scheduled_start": _l("Scheduled start"),
    "scheduled_end": _l("Scheduled end"),
    "assigned_to": _l("Assign to"),
}


def _field_name(name: str) -> str:
    return str(FIELD_NAMES.get(name, name))


def _moment(text: str) -> dt.datetime:
    """A datetime-local input's value, read as UTC."""
    value = dt.datetime.fromisoformat(text)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _job_fields(form: Mapping[str, str], *, editing: bool = False) -> tuple[dict[str, Any], dict[str, str]]:
    """The office-owned fields of a job form, validated: (values, {field: message})."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    if not editing:
        job_type = form.get("job_type", "")
        if job_type in codes.JOB_TYPES:
            values["job_type"] = job_type
        else:
            errors["job_type"] = _("Choose a type.")
    priority = form.get("priority", "")
    if priority.isdigit() and int(priority) in codes.PRIORITIES:
        values["priority"] = int(priority)
    else:
        errors["priority"] = _("Choose a priority.")
    summary = (form.get("summary") or "").strip()
    if not summary:
        errors["summary"] = _("Describe the work.")
    elif len(summary) > MAX_NOTE_CHARS:
        errors["summary"] = _("At most %(count)d characters.", count=MAX_NOTE_CHARS)
    else:
        values["summary"] = summary
    for name in ("scheduled_start", "scheduled_end"):
        text = (form.get(name) or "").strip()
        values[name] = None
        if text:
            try:
                values[name] = _moment(text)
            except ValueError:
                errors[name] = _("Not a date and time.")
    start, end = values.get("scheduled_start"), values.get("scheduled_end")
    if start and end and end < start and "scheduled_end" not in errors:
        errors["scheduled_end"] = _("The end is before the start.")
    values["requires_signature"] = form.get("requires_signature") in ("1", "on", "true")
    return values, errors


def _customer_search(text: str) -> list[Customer]:
    return list(
        db.session.execute(
            select(Customer)
            .where(
                or_(
                    Customer.account_no.startswith(text, autoescape=True),
                    Customer.name.icontains(text, autoescape=True),
                )
            )
            .order_by(Customer.account_no)
            .limit(20)
        ).scalars()
    )


def _premises(customer_id: str) -> list[Premise]:
    return list(
        db.session.execute(
            select(Premise).where(Premise.customer_id == customer_id).order_by(Premise.address, Premise.id)
        ).scalars()
    )


@bp.route("/jobs/new", methods=["GET", "POST"])
@staff_required
def jobs_new() -> Any:
    """Step 1: find the customer (account number or name); step 2: the job form for that customer."""
    source = request.form if request.method == "POST" else request.args
    query = (request.args.get("q") or "").strip()[:200]
    customer = db.session.get(Customer, source.get("customer_id") or "") if source.get("customer_id") else None
    matches: list[Customer] = []
    if customer is None and query:
        matches = _customer_search(query)
        exact = [c for c in matches if c.account_no == query]
        if len(exact) == 1 or len(matches) == 1:
            customer = exact[0] if exact else matches[0]
    errors: dict[str, str] = {}
    if request.method == "POST":
        values, errors = _job_fields(request.form)
        if customer is None:
            errors["customer_id"] = _("Choose a customer.")
        else:
            values["customer_id"] = customer.id
            premise = db.session.get(Premise, request.form.get("premise_id") or "")
            if premise is None or premise.customer_id != customer.id:
                errors["premise_id"] = _("Choose one of this customer's premises.")
            else:
                values["premise_id"] = premise.id
        assignee = request.form.get("assigned_to") or None
        if assignee:
            user = db.session.get(User, assignee)
            if user is None or not user.active or not user.is_field:
                errors["assigned_to"] = _("Choose an active field user.")
        if not errors:
            actor = current_user.id
            job_id = write_transaction(
                lambda: office.create_job(**values, assigned_to=assignee, actor_id=actor).id  # type: ignore[arg-type]
            )
            job = db.session.get(Job, job_id)
            flash(_("Job %(number)s created.", number=job.number if job else job_id))
            return redirect(url_for("web.jobs_detail", job_id=job_id))
    page = render_template(
        "jobs_new.html",
        query=query,
        matches=matches,
        customer=customer,
        premises=_premises(customer.id) if customer else [],
        users=joblist.field_users(),
        errors=errors,
        form=request.form if request.method == "POST" else {},
        job_types=codes.JOB_TYPES,
        priorities=codes.PRIORITIES,
        max_note=MAX_NOTE_CHARS,
    )
    return page, (422 if errors else 200)
