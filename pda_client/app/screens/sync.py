"""Sync by hand: a progress bar and what the sync is doing (from the core's progress callback), what it
did, and the two things a person must know about afterwards: conflicts (their change lost to someone
else's, and was kept for the office) and rejections (the server refused a change, and why)."""

from __future__ import annotations

import contextlib
from typing import Any

from kivy.properties import StringProperty

from pda_client.errors import NotFound

from .. import labels
from ..i18n import tr
from ..widgets import FSLabel
from . import AppScreen

ENTITIES = {"job": labels.N_("Job"), "job_event": labels.N_("Job update"), "meter_reading": labels.N_("Reading")}
FIELDS = {  # job fields a conflict can name
    "status": labels.N_("Status"),
    "resolution_code": labels.N_("Resolution"),
    "resolution_note": labels.N_("Resolution note"),
    "cause": labels.N_("Cause"),
    "follow_up_needed": labels.N_("Follow-up needed"),
    "contact_name": labels.N_("Contact"),
}


class SyncScreen(AppScreen):
    conflicts_title = StringProperty("")
    rejected_title = StringProperty("")

    def refresh(self) -> None:
        if self.handheld is None:
            return
        self.app.refresh_status()
        conflicts = self.handheld.conflicts()
        rejected = self.handheld.rejected()
        self.conflicts_title = tr._("Conflicts: {count}").format(count=len(conflicts))
        self.rejected_title = tr._("Refused by the server: {count}").format(count=len(rejected))
        box = self.ids.conflicts
        box.clear_widgets()
        for conflict in conflicts:
            box.add_widget(FSLabel(text=self._conflict_words(conflict), font_size="17sp"))
        if conflicts:
            self.handheld.mark_conflicts_seen()
        box = self.ids.rejected
        box.clear_widgets()
        for item in rejected:
            text = tr._("{when} · {what}: {message}").format(
                when=labels.when(item["rejected_at"]),
                what=self._what(item["entity"], item["entity_id"], (item.get("payload") or {}).get("data")),
                message=item["message"],
            )
            box.add_widget(FSLabel(text=text, font_size="17sp"))

    def _what(self, entity: str, entity_id: str, data: dict[str, Any] | None = None) -> str:
        """'Job J261122-4F1A2B', 'Reading for meter A1234567': what a person knows the record by."""
        data = data or {}
        if entity == "job_event" and data.get("job_id"):
            entity, entity_id = "job", data["job_id"]
        if entity == "job":
            with contextlib.suppress(NotFound):
                entity_id = self.handheld.jobs.find(entity_id)["number"]
            return tr._("Job {number}").format(number=entity_id)
        if entity == "meter_reading" and data.get("meter_id"):
            number = data["meter_id"]
            with contextlib.suppress(NotFound):
                number = self.handheld.readings.find_meter(number)["number"]
            return tr._("Reading for meter {number}").format(number=number)
        return f"{tr._(ENTITIES[entity]) if entity in ENTITIES else entity} {entity_id}"

    def _conflict_words(self, conflict: dict[str, Any]) -> str:
        kind = conflict["kind"]
        kind = tr._(labels.CONFLICT_KIND[kind]) if kind in labels.CONFLICT_KIND else kind
        what = self._what(conflict["entity"], conflict["entity_id"])
        text = f"{labels.when(conflict['created_at'])} · {what}: {kind}"
        if conflict.get("field"):
            winner, loser = conflict["winner"], conflict["loser"]
            if conflict["field"] == "status":
                winner, loser = labels.status(winner), labels.status(loser)
            field = FIELDS.get(conflict["field"], conflict["field"].replace("_", " "))
            text += "\n" + tr._('{field}: kept "{winner}"; yours, "{loser}", is saved for the office.').format(
                field=tr._(field), winner=winner, loser=loser
            )
        return text

    def start(self) -> None:
        self.app.sync_now()
