"""Service-centre page: value analysis (/analysis) — the customers' ABC classes over a period (Pareto
chart, class and segment totals), the VIP list and the classified customer list (filters, pages, CSV).
The rule and its boundary cases: services/analysis.py and docs/analysis.md."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from flask import Response, render_template, request, stream_with_context, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup, escape
from marshmallow import Schema, ValidationError
from werkzeug.datastructures import MultiDict

from sync_protocol import codes

from ..services import analysis
from ..services.analysis import AbcClass, AbcQuery, AbcQuerySchema, CustomerRow, Variant
from ..services.readinglist import Page
from . import bp, charts  # charts also registers the chart helpers the templates use
from .access import staff_required
from .listing import _safe_cell, wants_csv

UNIT = "kWh"
CLASS_LABELS: Mapping[AbcClass, Any] = {
    AbcClass.A: _l("A: key customers"),
    AbcClass.B: _l("B: major customers"),
    AbcClass.C: _l("C: ordinary customers"),
}
VARIANT_LABELS: Mapping[Variant, Any] = {
    Variant.COUNT: _l("First third by count, then B until the cumulative share (DESIGN)"),
    Variant.CUMULATIVE: _l("Cumulative shares (textbook 80 / 95 %)"),
}
CSV_CHUNK = 500


def load_query(schema: Schema, args: MultiDict[str, str]) -> tuple[Any, dict[str, list[str]]]:
    """The request's parameters; invalid ones are dropped (the page still shows something useful) and
    their messages returned, translated, for the form to show beside them."""
    names = {f.data_key or name for name, f in schema.fields.items()}
    data = {key: args.get(key) for key in args if key in names}
    shown: dict[str, list[str]] = {}
    for _attempt in range(len(names) + 1):  # each round drops at least one parameter
        try:
            return schema.load(data), shown
        except ValidationError as exc:
            messages = exc.normalized_messages()
            for key, texts in messages.items():
                shown.setdefault(key, []).extend(_(str(text)) for text in texts)
            if "_schema" in messages or not set(messages) & set(data):
                data = {}  # nothing left to drop one by one: the defaults
            else:
                data = {key: value for key, value in data.items() if key not in messages}
    return schema.load({}), shown


def page_url(endpoint: str, **changes: Any) -> str:
    """This page's URL with the current parameters, some changed (None removes one)."""
    args = {key: value for key, value in request.args.items() if key != "format"}
    args.update(changes)
    return url_for(endpoint, **{key: value for key, value in args.items() if value not in (None, "")})


def percent_value(share: Any) -> str:
    """A share as the percentage a form field shows (33.3333 for 1/3, 95 for 0.95)."""
    text = f"{float(share) * 100:.4f}".rstrip("0").rstrip(".")
    return text


def pareto_guides(rule: analysis.Rule) -> list[float]:
    """Dashed lines at 80 % and 95 % of the cumulative volume, and at the rule's own volume thresholds."""
    shares = {0.8, 0.95, float(rule.b)}
    if rule.variant is Variant.CUMULATIVE:
        shares.add(float(rule.a))
    return sorted(shares)


def class_summary(result: analysis.ValueAnalysis) -> str:
    """The Pareto chart's description: each class's share of customers and of volume."""
    parts = [
        _(
            "%(abc)s: %(customers)s customers (%(customer_share)s), %(volume_share)s of the volume",
            abc=totals.abc.value,
            customers=totals.customers,
            customer_share=charts.chart_percent(totals.customer_share),
            volume_share=charts.chart_percent(totals.volume_share),
        )
        for totals in result.classification.totals
    ]
    return "; ".join(parts) + "."


def customer_link(row: CustomerRow) -> Markup:
    """The customer's name, linking to its page."""
    return Markup(f'<a href="/customers/{escape(quote(row.customer_id, safe="/"))}">{escape(row.name)}</a>')


