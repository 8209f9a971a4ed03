"""Staff API: jobs (the list with the pages' filters, one job with its full timeline) and conflicts.
Queries: services/joblist.py, shared with the pages and their CSV exports. Values are codes (statuses,
job types, segments...), not labels: integrations translate them themselves."""

from __future__ import annotations

from typing import Any

from flask import jsonify, request
from marshmallow import Schema, fields

from sync_protocol import ProtocolError
from sync_protocol.schemas import UtcDateTime

from ..openapi import document_staff
from ..services import joblist
from ..web.listing import paginate
from . import bp, staff_api_required
from .readings import PageInfoSchema, page_info

LIST_ERRORS = ("unauthorized", "forbidden", "validation_error")
ONE_ERRORS = ("unauthorized", "forbidden", "not_found")


class StaffJobCustomerSchema(Schema):
    id = fields.String(required=True)
    account_no = fields.String(required=True)
    name = fields.String(required=True)
    phone = fields.String(allow_none=True)
    segment = fields.String(required=True)
    vip = fields.Boolean(required=True)


class StaffJobPremiseSchema(Schema):
    id = fields.String(required=True)
    address = fields.String(required=True)
    hazards = fields.List(fields.String(), required=True)
    access_notes = fields.String(allow_none=True)


class StaffJobUserSchema(Schema):
    id = fields.String(required=True)
    username = fields.String(required=True)
    display_name = fields.String(required=True)
    role = fields.String(required=True)


class StaffJobSchema(Schema):
    id = fields.String(required=True)
    number = fields.String(required=True)
    status = fields.String(required=True)
    round = fields.Integer(required=True)
    priority = fields.Integer(required=True, metadata={"description": "1 emergency ... 4 low"})
    job_type = fields.String(required=True)
    summary = fields.String(required=True)
    created_at = UtcDateTime(required=True)
    scheduled_start = UtcDateTime(allow_none=True)
    scheduled_end = UtcDateTime(allow_none=True)
    requires_signature = fields.Boolean(required=True)
    customer = fields.Nested(StaffJobCustomerSchema, required=True)
    premise = fields.Nested(StaffJobPremiseSchema, allow_none=True)
    assignee = fields.Nested(StaffJobUserSchema, allow_none=True)
    last_field_at = UtcDateTime(
        allow_none=True, metadata={"description": "When the server last received a field event of this job"}
    )
    resolution_code = fields.String(allow_none=True)
    cause = fields.String(allow_none=True)
    resolution_note = fields.String(allow_none=True)
    follow_up_needed = fields.Boolean(allow_none=True)
    contact_name = fields.String(allow_none=True)


class StaffJobPageSchema(PageInfoSchema):
    items = fields.List(fields.Nested(StaffJobSchema), required=True)


class StaffJobEventSchema(Schema):
    id = fields.String(required=True)
    kind = fields.String(required=True, metadata={"description": "status, note, material or accepted"})
    status = fields.String(allow_none=True)
    round = fields.Integer(allow_none=True)
    text = fields.String(allow_none=True)
    material_code = fields.String(allow_none=True)
    quantity = fields.Float(allow_none=True)
    unit = fields.String(allow_none=True)
    recorded_at = UtcDateTime(required=True, metadata={"description": "Device time (server time for the office)"})
    received_at = UtcDateTime(required=True, metadata={"description": "When the server received it"})
    hlc = fields.String(required=True)
    source = fields.String(required=True, metadata={"description": "field or office"})
    author = fields.Nested(StaffJobUserSchema, allow_none=True)
    device_id = fields.String(allow_none=True)
    device_name = fields.String(allow_none=True)
    flags = fields.List(fields.String(), required=True, metadata={"description": "clock_skew, work_after_cancel"})


class StaffConflictSchema(Schema):
    id = fields.Integer(required=True)
    kind = fields.String(required=True, metadata={"description": "concurrent_edit or work_after_cancel"})
    entity = fields.String(required=True)
    entity_id = fields.String(required=True)
    job_number = fields.String(allow_none=True)
    field = fields.String(required=True)
    winner = fields.Raw(allow_none=True, metadata={"description": "The value the record holds"})
    winner_hlc = fields.String(required=True)
    winner_at = UtcDateTime(allow_none=True, metadata={"description": "Physical time of winner_hlc"})
    loser = fields.Raw(allow_none=True, metadata={"description": "The value that lost or was flagged"})
    loser_hlc = fields.String(required=True)
    loser_at = UtcDateTime(allow_none=True)
    user = fields.Nested(StaffJobUserSchema, allow_none=True, metadata={"description": "Whose change"})
    device_id = fields.String(allow_none=True)
    device_name = fields.String(allow_none=True)
    created_at = UtcDateTime(required=True)
    resolved_at = UtcDateTime(allow_none=True)
    resolved_by = fields.Nested(StaffJobUserSchema, allow_none=True)
    review_note = fields.String(allow_none=True)


class StaffConflictPageSchema(PageInfoSchema):
    items = fields.List(fields.Nested(StaffConflictSchema), required=True)


