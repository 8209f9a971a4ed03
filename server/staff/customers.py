"""Staff API: the customer list (search, segment, VIP) and one customer with premises, meters, consumption
history, jobs and complaints. Queries: services/customerview.py."""

from __future__ import annotations

from typing import Any

from flask import jsonify, request
from marshmallow import Schema, fields

from sync_protocol import ProtocolError
from sync_protocol.schemas import UtcDateTime

from ..openapi import document_staff
from ..services import customerview
from ..services.customerview import CustomerQuerySchema
from . import bp, staff_api_required
from .readings import PageInfoSchema, page_info

ERRORS = ("unauthorized", "forbidden", "validation_error")


class CustomerListItemSchema(Schema):
    id = fields.String(required=True)
    account_no = fields.String(required=True)
    name = fields.String(required=True)
    phone = fields.String(allow_none=True)
    segment = fields.String(required=True)
    vip = fields.Boolean(required=True)
    address = fields.String(allow_none=True, metadata={"description": "The first premise's address"})
    premises = fields.Integer(required=True)
    open_jobs = fields.Integer(required=True)


class CustomerListPageSchema(PageInfoSchema):
    items = fields.List(fields.Nested(CustomerListItemSchema), required=True)


class CustomerMeterSchema(Schema):
    id = fields.String(required=True)
    number = fields.String(required=True)
    route_id = fields.String(allow_none=True)
    meter_class = fields.String(required=True)
    dials = fields.Integer(required=True)
    multiplier = fields.Float(required=True)
    avg_daily = fields.Float(allow_none=True)
    last_value = fields.Integer(allow_none=True, metadata={"description": "The last billing read"})
    last_read_at = UtcDateTime(allow_none=True)
    last_read_type = fields.String(allow_none=True)
    consecutive_estimates = fields.Integer(required=True)


class CustomerPremiseSchema(Schema):
    id = fields.String(required=True)
    address = fields.String(required=True)
    lat = fields.Float(allow_none=True)
    lon = fields.Float(allow_none=True)
    hazards = fields.List(fields.String(), required=True)
    access_notes = fields.String(allow_none=True)
    meters = fields.List(fields.Nested(CustomerMeterSchema), required=True)


class ConsumptionMonthSchema(Schema):
    month = fields.String(required=True, metadata={"description": "YYYY-MM (UTC)"})
    consumption = fields.Float(required=True)
    readings = fields.Integer(required=True)
    estimated = fields.Integer(required=True)


class CustomerJobSchema(Schema):
    id = fields.String(required=True)
    number = fields.String(required=True)
    job_type = fields.String(required=True)
    status = fields.String(required=True)
    priority = fields.Integer(required=True)
    summary = fields.String(required=True)
    created_at = UtcDateTime(required=True)
    resolved_at = UtcDateTime(
        allow_none=True, metadata={"description": "First completed/closed status of the current round"}
    )
    resolution_hours = fields.Float(allow_none=True)


class ComplaintSummarySchema(Schema):
    total = fields.Integer(required=True)
    open = fields.Integer(required=True)
    resolved = fields.Integer(required=True)
    mean_hours = fields.Float(allow_none=True)
    longest_hours = fields.Float(allow_none=True)


class CustomerValueSchema(Schema):
    abc = fields.String(required=True, metadata={"description": "A, B or C"})
    rank = fields.Integer(required=True)
    volume = fields.Float(required=True)
    cumulative_share = fields.Float(required=True)
    period_start = fields.Date(required=True)
    period_end = fields.Date(required=True)


class CustomerDetailSchema(Schema):
    id = fields.String(required=True)
    account_no = fields.String(required=True)
    name = fields.String(required=True)
    phone = fields.String(allow_none=True)
    segment = fields.String(required=True)
    vip = fields.Boolean(required=True)
    value_class = fields.String(allow_none=True, metadata={"description": "ABC class (A, B, C)"})
    value = fields.Nested(
        CustomerValueSchema, allow_none=True, metadata={"description": "The value analysis of the default period"}
    )
    premises = fields.List(fields.Nested(CustomerPremiseSchema), required=True)
    consumption = fields.List(
        fields.Nested(ConsumptionMonthSchema), required=True, metadata={"description": "Oldest month first"}
    )
    jobs = fields.List(fields.Nested(CustomerJobSchema), required=True, metadata={"description": "Newest first"})
    jobs_total = fields.Integer(required=True)
    complaints = fields.List(fields.Nested(CustomerJobSchema), required=True)
    complaint_summary = fields.Nested(ComplaintSummarySchema, required=True)


def _job(row: customerview.JobRow) -> dict[str, Any]:
    j = row.job
    return {
        "id": j.id,
        "number": j.number,
        "job_type": j.job_type,
        "status": j.status,
        "priority": j.priority,
        "summary": j.summary,
        "created_at": j.created_at,
        "resolved_at": row.resolved_at,
        "resolution_hours": row.resolution_hours,
    }


@bp.get("/customers")
@staff_api_required
def list_customers() -> Any:
    f = CustomerQuerySchema().load(request.args.to_dict(flat=True))
    page = customerview.customer_page(f)
    items = [
        {**_customer_fields(row.Customer), "address": row.address, "premises": row.premises, "open_jobs": row.open_jobs}
        for row in page.items
    ]
    return jsonify(CustomerListPageSchema().dump({**page_info(page), "items": items}))


def _customer_fields(c: Any) -> dict[str, Any]:
    return {name: getattr(c, name) for name in ("id", "account_no", "name", "phone", "segment", "vip")}


document_staff(
    "/api/v1/staff/customers",
    "get",
    "Customers by name, searched by name, account number or phone, filtered by segment and VIP",
    query=CustomerQuerySchema,
    response=CustomerListPageSchema,
    errors=ERRORS,
)


@bp.get("/customers/<customer_id>")
@staff_api_required
def get_customer(customer_id: str) -> Any:
    detail = customerview.customer_detail(customer_id)
    if detail is None:
        raise ProtocolError("not_found", "No customer with this id.")
    body = {
        **_customer_fields(detail.customer),
        "value_class": detail.value_class,
        "value": _value(detail),
        "premises": [{**_premise(pv.premise), "meters": pv.meters} for pv in detail.premises],
        "consumption": [
            {
                "month": m.month.strftime("%Y-%m"),
                "consumption": m.consumption,
                "readings": m.readings,
                "estimated": m.estimated,
            }
            for m in detail.consumption
        ],
        "jobs": [_job(row) for row in detail.jobs],
        "jobs_total": detail.jobs_total,
        "complaints": [_job(row) for row in detail.complaints],
        "complaint_summary": detail.complaint_summary,
    }
    return jsonify(CustomerDetailSchema().dump(body))


def _value(detail: customerview.CustomerDetail) -> dict[str, Any] | None:
    if detail.value is None or detail.value_period is None:
        return None
    v = detail.value
    return {
        "abc": v.abc.value,
        "rank": v.rank,
        "volume": v.volume,
        "cumulative_share": v.cumulative_share,
        "period_start": detail.value_period.start,
        "period_end": detail.value_period.end,
    }


def _premise(p: Any) -> dict[str, Any]:
    fields_ = ("id", "address", "lat", "lon", "access_notes")
    return {**{name: getattr(p, name) for name in fields_}, "hazards": list(p.hazards or [])}


document_staff(
    "/api/v1/staff/customers/{customer_id}",
    "get",
    "One customer: account, premises with meters, monthly consumption (last 12 months), jobs, complaints",
    response=CustomerDetailSchema,
    errors=("unauthorized", "forbidden", "not_found"),
)
