"""Repair jobs on the handheld: the list, the detail, and the crew's actions along the lifecycle.

A job's status on the device is computed exactly as on the server: the maximum of its status events
(pulled and pending) by sync_protocol's lifecycle order; outcome fields are the pulled values with the
pending local edits merged on top. So what the crew sees is what the server will hold after sync, unless
someone else's change wins.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from sync_protocol import HLC, Actor, FieldEdit, HLCClock, JobState, Status, merge_field_edit
from sync_protocol.codes import RESOLUTION_CODES
from sync_protocol.lifecycle import allowed_next, time_on_site_ms
from sync_protocol.merge import Stamped, StatusMark
from sync_protocol.ownership import FIELD_EDITABLE_JOB_FIELDS
from sync_protocol.schemas import MAX_NOTE_CHARS

from .errors import InvalidInput, NotAllowed, NotFound
from .outbox import enqueue, fact_id, iso, utc_now
from .store import LocalStore, decode

FINISHED = {"completed", "cannot_complete", "closed", "cancelled"}
ACTIONS: Mapping[Status, str] = {
    Status.EN_ROUTE: "start_travel",
    Status.ON_SITE: "arrive",
    Status.ON_HOLD: "hold",
    Status.COMPLETED: "complete",
    Status.CANNOT_COMPLETE: "cannot_complete",
}


def _ms(text: str) -> int:
    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


class Jobs:
    def __init__(self, store: LocalStore, clock: HLCClock, now: Callable[[], dt.datetime] = utc_now) -> None:
        self.store = store
        self.clock = clock
        self.now = now

    # --- reading --------------------------------------------------------------------------------

    def list(self, include_finished: bool = False) -> list[dict[str, Any]]:
        """Open jobs first, by priority (1 = emergency) and schedule; VIP and safety customers marked."""
        rows = self.store.rows(
            """SELECT j.*, c.name AS customer_name, c.vip AS vip, c.segment AS segment, p.address AS address,
                      p.hazards AS hazards
               FROM jobs j LEFT JOIN customers c ON c.id = j.customer_id
               LEFT JOIN premises p ON p.id = j.premise_id
               ORDER BY j.status IN ('completed','cannot_complete','closed','cancelled'), j.priority,
                        COALESCE(j.scheduled_start, j.created_at), j.number"""
        )
        jobs = [decode("premises", decode("jobs", row)) for row in rows]
        for job in jobs:
            job["vip"] = bool(job["vip"])
            job["safety"] = job["segment"] == "safety"
        return [j for j in jobs if include_finished or j["status"] not in FINISHED]

    def find(self, ref: str) -> dict[str, Any]:
        rows = self.store.rows("SELECT * FROM jobs WHERE id = ? OR number = ?", [ref, ref])
        if not rows:
            raise NotFound(f"No job {ref} on this handheld.")
        return decode("jobs", rows[0])

    def detail(self, ref: str) -> dict[str, Any]:
        """The job with its customer, premise (hazards first), events, time on site and allowed actions."""
        job = self.find(ref)
        job["customer"] = self.store.get("customers", job["customer_id"]) or {}
        job["premise"] = self.store.get("premises", job["premise_id"]) or {}
        job["events"] = [
            decode("job_events", row)
            for row in self.store.rows(
                "SELECT * FROM job_events WHERE job_id = ? ORDER BY recorded_at, hlc", [job["id"]]
            )
        ]
        job["time_on_site_ms"] = self.time_on_site_ms(job)
        job["actions"] = sorted(ACTIONS[s] for s in allowed_next(Actor.FIELD, Status(job["status"])))
        if job["status"] == "on_hold":
            job["actions"] = sorted({*job["actions"], "resume"} - {"arrive"})
        job["accepted"] = any(e["kind"] == "accepted" for e in job["events"])
        return job

    def time_on_site_ms(self, job: Mapping[str, Any]) -> int | None:
        marks = [
            (Status(row["status"]), _ms(row["recorded_at"]))
            for row in self.store.rows(
                "SELECT status, recorded_at FROM job_events WHERE job_id = ? AND kind = 'status' AND round = ?",
                [job["id"], job["round"]],
            )
        ]
        return time_on_site_ms(marks)

    def state(self, job: Mapping[str, Any]) -> JobState:
        """The merge state of a job as the server last sent it, plus every status event held locally
        (pulled and pending). Pending field edits are not included: `refresh` merges them on top."""
        server = job.get("server_state") or {}
        fields = {name: Stamped(value, HLC.parse(stamp)) for name, (value, stamp) in server.get("fields", {}).items()}
        marks = {
            StatusMark.of(Status(r["status"]), r["round"], HLC.parse(r["hlc"]), Actor(r["source"]), r["id"])
            for r in self.store.rows(
                "SELECT id, status, round, hlc, source FROM job_events WHERE job_id = ? AND kind = 'status'",
                [job["id"]],
            )
        }
        if server.get("status_hlc"):
            # the server's current status, in case its event has not been pulled yet
            marks.add(
                StatusMark.of(
                    Status(server["status"]),
                    server["round"],
                    HLC.parse(server["status_hlc"]),
                    Actor.OFFICE,
                    "server",
                )
            )
        return JobState(job["id"], fields, frozenset(marks))

    # --- the crew's actions ---------------------------------------------------------------------

    def accept(self, ref: str) -> dict[str, Any]:
        job = self._open_job(ref)
        return self._event(job, {"kind": "accepted"})

    def start_travel(self, ref: str) -> dict[str, Any]:
        return self._move(ref, Status.EN_ROUTE)

    def arrive(self, ref: str, gps: Mapping[str, float] | None = None) -> dict[str, Any]:
        return self._move(ref, Status.ON_SITE, gps=gps)

    def hold(self, ref: str, reason: str | None = None) -> dict[str, Any]:
        with self.store.transaction():  # the hold and its reason together: a crash keeps both or neither
            event = self._move(ref, Status.ON_HOLD)
            if reason and reason.strip():  # a blank reason is no reason, not a refusal of the hold
                self.add_note(ref, reason)
        return event

    def resume(self, ref: str) -> dict[str, Any]:
        job = self.find(ref)
        if job["status"] != "on_hold":
            raise NotAllowed("Only a job on hold can be resumed.")
        return self._move(ref, Status.ON_SITE)

    def complete(self, ref: str, resolution_code: str, note: str | None = None) -> dict[str, Any]:
        return self._finish(ref, Status.COMPLETED, resolution_code, note)

    def cannot_complete(self, ref: str, resolution_code: str, note: str | None = None) -> dict[str, Any]:
        return self._finish(ref, Status.CANNOT_COMPLETE, resolution_code, note)

    def cancel(self, ref: str) -> None:
        """Crews do not cancel jobs: the service centre does (a job the crew cannot do is 'cannot complete')."""
        raise NotAllowed("Only the service centre can cancel a job. Use 'cannot complete' with a reason.")

    def add_note(self, ref: str, text: str) -> dict[str, Any]:
        text = (text or "").strip()
        if not text:
            raise InvalidInput("Write something in the note.", {"text": "empty"})
        if len(text) > MAX_NOTE_CHARS:
            raise InvalidInput(f"A note holds at most {MAX_NOTE_CHARS} characters.", {"text": "too long"})
        return self._event(self.find(ref), {"kind": "note", "text": text})

    def add_material(self, ref: str, material_code: str, quantity: float, unit: str) -> dict[str, Any]:
        if not material_code or len(material_code) > 40:
            raise InvalidInput("Give a material code (up to 40 characters).", {"material_code": "invalid"})
        if not 0 < quantity <= 1_000_000:
            raise InvalidInput("The quantity must be more than 0.", {"quantity": "invalid"})
        if not unit or len(unit) > 16:
            raise InvalidInput("Give a unit (e.g. m, pcs).", {"unit": "invalid"})
        return self._event(
            self.find(ref),
            {"kind": "material", "material_code": material_code, "quantity": float(quantity), "unit": unit},
        )

    def edit(self, ref: str, **values: Any) -> dict[str, Any]:
        """Edit outcome fields (resolution code, cause, note, follow-up, contact)."""
        unknown = set(values) - FIELD_EDITABLE_JOB_FIELDS
        if unknown:
            raise NotAllowed(f"These fields are changed only at the service centre: {', '.join(sorted(unknown))}.")
        if "resolution_code" in values and values["resolution_code"] not in RESOLUTION_CODES:
            raise InvalidInput("Pick a resolution code from the list.", {"resolution_code": "unknown"})
        job = self.find(ref)
        with self.store.transaction():
            stamps = job.get("field_hlc") or {}
            change = enqueue(
                self.store,
                self.clock,
                "job",
                job["id"],
                values,
                base={name: stamps.get(name) for name in values},
            )
            self.refresh(job["id"])
        return change

    # --- internals ------------------------------------------------------------------------------

    def _open_job(self, ref: str) -> dict[str, Any]:
        job = self.find(ref)
        if job["status"] in FINISHED:
            raise NotAllowed(f"Job {job['number']} is {job['status'].replace('_', ' ')}.")
        return job

    def _move(self, ref: str, target: Status, gps: Mapping[str, float] | None = None) -> dict[str, Any]:
        job = self.find(ref)
        current = Status(job["status"])
        if target not in allowed_next(Actor.FIELD, current):
            allowed = ", ".join(sorted(s.value.replace("_", " ") for s in allowed_next(Actor.FIELD, current)))
            raise NotAllowed(
                f"Job {job['number']} is {current.value.replace('_', ' ')}: "
                f"it can go to {allowed or 'no other status from the field'}."
            )
        data: dict[str, Any] = {"kind": "status", "status": target.value, "round": job["round"]}
        if gps:
            data["gps"] = dict(gps)
        return self._event(job, data)

    def _finish(self, ref: str, target: Status, resolution_code: str, note: str | None) -> dict[str, Any]:
        if resolution_code not in RESOLUTION_CODES:
            raise InvalidInput("Pick a resolution code from the list.", {"resolution_code": "unknown"})
        with self.store.transaction():
            values: dict[str, Any] = {"resolution_code": resolution_code}
            if note:
                values["resolution_note"] = note
            event = self._move(ref, target)
            self.edit(ref, **values)
        return event

    def _event(self, job: Mapping[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        data = {"job_id": job["id"], **data, "recorded_at": iso(self.now())}
        with self.store.transaction():
            stamp = self.clock.now()
            event_id = fact_id("E", stamp)
            enqueue(self.store, self.clock, "job_event", event_id, data, stamp=stamp)
            row = {
                "id": event_id,
                **data,
                "hlc": str(stamp),
                "source": "field",
                "author_id": self.store.meta("user_id"),
                "received_at": None,
                "flags": [],
                "pending": 1,
            }
            self.store.upsert("job_events", row)
            self.refresh(job["id"])
        return row

    def refresh(self, job_id: str) -> None:
        """Recompute a job's row: status from its status events, outcome fields with pending edits on top."""
        job = self.store.get("jobs", job_id)
        if job is None:
            return
        state = self.state(job)
        for entry in self.store.rows(
            "SELECT payload FROM outbox WHERE entity = 'job' AND entity_id = ? ORDER BY seq", [job_id]
        ):
            change = decode("outbox", entry)["payload"]
            base = {k: HLC.parse(v) if v else None for k, v in (change.get("base") or {}).items()}
            edit = FieldEdit(change["change_id"], job_id, HLC.parse(change["hlc"]), Actor.FIELD, change["data"], base)
            state = merge_field_edit(state, edit).state
        update: dict[str, Any] = {}
        current = state.current
        if current is not None:
            update.update(status=current.status.value, round=current.round, status_hlc=str(current.hlc))
        # A field no stamp covers holds the value last pulled (None if pulled before values were kept):
        # so a rejected local edit of a field the server never set does not linger on the device.
        pulled = (job.get("server_state") or {}).get("values") or {}
        for name in FIELD_EDITABLE_JOB_FIELDS:
            update[name] = state.fields[name].value if name in state.fields else pulled.get(name)
        update["field_hlc"] = {name: str(stamped.hlc) for name, stamped in state.fields.items()}
        self.store.update("jobs", job_id, update)
