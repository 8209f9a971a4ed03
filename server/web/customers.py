"""Service-centre pages: the customer list (search, segment and VIP filters, CSV) and one customer's page
(account, premises and meters, consumption history, jobs, complaints). Queries: services/customerview.py."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import quote

from flask import abort, current_app, render_template, request, url_for
from flask_babel import gettext as _

from ..services import customerview
from ..services.customerview import CustomerFilter, CustomerQuerySchema
from ..services.periods import Grouping, bucket_label
from . import bp
from .access import staff_required
from .jobs import fragment_response, live_fragment
from .listing import csv_response, wants_csv
from .readings import parse_query, template_helpers

JOB_DETAIL = "web.jobs_detail"


def job_url(job_id: str) -> str:
    """The job's page: through its endpoint once the jobs pages register it, else its plain path."""
    rules = list(current_app.url_map.iter_rules(JOB_DETAIL)) if JOB_DETAIL in current_app.view_functions else []
    if rules and len(rules[0].arguments) == 1:
        (argument,) = rules[0].arguments
        return url_for(JOB_DETAIL, **{argument: job_id})
    return "/jobs/" + quote(job_id, safe="")


def fmt_hours(hours: float | None) -> str:
    """A duration for people: minutes under an hour, hours under two days, else days."""
    if hours is None:
        return ""
    if hours < 1:
        return _("%(n)s min", n=round(hours * 60))
    if hours < 48:
        return _("%(n)s h", n=f"{hours:.1f}")
    return _("%(n)s days", n=f"{hours / 24:.1f}")


def _customers_csv(f: CustomerFilter) -> Any:
    header = [
        _("Account"),
        _("Name"),
        _("Phone"),
        _("Segment"),
        _("VIP"),
        _("Address"),
        _("Premises"),
        _("Open jobs"),
    ]

    def row(item: Any) -> list[Any]:
        c = item.Customer
        return [
            c.account_no,
            c.name,
            c.phone,
            c.segment,
            _("yes") if c.vip else _("no"),
            item.address,
            item.premises,
            item.open_jobs,
        ]

    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M")
    return csv_response(f"customers-{stamp}.csv", header, customerview.customer_rows(f), row)


@bp.get("/customers")
@staff_required
def customers_list() -> Any:
    f, errors = parse_query(CustomerQuerySchema(), request.args)
    if wants_csv():
        return _customers_csv(f)
    context = {**template_helpers(), "f": f, "errors": errors, "page": customerview.customer_page(f)}
    if live_fragment():
        return fragment_response("customers_table.html", **context)
    return render_template("customers_list.html", **context)


@bp.get("/customers/<customer_id>")
@staff_required
def customers_detail(customer_id: str) -> Any:
    detail = customerview.customer_detail(customer_id)
    if detail is None:
        abort(404)
    return render_template(
        "customers_detail.html",
        **template_helpers(),
        d=detail,
        c=detail.customer,
        month_labels=[bucket_label(month.month, Grouping.MONTH) for month in detail.consumption],
        has_value_analysis="web.value_analysis" in current_app.view_functions,
        job_url=job_url,
        fmt_hours=fmt_hours,
    )
