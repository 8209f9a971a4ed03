"""A small scope as the server sends it (pull records), and the helpers that feed records to a handheld
through the real code path (`SyncEngine._apply` inside one store transaction).

Every record is validated with `sync_protocol.load_record`, so the shapes here cannot drift from the
wire schemas the server is held to.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from pda_client.store import LocalStore
from pda_client.sync import SyncEngine
from pda_client.transport import Transport
from sync_protocol import HLC, HLCClock, load_record

USER_ID = "U-lena"
OFFICE_ID = "U-office"
USER = {"id": USER_ID, "name": "Lena Lineman", "role": "lineman"}
DEVICE_ID = "D-test-1"
TOKEN = "tok-test-1"
SERVER_NODE = "server"


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


def stamp(moment: dt.datetime, counter: int = 0, node: str = SERVER_NODE) -> str:
    """An HLC stamp (string form) at `moment`."""
    return str(HLC(ms(moment), counter, node))


def record(entity: str, record_id: str, data: dict[str, Any] | None = None, op: str = "upsert") -> dict[str, Any]:
    """One pull record, checked against the wire schema."""
    raw = {"entity": entity, "id": record_id, "op": op, "data": data}
    load_record(raw)  # raises if the shape is not what the server may send
    return raw


def removal(entity: str, record_id: str) -> dict[str, Any]:
    return record(entity, record_id, None, op="remove")


def customer(cid: str, name: str, *, segment: str = "standard", vip: bool = False) -> dict[str, Any]:
    return record(
        "customer",
        cid,
        {"account_no": f"AC-{cid}", "name": name, "phone": "+86 20 5555 0100", "segment": segment, "vip": vip},
    )


def premise(pid: str, customer_id: str, address: str, hazards: list[str] | None = None) -> dict[str, Any]:
    return record(
        "premise",
        pid,
        {
            "customer_id": customer_id,
            "address": address,
            "lat": 23.1,
            "lon": 113.3,
            "hazards": hazards or [],
            "access_notes": None,
        },
    )


def meter(
    mid: str,
    number: str,
    premise_id: str,
    seq: int,
    *,
    last_value: int,
    last_read_at: dt.datetime,
    dials: int = 5,
    multiplier: float = 1.0,
    avg_daily: float = 10.0,
    last_read_type: str = "regular",
    route_id: str = "R-1",
) -> dict[str, Any]:
    return record(
        "meter",
        mid,
        {
            "number": number,
            "premise_id": premise_id,
            "route_id": route_id,
            "route_seq": seq,
            "meter_class": "residential",
            "dials": dials,
            "multiplier": multiplier,
            "avg_daily": avg_daily,
            "low_factor": 0.5,
            "high_factor": 2.0,
            "last_value": last_value,
            "last_read_at": iso(last_read_at),
            "last_read_type": last_read_type,
            "consecutive_estimates": 1 if last_read_type == "estimated" else 0,
        },
    )


def route(rid: str, code: str, cycle_start: dt.date, meter_count: int) -> dict[str, Any]:
    return record(
        "route",
        rid,
        {
            "code": code,
            "name": "Riverside",
            "assigned_to": USER_ID,
            "cycle_start": cycle_start.isoformat(),
            "cycle_end": (cycle_start + dt.timedelta(days=30)).isoformat(),
            "meter_count": meter_count,
        },
    )


def job(
    jid: str,
    number: str,
    *,
    customer_id: str,
    premise_id: str,
    priority: int,
    scheduled_start: dt.datetime,
    created_at: dt.datetime,
    status: str = "assigned",
    status_hlc: str | None = None,
    summary: str = "No power at the premises",
    field_values: dict[str, tuple[Any, str]] | None = None,
    assigned_to: str | None = USER_ID,
) -> dict[str, Any]:
    """A job record; `field_values` maps editable fields to (value, stamp) as the server last merged them."""
    data: dict[str, Any] = {
        "number": number,
        "customer_id": customer_id,
        "premise_id": premise_id,
        "job_type": "outage",
        "summary": summary,
        "priority": priority,
        "assigned_to": assigned_to,
        "scheduled_start": iso(scheduled_start),
        "scheduled_end": iso(scheduled_start + dt.timedelta(hours=2)),
        "requires_signature": False,
        "created_at": iso(created_at),
        "status": status,
        "round": 1,
        "status_hlc": status_hlc,
        "field_hlc": {},
        "resolution_code": None,
        "cause": None,
        "resolution_note": None,
        "follow_up_needed": None,
        "contact_name": None,
    }
    for name, (value, field_stamp) in (field_values or {}).items():
        data[name] = value
        data["field_hlc"][name] = field_stamp
    return record("job", jid, data)


def status_event(
    eid: str, job_id: str, status: str, at: dt.datetime, hlc: str, *, source: str = "office", round_: int = 1
) -> dict[str, Any]:
    return record(
        "job_event",
        eid,
        {
            "job_id": job_id,
            "kind": "status",
            "status": status,
            "round": round_,
            "recorded_at": iso(at),
            "hlc": hlc,
            "author_id": OFFICE_ID if source == "office" else USER_ID,
            "source": source,
            "received_at": iso(at),
            "flags": [],
        },
    )


def reading_record(rid: str, meter_id: str, value: int, at: dt.datetime, hlc: str) -> dict[str, Any]:
    return record(
        "meter_reading",
        rid,
        {
            "meter_id": meter_id,
            "value": value,
            "reading_type": "regular",
            "skip_code": None,
            "trouble_code": None,
            "comment_code": None,
            "note": None,
            "read_at": iso(at),
            "supersedes": None,
            "gps": None,
            "check": None,
            "hlc": hlc,
            "reader_id": USER_ID,
            "received_at": iso(at),
            "flags": [],
        },
    )


class Scope:
    """The ids and the moments of the standard scope, and its records (server order: references first)."""

    # route R-1 in walk order; M-2 has rolled over before, M-3's last read was an estimate, M-4 has 4 dials
    METERS = ("M-1", "M-2", "M-3", "M-4")
    NUMBERS = {"M-1": "A0001", "M-2": "A0002", "M-3": "A0003", "M-4": "A0004"}

    def __init__(self, now: dt.datetime) -> None:
        self.now = now
        self.last_read_at = now - dt.timedelta(days=30)
        self.cycle_start = (now - dt.timedelta(days=2)).date()
        self.created_at = now - dt.timedelta(days=1)

    def job_events(self, job_id: str) -> list[dict[str, Any]]:
        created = self.created_at
        return [
            status_event(f"E-{job_id}-new", job_id, "new", created, stamp(created)),
            status_event(
                f"E-{job_id}-assigned",
                job_id,
                "assigned",
                created + dt.timedelta(minutes=5),
                self.assigned_hlc(job_id),
            ),
        ]

    def assigned_hlc(self, job_id: str) -> str:
        return stamp(self.created_at + dt.timedelta(minutes=5), 1 if job_id == "J-1" else 2)

    def job(self, job_id: str, **overrides: Any) -> dict[str, Any]:
        """J-1: emergency at the hospital (VIP, safety) scheduled later; J-2: normal priority, earlier,
        at the premises of meter M-2."""
        base: dict[str, Any] = (
            {
                "number": "J-1001",
                "customer_id": "C-2",
                "premise_id": "P-5",
                "priority": 1,
                "scheduled_start": self.now + dt.timedelta(hours=4),
            }
            if job_id == "J-1"
            else {
                "number": "J-1002",
                "customer_id": "C-1",
                "premise_id": "P-2",
                "priority": 3,
                "scheduled_start": self.now + dt.timedelta(hours=1),
            }
        )
        base.update(created_at=self.created_at, status_hlc=self.assigned_hlc(job_id))
        base.update(overrides)
        number = base.pop("number")
        return job(job_id, number, **base)

    def records(self) -> list[dict[str, Any]]:
        last = self.last_read_at
        return [
            customer("C-1", "Ann Lee"),
            customer("C-2", "City Hospital", segment="safety", vip=True),
            customer("C-3", "Bo Chen"),
            premise("P-1", "C-1", "1 Riverside Rd"),
            premise("P-2", "C-1", "3 Riverside Rd"),
            premise("P-3", "C-3", "5 Riverside Rd"),
            premise("P-4", "C-3", "7 Riverside Rd", hazards=["dog"]),
            premise("P-5", "C-2", "1 Hospital Way"),
            route("R-1", "RT-7", self.cycle_start, 4),
            meter("M-1", "A0001", "P-1", 10, last_value=12_000, last_read_at=last),
            meter("M-2", "A0002", "P-2", 20, last_value=99_900, last_read_at=last, multiplier=2.0),
            meter("M-3", "A0003", "P-3", 30, last_value=50_000, last_read_at=last, last_read_type="estimated"),
            meter("M-4", "A0004", "P-4", 40, last_value=5_000, last_read_at=last, dials=4),
            self.job("J-1"),
            *self.job_events("J-1"),
            self.job("J-2"),
            *self.job_events("J-2"),
        ]


def engine_for(store: LocalStore, clock: HLCClock, transport: Transport | None = None, **kwargs: Any) -> SyncEngine:
    """A sync engine over `store`; without a transport it can apply records but never reach a server."""
    return SyncEngine(store, transport or Transport("http://127.0.0.1:9"), clock, **kwargs)


def apply_records(store: LocalStore, clock: HLCClock, records: Iterable[dict[str, Any]]) -> SyncEngine:
    """Feed pulled records through the engine's own apply step, in one transaction as a pull page is."""
    engine = engine_for(store, clock)
    with store.transaction():
        engine._apply(list(records))
    engine.transport.session.close()
    return engine


def enrol_store(store: LocalStore, server_url: str = "http://127.0.0.1:9") -> None:
    """What a successful enrolment leaves in meta."""
    with store.transaction():
        store.set_meta("server_url", server_url)
        store.set_meta("device_id", DEVICE_ID)
        store.set_meta("token", TOKEN)
        store.set_meta("user_id", USER_ID)
        store.set_meta("user", USER)
        store.set_meta("cursor", "c-0")
        store.set_meta("snapshot_active", False)
