"""A small, fixed world for server tests, and a handheld speaking the protocol through a test client."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any

from flask.testing import FlaskClient
from werkzeug.security import generate_password_hash

from server.extensions import db
from server.models import Customer, Meter, Premise, Route, User
from server.services import enrollment, office
from sync_protocol import PROTOCOL_HEADER, PROTOCOL_VERSION, HLCClock

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
CYCLE_START = (NOW - dt.timedelta(days=3)).date()
LAST_READ_AT = NOW - dt.timedelta(days=33)


@dataclass
class World:
    users: dict[str, str]  # username -> id
    jobs: dict[str, str]  # name -> job id
    meters: list[str]  # route R1 in walk order
    other_meters: list[str]  # route R2 (another reader)
    routes: dict[str, str] = field(default_factory=dict)


def _user(username: str, role: str) -> User:
    user = User(
        id=f"U-{username}",
        username=username,
        display_name=username.title(),
        role=role,
        password_hash=generate_password_hash("pw-" + username) if role in ("staff", "admin") else None,
    )
    db.session.add(user)
    return user


def build_world() -> World:
    users = {
        u.username: u.id
        for u in [
            _user("reader", "meter_reader"),
            _user("reader2", "meter_reader"),
            _user("lineman", "lineman"),
            _user("lineman2", "lineman"),
            _user("staff", "staff"),
            _user("admin", "admin"),
        ]
    }
    db.session.flush()
    for i in range(1, 7):
        db.session.add(
            Customer(
                id=f"C{i}",
                account_no=f"41000{i}",
                name=f"Customer {i}",
                phone=None,
                segment="safety" if i == 1 else "standard",
                vip=i == 1,
            )
        )
        db.session.add(
            Premise(
                id=f"P{i}",
                customer_id=f"C{i}",
                address=f"{i} Renmin Rd",
                lat=None,
                lon=None,
                hazards=["dog"] if i == 2 else [],
                access_notes=None,
            )
        )
    db.session.flush()
    routes = {
        "R1": Route(id="R1", code="RT-1", name="Riverside", cycle_start=CYCLE_START),
        "R2": Route(id="R2", code="RT-2", name="Old Town", cycle_start=CYCLE_START),
    }
    db.session.add_all(routes.values())
    db.session.flush()
    meters, other = [], []
    for i in range(1, 7):
        route = "R1" if i <= 4 else "R2"
        meter = Meter(
            id=f"M{i}",
            number=f"A{i:07d}",
            premise_id=f"P{i}",
            route_id=route,
            route_seq=i * 10,
            meter_class="residential",
            dials=5,
            multiplier=1.0,
            avg_daily=10.0,
            last_value=99_500 if i == 3 else 1000,
            last_read_at=LAST_READ_AT,
            last_read_type="regular",
            consecutive_estimates=0,
        )
        db.session.add(meter)
        (meters if route == "R1" else other).append(meter.id)
    db.session.flush()
    office.assign_route(routes["R1"], users["reader"])
    office.assign_route(routes["R2"], users["reader2"])
    jobs = {}
    for name, customer, assignee in (("outage", 1, "lineman"), ("repair", 2, "lineman"), ("other", 3, "lineman2")):
        job = office.create_job(
            customer_id=f"C{customer}",
            premise_id=f"P{customer}",
            job_type="outage",
            summary=f"{name} job",
            priority=2,
            assigned_to=users[assignee],
            job_id=f"J-{name}",
            number=f"J-{name.upper()}",
        )
        jobs[name] = job.id
    db.session.commit()
    return World(users, jobs, meters, other, {"R1": "R1", "R2": "R2"})


def enrol(client: FlaskClient, username: str, device_name: str = "handheld") -> Handheld:
    """Issue a code for `username` (as an administrator would) and enrol through the API."""
    user = db.session.execute(db.select(User).where(User.username == username)).scalar_one()
    code = enrollment.issue_code(user, 24)
    db.session.commit()
    response = client.post("/api/v1/devices/enroll", json={"code": code, "device_name": device_name})
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    return Handheld(client, body["device_id"], body["token"], user.id)


@dataclass
class Handheld:
    client: FlaskClient
    device_id: str
    token: str
    user_id: str
    cursor: str | None = None
    clock: HLCClock = field(default_factory=lambda: HLCClock(f"dev-{uuid.uuid4().hex[:8]}"))

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", PROTOCOL_HEADER: str(PROTOCOL_VERSION)}

    def hello(self) -> Any:
        return self.client.get("/api/v1/sync/hello", headers=self.headers)

    def push(self, *changes: dict[str, Any], batch_id: str | None = None) -> Any:
        body = {"protocol": PROTOCOL_VERSION, "batch_id": batch_id or uuid.uuid4().hex, "changes": list(changes)}
        return self.client.post("/api/v1/sync/push", json=body, headers=self.headers)

    def pull_all(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Pull pages until has_more is false; returns every record, advancing the cursor."""
        records: list[dict[str, Any]] = []
        while True:
            query = {k: v for k, v in (("cursor", self.cursor), ("limit", limit)) if v}
            response = self.client.get("/api/v1/sync/pull", query_string=query, headers=self.headers)
            assert response.status_code == 200, response.get_json()
            body = response.get_json()
            records.extend(body["records"])
            self.cursor = body["cursor"]
            if not body["has_more"]:
                return records

    # change builders --------------------------------------------------------------------------
    def change(self, entity: str, entity_id: str, data: dict[str, Any], base: dict | None = None) -> dict[str, Any]:
        change = {
            "change_id": uuid.uuid4().hex,
            "entity": entity,
            "entity_id": entity_id,
            "hlc": str(self.clock.now()),
            "data": data,
        }
        if base is not None:
            change["base"] = base
        return change

    def reading(self, meter_id: str, value: int | None, **extra: Any) -> dict[str, Any]:
        data = {"meter_id": meter_id, "value": value, "read_at": _iso(NOW), **extra}
        return self.change("meter_reading", f"MR-{uuid.uuid4().hex[:12]}", data)

    def status(self, job_id: str, status: str, round_: int = 1) -> dict[str, Any]:
        data = {"job_id": job_id, "kind": "status", "status": status, "round": round_, "recorded_at": _iso(NOW)}
        return self.change("job_event", f"E-{uuid.uuid4().hex[:12]}", data)

    def note(self, job_id: str, text: str) -> dict[str, Any]:
        data = {"job_id": job_id, "kind": "note", "text": text, "recorded_at": _iso(NOW)}
        return self.change("job_event", f"E-{uuid.uuid4().hex[:12]}", data)


def _iso(value: dt.datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")
