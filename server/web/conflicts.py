"""Service-centre pages: the conflicts the merge recorded (values that lost to a concurrent change, field
work on a cancelled job), with both values and their HLC times, filters, CSV, live updates, and the
review that resolves one (services.conflicts.mark_reviewed: the crew's handheld drops it on its next pull).
Labels, time filters, url_with and the live-update mechanism: see jobs.py."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from sync_protocol import ProtocolError

from ..database import write_transaction
from ..services import joblist
from ..services.conflicts import mark_reviewed
from ..services.records import iso
from . import bp
from .access import staff_required
from .auth import _safe_next
from .jobs import code_label, fragment_response, live_fragment, plain
from .listing import csv_response, paginate, wants_csv

MAX_REVIEW_NOTE = 1000


@bp.get("/conflicts")
@staff_required
def conflicts_list() -> Any:
    f, errors = joblist.load_query(
        joblist.ConflictQuerySchema(), request.args, strict=False, ignore=("format", "fragment")
    )
    if wants_csv():
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M")
        return csv_response(f"conflicts-{stamp}.csv", _csv_header(), joblist.conflict_export_select(f), _csv_row)
    page = paginate(joblist.conflict_select(f), per_page=f.per_page)
    context = {"filter": f, "errors": errors, "page": page, "rows": joblist.conflict_rows(page.items)}
    if live_fragment():  # live.js: only the table (see jobs.py)
        return fragment_response("conflicts_table.html", **context)
    return render_template(
        "conflicts_list.html",
        users=joblist.field_users(),
        kinds=joblist.CONFLICT_KINDS,
        states=joblist.CONFLICT_STATES,
        **context,
    )


def _csv_header() -> list[str]:
    return [
        _("Conflict"),
        _("Recorded (UTC)"),
        _("Kind"),
        _("Job number"),
        _("Field"),
        _("Kept value"),
        _("Kept at (UTC)"),
        _("Lost or flagged value"),
        _("Lost at (UTC)"),
        _("Field user"),
        _("Device"),
        _("State"),
        _("Reviewed at (UTC)"),
        _("Reviewed by"),
    ]


def _csv_row(row: Any) -> list[Any]:
    conflict, job_number, username, device_name, reviewer = row
    return [
        conflict.id,
        iso(conflict.created_at),
        code_label(conflict.kind, "conflict_kind"),
        job_number or conflict.entity_id,
        code_label(conflict.field, "job_field"),
        plain(conflict.winner, conflict.field),
        iso(joblist.hlc_time(conflict.winner_hlc)),
        plain(conflict.loser, conflict.field),
        iso(joblist.hlc_time(conflict.loser_hlc)),
        username,
        device_name,
        code_label("reviewed" if conflict.resolved_at else "open", "conflict_state"),
        iso(conflict.resolved_at),
        reviewer,
    ]


@bp.post("/conflicts/<int:conflict_id>/review")
@staff_required
def conflicts_review(conflict_id: int) -> Any:
    target = _safe_next(request.form.get("next") or url_for("web.conflicts_list"))
    note = (request.form.get("note") or "").strip()
    if len(note) > MAX_REVIEW_NOTE:
        flash(_("Not saved: the note has more than %(count)d characters.", count=MAX_REVIEW_NOTE), "error")
        return redirect(target)
    actor = current_user.id
    try:
        write_transaction(lambda: mark_reviewed(conflict_id, user_id=actor, note=note or None))
    except ProtocolError as exc:
        if exc.code == "not_found":
            flash(_("Conflict #%(id)d does not exist.", id=conflict_id), "error")
        else:
            flash(_("Conflict #%(id)d was already reviewed.", id=conflict_id), "error")
        return redirect(target)
    flash(_("Conflict #%(id)d marked reviewed.", id=conflict_id))
    return redirect(target)
