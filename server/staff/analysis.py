"""Staff API: the KPIs (/kpis) and the customers' ABC classification (/analysis/abc), the same numbers as
the KPI dashboard and the value-analysis page. Definitions: services/kpis.py, services/analysis.py and
docs/analysis.md. Durations are seconds; shares are fractions of 1, thresholds percentages."""

from __future__ import annotations

from typing import Any

from flask import jsonify, request
from marshmallow import Schema, fields

from ..openapi import document_staff
from ..services import analysis, kpis
from ..services.analysis import AbcQuerySchema
from ..services.kpis import KpiQuerySchema
from ..services.readinglist import Page
from . import bp, staff_api_required
from .readings import PageInfoSchema, page_info

ERRORS = ("unauthorized", "forbidden", "validation_error")


class PeriodSchema(Schema):
    start = fields.Date(required=True, metadata={"description": "First day (UTC), included"})
    end = fields.Date(required=True, metadata={"description": "Last day (UTC), included"})


# --- KPIs ------------------------------------------------------------------------------------------


class KpiDurationSchema(Schema):
    count = fields.Integer(required=True)
    median_s = fields.Float(attribute="median", allow_none=True, metadata={"description": "Seconds"})
    p90_s = fields.Float(attribute="p90", allow_none=True, metadata={"description": "Seconds, 90th percentile"})


class KpiRateSchema(Schema):
    part = fields.Integer(required=True)
    whole = fields.Integer(required=True)
    rate = fields.Float(attribute="value", allow_none=True, metadata={"description": "part / whole; null when 0/0"})


class KpiPrioritySchema(KpiDurationSchema):
    priority = fields.Integer(required=True)


class KpiWorkerSchema(Schema):
    user_id = fields.String(required=True)
    name = fields.String(required=True)
    completed = fields.Integer(required=True)
    first_time_fix = fields.Nested(KpiRateSchema, required=True)
    time_on_site = fields.Nested(KpiDurationSchema, required=True)


class KpiComplaintsSchema(Schema):
    received = fields.Integer(required=True)
    resolved = fields.Integer(required=True)
    still_open = fields.Integer(required=True, metadata={"description": "Received in the period, not finished now"})
    resolution = fields.Nested(KpiDurationSchema, required=True)


class KpiReadingsSchema(Schema):
    key = fields.String(allow_none=True, metadata={"description": "Route id or reader id (null: none recorded)"})
    label = fields.String(required=True)
    done = fields.Integer(required=True)
    skipped = fields.Integer(required=True)
    out_of_range = fields.Integer(required=True)
    estimated = fields.Integer(required=True)


class KpiTrendPointSchema(Schema):
    start = fields.Date(required=True)
    label = fields.String(required=True)
    response = fields.Nested(KpiDurationSchema, required=True)
    completed = fields.Integer(required=True)
    first_time_fix = fields.Nested(KpiRateSchema, required=True)
    complaints_received = fields.Integer(required=True)
    complaints_resolved = fields.Integer(required=True)
    readings_done = fields.Integer(required=True)
    readings_skipped = fields.Integer(required=True)
    readings_out_of_range = fields.Integer(required=True)


class KpiReportSchema(Schema):
    period = fields.Nested(PeriodSchema, required=True)
    grouping = fields.String(required=True)
    response = fields.Nested(KpiDurationSchema, required=True, metadata={"description": "Creation to arrival"})
    completion = fields.Nested(KpiDurationSchema, required=True, metadata={"description": "Creation to completion"})
    first_time_fix = fields.Nested(KpiRateSchema, required=True)
    awaiting_arrival = fields.Integer(required=True)
    response_by_priority = fields.List(fields.Nested(KpiPrioritySchema), required=True)
    workers = fields.List(fields.Nested(KpiWorkerSchema), required=True)
    complaints = fields.Nested(KpiComplaintsSchema, required=True)
    readings = fields.Nested(KpiReadingsSchema, required=True)
    routes = fields.List(fields.Nested(KpiReadingsSchema), required=True)
    readers = fields.List(fields.Nested(KpiReadingsSchema), required=True)
    trend = fields.List(fields.Nested(KpiTrendPointSchema), required=True)


@bp.get("/kpis")
@staff_api_required
def get_kpis() -> Any:
    query = KpiQuerySchema().load(request.args.to_dict(flat=True))
    report = kpis.build_report(query.period, query.grouping)
    body = {
        **{name: getattr(report, name) for name in KpiReportSchema().fields if name not in ("response_by_priority",)},
        "grouping": report.grouping.value,
        "response_by_priority": [
            {"priority": priority, "count": d.count, "median": d.median, "p90": d.p90}
            for priority, d in report.response_by_priority
        ],
    }
    return jsonify(KpiReportSchema().dump(body))


