"""Server-side worlds for the sync benchmarks, written with the server's own services and models (as
tests/reliability/fleet_world.py does): one field user holding one long route (and, if asked, open jobs),
with one-time enrolment codes for the handhelds that will sync it."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from typing import Any

from server.extensions import db
from server.models import Customer, Meter, Premise, Route
from server.services import enrollment, office, users
from sync_protocol.codes import HAZARD_CODES, JOB_TYPES

BATCH = 5000  # rows per executemany
SUMMARIES = ("No power at premises", "Meter display blank", "Sagging service drop", "Annual safety inspection")


@dataclass
class RouteWorld:
    user_id: str
    route_id: str
    meters: int
    jobs: list[str] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)


def reader_route(
    rng: random.Random, *, meters: int, jobs: int = 0, codes: int = 1, username: str = "bench-reader"
) -> RouteWorld:
    """A meter reader with one route of `meters` meters (each with its premise and customer), last read 30
    days ago so a read made now falls in the hi/lo band; `jobs` open repair jobs at premises of the route
    assigned to the same user (a first sync downloads both); `codes` enrolment codes. Call inside the server's
    app context; the caller commits."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    user = users.create_user(username, "meter_reader", "Benchmark reader")
    db.session.flush()
    route_id = "BR0001"
    route = dict(
        id=route_id,
        code="BENCH-0001",
        name="Benchmark walk",
        assigned_to=user.id,
        cycle_start=(now - dt.timedelta(days=3)).date(),
        cycle_end=(now + dt.timedelta(days=25)).date(),
    )
    db.session.execute(db.insert(Route), [route])
    customers: list[dict[str, Any]] = []
    premises: list[dict[str, Any]] = []
    meter_rows: list[dict[str, Any]] = []
    for number in range(1, meters + 1):
        cid, pid = f"BC{number:07d}", f"BP{number:07d}"
        customers.append(
            dict(
                id=cid,
                account_no=f"8{number:09d}",
                name=f"Customer {number}",
                phone=f"+86 139 {number:08d}",
                segment="standard",
                vip=rng.random() < 0.01,
            )
        )
        premises.append(
            dict(
                id=pid,
                customer_id=cid,
                address=f"{number} Benchmark Road, Riverside",
                lat=31.2 + rng.random() / 10,
                lon=121.4 + rng.random() / 10,
                hazards=[code for code in HAZARD_CODES if rng.random() < 0.03],
                access_notes=None,
            )
        )
        meter_rows.append(
            dict(
                id=f"BM{number:07d}",
                number=f"B{number:08d}",
                premise_id=pid,
                route_id=route_id,
                route_seq=number * 10,
                meter_class="residential",
                dials=5,
                multiplier=1.0,
                avg_daily=round(rng.uniform(5, 30), 2),
                last_value=rng.randrange(1_000, 50_000),
                last_read_at=now - dt.timedelta(days=30),
                last_read_type="regular",
                consecutive_estimates=0,
            )
        )
    for model, rows in ((Customer, customers), (Premise, premises), (Meter, meter_rows)):
        for start in range(0, len(rows), BATCH):
            db.session.execute(db.insert(model), rows[start : start + BATCH])
    world = RouteWorld(user.id, route_id, meters)
    job_types = sorted(JOB_TYPES)
    for index in range(jobs if premises else 0):
        premise = premises[(index * 7919) % len(premises)]  # spread along the route
        job = office.create_job(
            customer_id=premise["customer_id"],
            premise_id=premise["id"],
            job_type=job_types[index % len(job_types)],
            summary=SUMMARIES[index % len(SUMMARIES)],
            priority=1 + index % 4,
            assigned_to=user.id,
        )
        world.jobs.append(job.id)
    db.session.flush()
    world.codes = [enrollment.issue_code(user, 24) for _ in range(codes)]
    return world
