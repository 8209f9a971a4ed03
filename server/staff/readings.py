"""Staff API: readings (the same filters and exception flags as the readings page) and route progress
for the current cycle. Queries: services/readinglist.py."""

from __future__ import annotations

from typing import Any

from flask import jsonify, request
from marshmallow import Schema, fields

from sync_protocol.schemas import UtcDateTime

from ..openapi import document_staff
from ..services import readinglist
from ..services.readinglist import EXCEPTION_CODES, ReadingQuerySchema, RouteProgressQuerySchema
from . import bp, staff_api_required

ERRORS = ("unauthorized", "forbidden", "validation_error")


class PageInfoSchema(Schema):
    page = fields.Integer(required=True)
    per_page = fields.Integer(required=True)
    total = fields.Integer(required=True, metadata={"description": "Items matching the filters, on every page"})
    pages = fields.Integer(required=True)


def page_info(page: readinglist.Page) -> dict[str, int]:
    return {"page": page.page, "per_page": page.per_page, "total": page.total, "pages": page.pages}


class ReadingListItemSchema(Schema):
    id = fields.String(required=True)
    meter_id = fields.String(required=True)
    meter_number = fields.String(required=True)
    customer_id = fields.String(required=True)
    customer_name = fields.String(required=True)
    route_id = fields.String(allow_none=True)
    route_code = fields.String(allow_none=True)
    reader_id = fields.String(allow_none=True)
    reader_name = fields.String(allow_none=True)
    device_id = fields.String(allow_none=True)
    value = fields.Integer(allow_none=True)
    reading_type = fields.String(required=True)
    skip_code = fields.String(allow_none=True)
    trouble_code = fields.String(allow_none=True)
    comment_code = fields.String(allow_none=True)
    note = fields.String(allow_none=True)
    read_at = UtcDateTime(required=True)
    received_at = UtcDateTime(required=True)
    check_result = fields.String(allow_none=True)
    consumption = fields.Float(allow_none=True)
    rollover = fields.Boolean(required=True)
    supersedes = fields.String(allow_none=True)
    superseded_by = fields.String(allow_none=True)
    flags = fields.List(fields.String(), required=True)
    exceptions = fields.List(
        fields.String(), required=True, metadata={"description": "Exception kinds: " + ", ".join(EXCEPTION_CODES)}
    )


class ReadingSummarySchema(Schema):
    total = fields.Integer(required=True)
    out_of_range = fields.Integer(required=True)
    skipped = fields.Integer(required=True)
    estimated = fields.Integer(required=True)
    rollover = fields.Integer(required=True)
    trouble = fields.Integer(required=True)
    superseded = fields.Integer(required=True)


class ReadingListPageSchema(PageInfoSchema):
    items = fields.List(fields.Nested(ReadingListItemSchema), required=True)
    summary = fields.Nested(
        ReadingSummarySchema, required=True, metadata={"description": "Counts over every matching reading"}
    )


class RouteProgressItemSchema(Schema):
    route_id = fields.String(required=True)
    code = fields.String(required=True)
    name = fields.String(required=True)
    reader_id = fields.String(allow_none=True)
    reader_name = fields.String(allow_none=True)
    cycle_start = fields.Date(allow_none=True)
    cycle_end = fields.Date(allow_none=True)
    meters = fields.Integer(required=True)
    read = fields.Integer(required=True)
    skipped = fields.Integer(required=True)
    remaining = fields.Integer(required=True)
    out_of_range = fields.Integer(required=True)
    estimated = fields.Integer(required=True, metadata={"description": "Meters with an estimate this cycle"})
    estimated_consecutive = fields.Integer(
        required=True, metadata={"description": "Meters estimated two or more cycles in a row"}
    )
    percent_done = fields.Float(required=True)


class RouteProgressTotalsSchema(Schema):
    meters = fields.Integer(required=True)
    read = fields.Integer(required=True)
    skipped = fields.Integer(required=True)
    remaining = fields.Integer(required=True)
    out_of_range = fields.Integer(required=True)
    estimated = fields.Integer(required=True)
    estimated_consecutive = fields.Integer(required=True)
    percent_done = fields.Float(required=True)


class RouteProgressPageSchema(PageInfoSchema):
    items = fields.List(fields.Nested(RouteProgressItemSchema), required=True)
    totals = fields.Nested(
        RouteProgressTotalsSchema, required=True, metadata={"description": "Over every matching route"}
    )


READING_COLUMNS = (
    "id", "meter_id", "route_id", "reader_id", "device_id", "value", "reading_type", "skip_code", "trouble_code",
    "comment_code", "note", "read_at", "received_at", "check_result", "consumption", "rollover", "supersedes",
    "superseded_by",
)  # fmt: skip


def reading_item(row: Any) -> dict[str, Any]:
    """A row of readinglist.reading_rows in the shape of ReadingListItemSchema."""
    r = row.MeterReading
    return {
        **{name: getattr(r, name) for name in READING_COLUMNS},
        "meter_number": row.meter_number,
        "customer_id": row.customer_id,
        "customer_name": row.customer_name,
        "route_code": row.route_code,
        "reader_name": row.reader_name,
        "flags": list(r.flags or []),
        "exceptions": readinglist.exceptions_of(row),
    }


def _query(schema: Schema) -> Any:
    return schema.load(request.args.to_dict(flat=True))


@bp.get("/readings")
@staff_api_required
def list_readings() -> Any:
    f = _query(ReadingQuerySchema())
    page, summary = readinglist.reading_page(f)
    body = {**page_info(page), "items": [reading_item(row) for row in page.items], "summary": summary}
    return jsonify(ReadingListPageSchema().dump(body))


document_staff(
    "/api/v1/staff/readings",
    "get",
    "Readings, newest first, filtered as on the readings page, with their exception kinds",
    query=ReadingQuerySchema,
    response=ReadingListPageSchema,
    errors=ERRORS,
)


@bp.get("/routes/progress")
@staff_api_required
def route_progress() -> Any:
    f = _query(RouteProgressQuerySchema())
    page, totals = readinglist.route_progress_page(f)
    body = {**page_info(page), "items": page.items, "totals": totals}  # RouteProgress values, dumped by attribute
    return jsonify(RouteProgressPageSchema().dump(body))


document_staff(
    "/api/v1/staff/routes/progress",
    "get",
    "Each route's progress through its current cycle: meters read, skipped, remaining, out of range",
    query=RouteProgressQuerySchema,
    response=RouteProgressPageSchema,
    errors=ERRORS,
)
