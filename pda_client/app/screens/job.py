"""One job: hazards first, the customer (VIP / safety marked), what to do, big buttons for exactly the
lifecycle steps the core allows now (`jobs.detail()["actions"]`), time on site, a resolution code when
completing, materials used and notes."""

from __future__ import annotations

import datetime as dt
from typing import Any

from kivy.clock import Clock
from kivy.properties import BooleanProperty, StringProperty

from pda_client.errors import HandheldError
from sync_protocol import codes

from .. import labels
from ..i18n import tr
from ..widgets import FSButton, FSLabel, Picker
from . import AppScreen

FORWARD = {"accept", "start_travel", "arrive", "resume", "complete"}


class JobScreen(AppScreen):
    job_id = StringProperty("")
    number = StringProperty("")
    status_text = StringProperty("")
    hazards = StringProperty("")
    vip = BooleanProperty(False)
    safety = BooleanProperty(False)
    summary = StringProperty("")
    facts = StringProperty("")
    time_on_site = StringProperty("")
    message = StringProperty("")
    failed = BooleanProperty(False)
    saved_ok = BooleanProperty(False)  # the last action was recorded
    _ticker: Any = None  # updates the running time on site while the screen is shown

    def open(self, **params: Any) -> None:
        super().open(**params)
        self.message, self.saved_ok = "", False

    def on_enter(self, *_args: Any) -> None:
        self._ticker = Clock.schedule_interval(lambda _dt: self._update_time(), 30)

    def on_leave(self, *_args: Any) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None

    def refresh(self) -> None:
        if self.handheld is None or not self.job_id:
            return
        job = self.job = self.handheld.jobs.detail(self.job_id)
        customer, premise = job["customer"], job["premise"]
        self.number = job["number"]
        self.status_text = tr._("Status: {status}").format(status=labels.status(job["status"]))
        hazard_words = labels.hazards(premise.get("hazards"))
        self.hazards = tr._("HAZARDS: {hazards}").format(hazards=hazard_words) if hazard_words else ""
        self.vip = bool(customer.get("vip"))
        self.safety = customer.get("segment") == "safety"
        self.summary = job["summary"] or ""
        lines = [
            f"{labels.code_label(codes.JOB_TYPES, job['job_type'])} · "
            f"P{job['priority']} {labels.code_label(codes.PRIORITIES, job['priority'])}",
            tr._("Customer: {name}").format(name=customer.get("name", "?")),
            tr._("Phone: {phone}").format(phone=customer.get("phone") or "-"),
            tr._("Address: {address}").format(address=premise.get("address") or "?"),
        ]
        if premise.get("access_notes"):
            lines.append(tr._("Access: {notes}").format(notes=premise["access_notes"]))
        if job.get("scheduled_start"):
            lines.append(tr._("Scheduled: {when}").format(when=labels.when(job["scheduled_start"])))
        if job.get("resolution_code"):
            resolution = labels.code_label(codes.RESOLUTION_CODES, job["resolution_code"])
            lines.append(tr._("Resolution: {code}").format(code=resolution))
        self.facts = "\n".join(lines)
        self._update_time()
        self._build_actions(job)
        self._build_lists(job)

    def _update_time(self) -> None:
        job = getattr(self, "job", None)
        if job is None:
            return
        spent = job["time_on_site_ms"]
        if job["status"] == "on_site" and spent is not None:
            marks = [e for e in job["events"] if e["kind"] == "status" and e["round"] == job["round"]]
            last = max((labels.parse_time(e["recorded_at"]) for e in marks), default=None)
            if last is not None:
                spent += int((dt.datetime.now(dt.UTC) - last).total_seconds() * 1000)
            self.time_on_site = tr._("Time on site: {time} (running)").format(time=labels.duration(spent))
        else:
            self.time_on_site = tr._("Time on site: {time}").format(time=labels.duration(spent))

    def _build_actions(self, job: dict[str, Any]) -> None:
        actions = set(job["actions"])
        if job["status"] == "assigned" and not job["accepted"]:
            actions.add("accept")
        box = self.ids.actions
        box.clear_widgets()
        for action in labels.ACTION_ORDER:
            if action in actions:
                kind = "go" if action in FORWARD else ("danger" if action == "cannot_complete" else "secondary")
                button = FSButton(text=tr._(labels.ACTIONS[action]), kind=kind, height="64dp")
                button.action = action
                button.bind(on_release=lambda b: self.act(b.action))
                box.add_widget(button)
        if not actions:
            box.add_widget(FSLabel(text=tr._("Nothing more to do from the field."), color=(0.23, 0.23, 0.23, 1)))

    def _build_lists(self, job: dict[str, Any]) -> None:
        for box_id, kind, words in (
            ("materials", "material", lambda e: f"{e['quantity']:g} {e['unit']} {e['material_code']}"),
            ("notes", "note", lambda e: e["text"]),
            ("history", "status", lambda e: labels.status(e["status"])),
        ):
            box = self.ids[box_id]
            box.clear_widgets()
            for event in (e for e in job["events"] if e["kind"] == kind):
                pending = "  (" + tr._("not sent yet") + ")" if event.get("pending") else ""
                flagged = "  [" + tr._("flagged") + "]" if event.get("flags") else ""
                text = f"{labels.when(event['recorded_at'])}  {words(event)}{pending}{flagged}"
                box.add_widget(FSLabel(text=text, font_size="17sp"))

    # --- actions -------------------------------------------------------------------------------------

    def act(self, action: str) -> None:
        jobs = self.handheld.jobs
        if action in ("complete", "cannot_complete"):
            title = tr._("Complete job") if action == "complete" else tr._("Cannot complete")
            Picker(
                tr._("{title}: pick the resolution").format(title=title),
                labels.code_options(codes.RESOLUTION_CODES),
                lambda code, note: self._run(getattr(jobs, action), self.job_id, code, note or None),
                with_note=True,
            ).open()
            return
        if action == "hold":
            self._run(jobs.hold, self.job_id, self.ids.note.text.strip() or None)
            self.ids.note.text = ""
            return
        self._run({"accept": jobs.accept, "start_travel": jobs.start_travel, "arrive": jobs.arrive,
                   "resume": jobs.resume}[action], self.job_id)

    def add_note(self) -> None:
        if self._run(self.handheld.jobs.add_note, self.job_id, self.ids.note.text):
            self.ids.note.text = ""

    def add_material(self) -> None:
        try:
            quantity = float(self.ids.quantity.text or "0")
        except ValueError:
            quantity = 0.0
        if self._run(self.handheld.jobs.add_material, self.job_id, self.ids.material.text.strip(), quantity,
                     self.ids.unit.text.strip()):
            self.ids.material.text = self.ids.quantity.text = ""

    def _run(self, operation: Any, *args: Any) -> bool:
        """Call the core; its answer (or its error, in words) shows under the job."""
        try:
            operation(*args)
        except HandheldError as exc:
            self.message, self.failed, self.saved_ok = exc.message, True, False
            return False
        self.message, self.failed = "", False
        self.saved_ok = True
        self.app.changed()
        self.refresh()
        return True
