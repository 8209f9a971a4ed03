"""Service-centre pages: the readings list (filters, exception tags, CSV, live updates), one reading, and
route progress for the current cycle. Queries live in services/readinglist.py, shared with the staff API.
Live updates, `url_with` and the list macros are the jobs pages' (server/web/jobs.py, jobs_macros.html)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from flask import abort, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from marshmallow import Schema, ValidationError
from werkzeug.datastructures import MultiDict

from sync_protocol import codes

from ..services import readinglist
from ..services.readinglist import ReadingFilter, ReadingQuerySchema, RouteFilter, RouteProgressQuerySchema
from . import bp
from .access import staff_required
from .jobs import fragment_response, live_fragment
from .listing import csv_response, wants_csv

EXCEPTION_LABELS: Mapping[str, Any] = {
    "out_of_range": _l("Out of range"),
    "skipped": _l("Skipped"),
    "estimated": _l("Estimated"),
    "rollover": _l("Rollover"),
    "trouble": _l("Trouble code"),
    "superseded": _l("Superseded"),
}
CHECK_LABELS: Mapping[str, Any] = {
    "in_range": _l("In range"),
    "high": _l("High"),
    "low": _l("Low"),
    "no_history": _l("No history"),
}


# --- helpers shared by the list pages (readings and customers) ----------------------------------------


def parse_query(schema: Schema, args: MultiDict[str, str]) -> tuple[Any, dict[str, list[str]]]:
    """The page's filters from the query string. A page never fails on a bad filter: the invalid ones
    are dropped and their messages returned for the form to show."""
    data = {key: args.get(key) for key in args if key in schema.fields}
    try:
        return schema.load(data), {}
    except ValidationError as exc:
        messages = exc.normalized_messages()
        clean = {key: value for key, value in data.items() if key not in messages}
        return schema.load(clean), {key: list(value) for key, value in messages.items()}


def label(table: Mapping[str, str], code: str | None) -> str:
    """A code's label in the page's language (the code itself if the list no longer has it)."""
    if code is None:
        return ""
    if code not in table:
        return code
    text = table[code]
    return _(text) if isinstance(text, str) else str(text)  # a msgid, or a lazy_gettext label


def fmt_time(value: dt.datetime | None) -> str:
    return "" if value is None else value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M")


def fmt_number(value: float | int | None, digits: int = 0) -> str:
    if value is None:
        return ""
    return f"{value:,.{digits}f}"


def template_helpers() -> dict[str, Any]:
    return {
        "label": label,
        "fmt_time": fmt_time,
        "fmt_number": fmt_number,
        "codes": codes,
    }


# --- readings ------------------------------------------------------------------------------------


def reading_tags(row: Any) -> list[dict[str, Any]]:
    """The exception tags of a `reading_rows` row: (css class, text, link) per flagged kind."""
    reading = row.MeterReading
    tags: list[dict[str, Any]] = []
    for code in readinglist.exceptions_of(row):
        css, href, text = "warn", None, str(EXCEPTION_LABELS[code])
        if code == "out_of_range":
            entries = (reading.check or {}).get("entries", 1)
            verified = reading.reading_type == "verified" or entries >= 2
            direction = label(CHECK_LABELS, reading.check_result)
            if verified:
                text = _("Out of range (%(direction)s), verified", direction=direction)
            elif reading.comment_code:
                text = _("Out of range (%(direction)s), remark given", direction=direction)
            else:
                text, css = _("Out of range (%(direction)s), not confirmed", direction=direction), "bad"
        elif code == "skipped":
            text = _("Skipped: %(reason)s", reason=label(codes.SKIP_CODES, reading.skip_code))
        elif code == "trouble":
            text, css = _("Trouble: %(code)s", code=label(codes.TROUBLE_CODES, reading.trouble_code)), "bad"
        elif code == "rollover":
            css = ""
        elif code == "superseded":
            css, href = "", url_for("web.readings_detail", reading_id=reading.superseded_by)
            text = _("Superseded: see the correction")
        tags.append({"code": code, "css": css, "text": text, "href": href})
    return tags


def row_class(row: Any) -> str:
    flagged = readinglist.exceptions_of(row)
    classes = []
    if any(tag["css"] == "bad" for tag in reading_tags(row)):
        classes.append("bad")
    elif flagged:
        classes.append("exception")
    if "superseded" in flagged:
        classes.append("superseded")
    return " ".join(classes)


def _reading_csv(f: ReadingFilter) -> Any:
    header = [
        _("Reading id"),
        _("Read at (UTC)"),
        _("Meter"),
        _("Account"),
        _("Customer"),
        _("Route"),
        _("Reader"),
        _("Type"),
        _("Value"),
        _("Consumption"),
        _("Check"),
        _("Skip code"),
        _("Trouble code"),
        _("Comment code"),
        _("Note"),
        _("Exceptions"),
        _("Supersedes"),
        _("Superseded by"),
    ]

    def row(r: Any) -> list[Any]:
        return [
            r.id,
            fmt_time(r.read_at),
            r.meter_number,
            r.account_no,
            r.customer_name,
            r.route_code,
            r.reader_name,
            r.reading_type,
            r.value,
            r.consumption,
            r.check_result,
            r.skip_code,
            r.trouble_code,
            r.comment_code,
            r.note,
            ";".join(readinglist.exceptions_of(r)),
            r.supersedes,
            r.superseded_by,
        ]

    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M")
    return csv_response(f"readings-{stamp}.csv", header, readinglist.reading_export_rows(f), row)


@bp.get("/readings")
@staff_required
def readings_list() -> Any:
    f, errors = parse_query(ReadingQuerySchema(), request.args)
    if wants_csv():
        return _reading_csv(f)
    page, summary = readinglist.reading_page(f)
    context = {
        **template_helpers(),
        "f": f,
        "errors": errors,
        "page": page,
        "summary": summary,
        "tags": reading_tags,
        "row_class": row_class,
        "exception_labels": EXCEPTION_LABELS,
        "check_labels": CHECK_LABELS,
        "routes": readinglist.route_choices(),
        "readers": readinglist.reader_choices(),
    }
    if live_fragment():
        return fragment_response("readings_table.html", **context)
    return render_template("readings_list.html", **context)


@bp.get("/readings/<reading_id>")
@staff_required
def readings_detail(reading_id: str) -> Any:
    row = readinglist.reading_detail(reading_id)
    if row is None:
        abort(404)
    return render_template(
        "readings_detail.html",
        **template_helpers(),
        row=row,
        r=row.MeterReading,
        tags=reading_tags(row),
        corrections=readinglist.corrections_of(reading_id),
        check_labels=CHECK_LABELS,
    )


# --- route progress ------------------------------------------------------------------------------------


def _routes_csv(f: RouteFilter) -> Any:
    header = [
        _("Route"),
        _("Name"),
        _("Reader"),
        _("Cycle start"),
        _("Cycle end"),
        _("Meters"),
        _("Read"),
        _("Skipped"),
        _("Remaining"),
        _("Out of range"),
        _("Estimated this cycle"),
        _("Estimated 2+ cycles in a row"),
    ]

    def row(item: Any) -> list[Any]:
        p = readinglist.as_progress(item)
        return [
            p.code,
            p.name,
            p.reader_name,
            p.cycle_start,
            p.cycle_end,
            p.meters,
            p.read,
            p.skipped,
            p.remaining,
            p.out_of_range,
            p.estimated,
            p.estimated_consecutive,
        ]

    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M")
    return csv_response(f"route-progress-{stamp}.csv", header, readinglist.route_progress_rows(f), row)


@bp.get("/readings/routes")
@staff_required
def readings_routes() -> Any:
    f, errors = parse_query(RouteProgressQuerySchema(), request.args)
    if wants_csv():
        return _routes_csv(f)
    page, total = readinglist.route_progress_page(f)
    context = {
        **template_helpers(),
        "f": f,
        "errors": errors,
        "page": page,
        "total": total,
        "readers": readinglist.reader_choices(),
    }
    if live_fragment():
        return fragment_response("readings_routes_table.html", **context)
    return render_template("readings_routes.html", **context)