document_staff(
    "/api/v1/staff/kpis",
    "get",
    "KPIs over a period: response and completion times, first-time-fix rate, jobs per worker, readings per "
    "route and reader, complaints, and their trend",
    query=KpiQuerySchema,
    response=KpiReportSchema,
    errors=ERRORS,
)


# --- ABC classification ----------------------------------------------------------------------------


class AbcRuleSchema(Schema):
    variant = fields.String(required=True, metadata={"description": "count or cumulative"})
    a = fields.Float(required=True, metadata={"description": "Percent"})
    b = fields.Float(required=True, metadata={"description": "Percent"})
    a_exact = fields.String(required=True, metadata={"description": "The A threshold as an exact fraction"})
    b_exact = fields.String(required=True, metadata={"description": "The B threshold as an exact fraction"})


class AbcClassTotalsSchema(Schema):
    abc = fields.String(data_key="class", required=True)
    customers = fields.Integer(required=True)
    customer_share = fields.Float(required=True)
    volume = fields.Float(required=True)
    volume_share = fields.Float(required=True)


class AbcSegmentSchema(Schema):
    segment = fields.String(required=True)
    customers = fields.Integer(required=True)
    vip = fields.Integer(required=True)
    volume = fields.Float(required=True)
    volume_share = fields.Float(required=True)
    by_class = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)


class AbcCustomerSchema(Schema):
    customer_id = fields.String(required=True)
    account_no = fields.String(required=True)
    name = fields.String(required=True)
    segment = fields.String(required=True)
    vip = fields.Boolean(required=True)
    volume = fields.Float(required=True)
    readings = fields.Integer(required=True)
    rank = fields.Integer(required=True, metadata={"description": "1 = largest volume"})
    abc = fields.String(data_key="class", required=True)
    cumulative_share = fields.Float(required=True, metadata={"description": "0 for customers without consumption"})


class AbcReportSchema(PageInfoSchema):
    period = fields.Nested(PeriodSchema, required=True)
    rule = fields.Nested(AbcRuleSchema, required=True)
    total_volume = fields.Float(required=True)
    customers = fields.Integer(required=True)
    consuming_customers = fields.Integer(required=True, metadata={"description": "With a positive volume"})
    classes = fields.List(fields.Nested(AbcClassTotalsSchema), required=True)
    segments = fields.List(fields.Nested(AbcSegmentSchema), required=True)
    items = fields.List(fields.Nested(AbcCustomerSchema), required=True, metadata={"description": "In rank order"})


def _percent(share: Any) -> float:
    return round(float(share) * 100, 6)


@bp.get("/analysis/abc")
@staff_api_required
def get_abc() -> Any:
    query = AbcQuerySchema().load(request.args.to_dict(flat=True))
    result = analysis.analyse(query.period, query.rule)
    rows = result.select(query.abc, query.segment, query.vip)
    start = (query.page - 1) * query.per_page
    page = Page(rows[start : start + query.per_page], query.page, query.per_page, len(rows))
    rule = result.rule
    body = {
        **page_info(page),
        "period": result.period,
        "rule": {
            "variant": rule.variant.value,
            "a": _percent(rule.a),
            "b": _percent(rule.b),
            "a_exact": str(rule.a),
            "b_exact": str(rule.b),
        },
        "total_volume": result.classification.total_volume,
        "customers": len(result.rows),
        "consuming_customers": result.classification.consuming,
        "classes": [{**vars_of(t), "abc": t.abc.value} for t in result.classification.totals],
        "segments": [
            {**vars_of(s), "by_class": {abc.value: n for abc, n in s.by_class.items()}} for s in result.segments()
        ],
        "items": [{**row._asdict(), "abc": row.abc.value} for row in page.items],
    }
    return jsonify(AbcReportSchema().dump(body))


def vars_of(value: Any) -> dict[str, Any]:
    return dict(vars(value))


document_staff(
    "/api/v1/staff/analysis/abc",
    "get",
    "Customers' ABC classes by consumption over a period (count or cumulative rule), with class and segment "
    "totals and the classified customers in rank order, filtered by class, segment and VIP",
    query=AbcQuerySchema,
    response=AbcReportSchema,
    errors=ERRORS,
)