class StaffJobDetailSchema(StaffJobSchema):
    time_on_site_ms = fields.Integer(
        allow_none=True, metadata={"description": "Current round: arrival to completion, less time on hold"}
    )
    timeline = fields.List(fields.Nested(StaffJobEventSchema), required=True, metadata={"description": "HLC order"})
    conflicts = fields.List(fields.Nested(StaffConflictSchema), required=True)


def _user(user: Any) -> dict[str, Any] | None:
    if user is None:
        return None
    return {"id": user.id, "username": user.username, "display_name": user.display_name, "role": user.role}


def _job(row: joblist.JobRow | joblist.JobDetail, last_field_at: Any = None) -> dict[str, Any]:
    job, customer, premise = row.job, row.customer, row.premise
    data = {
        name: getattr(job, name)
        for name in (
            "id",
            "number",
            "status",
            "round",
            "priority",
            "job_type",
            "summary",
            "created_at",
            "scheduled_start",
            "scheduled_end",
            "requires_signature",
            "resolution_code",
            "cause",
            "resolution_note",
            "follow_up_needed",
            "contact_name",
        )
    }
    data["customer"] = {
        name: getattr(customer, name) for name in ("id", "account_no", "name", "phone", "segment", "vip")
    }
    data["premise"] = (
        None
        if premise is None
        else {
            "id": premise.id,
            "address": premise.address,
            "hazards": list(premise.hazards or []),
            "access_notes": premise.access_notes,
        }
    )
    data["assignee"] = _user(row.assignee)
    data["last_field_at"] = last_field_at
    return data


def _conflict(row: joblist.ConflictRow) -> dict[str, Any]:
    c = row.conflict
    return {
        "id": c.id,
        "kind": c.kind,
        "entity": c.entity,
        "entity_id": c.entity_id,
        "job_number": row.job.number if row.job else None,
        "field": c.field,
        "winner": c.winner,
        "winner_hlc": c.winner_hlc,
        "winner_at": row.winner_at,
        "loser": c.loser,
        "loser_hlc": c.loser_hlc,
        "loser_at": row.loser_at,
        "user": _user(row.user),
        "device_id": c.device_id,
        "device_name": row.device.name if row.device else None,
        "created_at": c.created_at,
        "resolved_at": c.resolved_at,
        "resolved_by": _user(row.reviewer),
        "review_note": row.review_note,
    }


@bp.get("/jobs")
@staff_api_required
def list_jobs() -> Any:
    f, _ = joblist.load_query(joblist.JobQuerySchema(), request.args, strict=True)
    page = paginate(joblist.job_select(f), per_page=f.per_page, total=lambda: joblist.job_count(f))
    items = [_job(row, row.last_field_at) for row in joblist.rows_for(page.items)]
    return jsonify(StaffJobPageSchema().dump({**page_info(page), "items": items}))


document_staff(
    "/api/v1/staff/jobs",
    "get",
    "Jobs, newest first (or by priority), searched and filtered as on the jobs page",
    query=joblist.JobQuerySchema,
    response=StaffJobPageSchema,
    errors=LIST_ERRORS,
)


@bp.get("/jobs/<job_id>")
@staff_api_required
def get_job(job_id: str) -> Any:
    detail = joblist.job_detail(job_id)
    if detail is None:
        raise ProtocolError("not_found", "No job with this id.")
    last_field = [e.event.received_at for e in detail.timeline if e.event.source == "field"]
    body = _job(detail, max(last_field) if last_field else None)
    body["time_on_site_ms"] = detail.time_on_site_ms
    body["timeline"] = [
        {
            **{
                name: getattr(entry.event, name)
                for name in (
                    "id",
                    "kind",
                    "status",
                    "round",
                    "text",
                    "material_code",
                    "quantity",
                    "unit",
                    "recorded_at",
                    "received_at",
                    "hlc",
                    "source",
                    "device_id",
                )
            },
            "author": _user(entry.author),
            "device_name": entry.device.name if entry.device else None,
            "flags": list(entry.event.flags or []),
        }
        for entry in detail.timeline
    ]
    body["conflicts"] = [_conflict(row) for row in detail.conflicts]
    return jsonify(StaffJobDetailSchema().dump(body))


document_staff(
    "/api/v1/staff/jobs/{job_id}",
    "get",
    "One job: customer, premise, assignee, outcome, time on site, every event (device and receive times), conflicts",
    response=StaffJobDetailSchema,
    errors=ONE_ERRORS,
)


@bp.get("/conflicts")
@staff_api_required
def list_conflicts() -> Any:
    f, _ = joblist.load_query(joblist.ConflictQuerySchema(), request.args, strict=True)
    page = paginate(joblist.conflict_select(f), per_page=f.per_page)
    items = [_conflict(row) for row in joblist.conflict_rows(page.items)]
    return jsonify(StaffConflictPageSchema().dump({**page_info(page), "items": items}))


document_staff(
    "/api/v1/staff/conflicts",
    "get",
    "Recorded conflicts, newest first: both values with their HLC times, whose change, review state",
    query=joblist.ConflictQuerySchema,
    response=StaffConflictPageSchema,
    errors=LIST_ERRORS,
)
