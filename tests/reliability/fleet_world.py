"""The world a fleet simulation runs in: field users (meter readers with a short route each, linemen with
a few jobs each), one staff member for the office's actions, written into a fresh server database with
the server's own services. Small routes keep every device's scope a few hundred records, so a run spends
its time on field work and faults, not on downloads."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field

from server.extensions import db
from server.models import Customer, Meter, Premise, Route, User
from server.services import enrollment, office, users
from sync_protocol.codes import JOB_TYPES

STAFF_USERNAME = "sim-staff"
STAFF_PASSWORD = "sim-staff-password-1"  # a throwaway database: the office signs in through the real pages


@dataclass
class FieldUser:
    id: str
    username: str
    role: str  # lineman | meter_reader


@dataclass
class FleetWorld:
    readers: list[FieldUser] = field(default_factory=list)
    linemen: list[FieldUser] = field(default_factory=list)
    premises: list[tuple[str, str]] = field(default_factory=list)  # (customer_id, premise_id) for new jobs

    @property
    def field_users(self) -> list[FieldUser]:
        return self.readers + self.linemen


def build_fleet_world(
    rng: random.Random, *, readers: int, linemen: int, meters_per_route: int, jobs_per_lineman: int
) -> FleetWorld:
    """Create users, customers, premises, routes, meters and assigned jobs (the caller commits)."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    world = FleetWorld()
    users.create_user(STAFF_USERNAME, "staff", "Simulation office", STAFF_PASSWORD)
    for i in range(1, readers + 1):
        user = users.create_user(f"sim-reader{i}", "meter_reader", f"Reader {i}")
        world.readers.append(FieldUser(user.id, user.username, "meter_reader"))
    for i in range(1, linemen + 1):
        user = users.create_user(f"sim-lineman{i}", "lineman", f"Lineman {i}")
        world.linemen.append(FieldUser(user.id, user.username, "lineman"))
    db.session.flush()

    customers, premises, routes, meters = [], [], [], []
    number = 0
    # one route per reader, plus a few premises per lineman for their jobs
    blocks = [(reader, meters_per_route) for reader in world.readers] + [(None, 3) for _ in world.linemen]
    for index, (reader, size) in enumerate(blocks, start=1):
        route_id = f"SR{index:04d}" if reader else None
        if reader:
            routes.append(
                dict(
                    id=route_id,
                    code=f"SIM-{index:04d}",
                    name=f"Simulated walk {index}",
                    assigned_to=reader.id,
                    cycle_start=(now - dt.timedelta(days=3)).date(),
                    cycle_end=(now + dt.timedelta(days=25)).date(),
                )
            )
        for seq in range(1, size + 1):
            number += 1
            cid, pid, mid = f"SC{number:06d}", f"SP{number:06d}", f"SM{number:06d}"
            customers.append(dict(id=cid, account_no=f"9{number:09d}", name=f"Customer {number}", segment="standard"))
            premises.append(dict(id=pid, customer_id=cid, address=f"{number} Simulation Road", hazards=[]))
            world.premises.append((cid, pid))
            daily = rng.uniform(5, 30)
            meters.append(
                dict(
                    id=mid,
                    number=f"S{number:08d}",
                    premise_id=pid,
                    route_id=route_id,
                    route_seq=seq * 10 if reader else None,
                    meter_class="residential",
                    dials=5,
                    multiplier=1.0,
                    avg_daily=round(daily, 2),
                    last_value=rng.randrange(1_000, 50_000),
                    last_read_at=now - dt.timedelta(days=30),
                    last_read_type="regular",
                    consecutive_estimates=0,
                )
            )
    for model, rows in ((Customer, customers), (Premise, premises), (Route, routes), (Meter, meters)):
        db.session.execute(db.insert(model), rows)
    for lineman in world.linemen:
        for _ in range(jobs_per_lineman):
            new_job(rng, world, lineman.id)
    return world


def new_job(rng: random.Random, world: FleetWorld, assignee: str, actor_id: str | None = None) -> str:
    customer_id, premise_id = rng.choice(world.premises)
    job = office.create_job(
        customer_id=customer_id,
        premise_id=premise_id,
        job_type=rng.choice(sorted(JOB_TYPES)),
        summary=f"Simulated job for {assignee}",
        priority=rng.randint(1, 4),
        assigned_to=assignee,
        actor_id=actor_id,
    )
    return job.id


def enrollment_codes(world: FleetWorld, devices_per_user: dict[str, int]) -> dict[str, list[str]]:
    """One-time codes, `devices_per_user[user_id]` per field user (the caller commits)."""
    codes: dict[str, list[str]] = {}
    for user in world.field_users:
        model = db.session.get(User, user.id)
        codes[user.id] = [enrollment.issue_code(model, 24) for _ in range(devices_per_user.get(user.id, 1))]
    return codes