def class_tag(abc: AbcClass) -> Markup:
    return Markup(f'<span class="tag abc abc-{escape(abc.value)}">{escape(abc.value)}</span>')


def vip_rows(rows: Sequence[CustomerRow], open_jobs: Mapping[str, int]) -> Markup:
    """The VIP list's table rows. Built here rather than in the template: a city has thousands of VIPs,
    and a macro and a translation per row cost the page ~0.3 s at 2,600 of them. Every value escaped."""
    segments = {code: escape(_(label)) for code, label in codes.CUSTOMER_SEGMENTS.items()}
    tags = {abc: class_tag(abc) for abc in AbcClass}
    parts = []
    for row in rows:
        jobs = open_jobs.get(row.customer_id)
        open_cell = f'<span class="tag warn">{jobs}</span>' if jobs else "0"
        parts.append(
            f"<tr><td>{customer_link(row)}</td>"
            f"<td>{escape(row.account_no)}</td>"
            f'<td><span class="tag {"safety" if row.segment == "safety" else ""}">'
            f"{segments.get(row.segment) or escape(row.segment)}</span></td>"
            f'<td>{tags[row.abc]}</td><td class="num">{escape(charts.chart_number(row.volume))}</td>'
            f'<td class="num">{open_cell}</td></tr>'
        )
    return Markup("\n".join(parts))


@bp.get("/analysis")
@staff_required
def value_analysis() -> Any:
    query, errors = load_query(AbcQuerySchema(), request.args)
    result = analysis.analyse(query.period, query.rule)
    rows = result.select(query.abc, query.segment, query.vip)
    if wants_csv():
        return classified_csv(query, rows)
    start = (query.page - 1) * query.per_page
    page = Page(rows[start : start + query.per_page], query.page, query.per_page, len(rows))
    open_jobs = analysis.open_jobs_of_vips()
    return render_template(
        "analysis_value.html",
        q=query,
        errors=errors,
        result=result,
        page=page,
        volumes=result.consuming_volumes,
        pareto_classes=[(abc.value, count) for abc, count in result.consuming_by_class],
        pareto_guides=pareto_guides(query.rule),
        segments=result.segments(),
        vips=result.vips,
        vip_rows=vip_rows(result.vips, open_jobs),
        customer_link=customer_link,
        class_tag=class_tag,
        open_jobs=open_jobs,
        summary=class_summary(result),
        class_labels=CLASS_LABELS,
        variant_labels=VARIANT_LABELS,
        segment_labels=codes.CUSTOMER_SEGMENTS,
        percent_value=percent_value,
        page_url=page_url,
        unit=UNIT,
        Variant=Variant,
        AbcClass=AbcClass,
    )


def classified_csv(query: AbcQuery, rows: Sequence[CustomerRow]) -> Response:
    """The classified customers matching the filters, streamed as CSV in chunks."""
    header = [
        _("Rank"),
        _("Class"),
        _("Account"),
        _("Customer"),
        _("Segment"),
        _("VIP"),
        _("Volume (%(unit)s)", unit=UNIT),
        _("Readings"),
        _("Cumulative share (%)"),
    ]
    name = f"value-analysis-{query.period.start.isoformat()}-{query.period.end.isoformat()}.csv"
    return csv_stream(
        name,
        header,
        (
            (
                row.rank,
                row.abc.value,
                row.account_no,
                row.name,
                row.segment,
                _("yes") if row.vip else _("no"),
                round(row.volume, 3),
                row.readings,
                round(row.cumulative_share * 100, 4),
            )
            for row in rows
        ),
    )


def csv_stream(filename: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Response:
    """Rows computed in memory (not a query), streamed as CSV in chunks, with the same neutralising of
    formula-like cells as listing.csv_response."""

    def generate() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(header)
        for count, row in enumerate(rows, start=1):
            writer.writerow([_safe_cell(value) for value in row])
            if count % CSV_CHUNK == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    response = Response(stream_with_context(generate()), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
