"""Words the screens show for the core's values: statuses, actions, code lists, times and errors.
Every text here goes through the translator when it is shown (`N_` only marks it for extraction)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sync_protocol import codes

from .i18n import tr


def N_(text: str) -> str:  # noqa: N802 - the gettext convention for "translate later"
    return text


STATUS = {
    "new": N_("New"),
    "assigned": N_("Assigned"),
    "en_route": N_("En route"),
    "on_site": N_("On site"),
    "on_hold": N_("On hold"),
    "completed": N_("Completed"),
    "cannot_complete": N_("Cannot complete"),
    "closed": N_("Closed"),
    "cancelled": N_("Cancelled by the office"),
}

# The crew's actions (jobs.detail()["actions"] and "accept"), as the buttons name them.
ACTIONS = {
    "accept": N_("Accept job"),
    "start_travel": N_("Start travel"),
    "arrive": N_("Arrived on site"),
    "hold": N_("Put on hold"),
    "resume": N_("Resume work"),
    "complete": N_("Complete job"),
    "cannot_complete": N_("Cannot complete"),
}
ACTION_ORDER = ["accept", "start_travel", "arrive", "resume", "complete", "hold", "cannot_complete"]

ROLES = {"meter_reader": N_("Meter reader"), "lineman": N_("Lineman")}

METER_STATE = {"read": N_("Read"), "skipped": N_("Skipped"), "remaining": N_("To read")}

CONFLICT_KIND = {
    "concurrent_edit": N_("Someone else changed the same field at the same time; their value was kept"),
    "work_after_cancel": N_("Work recorded after the office cancelled the job"),
}

# The sync engine's stages (progress callback) in plain words.
STAGES = {
    "hello": N_("Checking in with the server"),
    "push": N_("Sending your changes"),
    "pull": N_("Receiving updates"),
    "done": N_("Finished"),
}

# Sync errors by code (pda_client.errors), in words a person in the field can act on.
ERRORS = {
    "network": N_("Cannot reach the server. Your work is saved on the handheld and will be sent later."),
    "reenrol": N_("The server no longer accepts this handheld. Ask the office for a new code and enrol again."),
    "upgrade_required": N_("This app is too old for the server. Update the app; your work is kept."),
    "cancelled": N_("Sync stopped. Nothing was lost."),
    "server_refused": N_("The server refused the sync. Your work is kept; tell the office."),
    "resync_required": N_("The server asked for a full download. Sync again."),
    "payload_too_large": N_("Too much to send at once. Sync again; your work is kept."),
}


def code_label(table: Mapping[Any, str], code: Any) -> str:
    """A code list's label in the current language (the code itself if the list does not know it)."""
    return tr._(table[code]) if code in table else str(code or "")


def code_options(table: Mapping[str, str], exclude: set[str] | frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    return [(code, tr._(label)) for code, label in table.items() if code not in exclude]


def hazards(hazard_codes: list[str] | None) -> str:
    return ", ".join(code_label(codes.HAZARD_CODES, h) for h in hazard_codes or [])


def status(value: str | None) -> str:
    return tr._(STATUS[value]) if value in STATUS else (value or "")


def parse_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    return dt.datetime.fromisoformat(str(text).replace("Z", "+00:00")).astimezone()


def when(text: str | None, now: dt.datetime | None = None) -> str:
    """'today 14:05', 'yesterday 09:12', '2026-11-02 10:00', or 'never'."""
    moment = parse_time(text)
    if moment is None:
        return tr._("never")
    today = (now or dt.datetime.now().astimezone()).date()
    clock = moment.strftime("%H:%M")
    if moment.date() == today:
        return tr._("today {time}").format(time=clock)
    if moment.date() == today - dt.timedelta(days=1):
        return tr._("yesterday {time}").format(time=clock)
    return moment.strftime("%Y-%m-%d %H:%M")


def date(text: str | None) -> str:
    moment = parse_time(text)
    return moment.strftime("%Y-%m-%d") if moment else tr._("never")


def duration(ms: int | None) -> str:
    if ms is None:
        return "-"
    minutes = ms // 60000
    if minutes < 60:
        return tr._("{minutes} min").format(minutes=minutes)
    return tr._("{hours} h {minutes} min").format(hours=minutes // 60, minutes=minutes % 60)


def error(code: str | None, message: str | None) -> str:
    """A sync error in plain words; the core's own message when there is no better one."""
    if code in ERRORS:
        return tr._(ERRORS[code])
    return message or tr._("Something went wrong. Your work is kept.")


def role(value: str | None) -> str:
    return tr._(ROLES[value]) if value in ROLES else (value or "").replace("_", " ")


def job_row(job: Mapping[str, Any]) -> dict[str, Any]:
    """What a JobRow shows for one entry of `jobs.list()`."""
    priority = code_label(codes.PRIORITIES, job["priority"])
    place = " · ".join(part for part in (job.get("customer_name"), job.get("address")) if part)
    return {
        "job_id": job["id"],
        "heading": f"P{job['priority']} {priority} · {job['number']}",
        "customer": place,
        "details": f"{status(job['status'])} · {job.get('summary') or ''}",
        "vip": bool(job.get("vip")),
        "safety": bool(job.get("safety")),
        "hazard": bool(job.get("hazards")),
    }
