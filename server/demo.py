"""Realistic, deterministic demo data for `make run` and manual testing.

Consumption is heavy-tailed (log-normal, with a few industrial sites), so ABC analysis is meaningful;
routes hold 200-500 meters in walk order; the last cycle's reads and three months of history exist;
jobs span the whole lifecycle with field events at plausible times.
"""

from __future__ import annotations

import datetime as dt
import random
import secrets
from pathlib import Path
from typing import Any

import click
from flask import current_app
from sqlalchemy import insert

from sync_protocol import codes
from sync_protocol.lifecycle import Status

from .extensions import db
from .models import Customer, JobEvent, Meter, MeterReading, Premise, Route, User
from .services import office, users
from .services.clock import now_hlc
from .services.ids import new_id
from .services.jobstate import load_state, store_state

DEMO_READER = "reader1"
DEMO_LINEMAN = "lineman1"
DEMO_ADMIN_USERNAME = "admin"

SURNAMES = [
    "Wang",
    "Li",
    "Zhang",
    "Liu",
    "Chen",
    "Yang",
    "Huang",
    "Zhao",
    "Wu",
    "Zhou",
    "Xu",
    "Sun",
    "Ma",
    "Zhu",
]
GIVEN = [
    "Wei",
    "Fang",
    "Min",
    "Jing",
    "Lei",
    "Qiang",
    "Yan",
    "Jun",
    "Hui",
    "Ping",
    "Gang",
    "Xia",
    "Tao",
    "Ying",
]
STREETS = [
    "Renmin Rd",
    "Jiefang Ave",
    "Zhongshan Rd",
    "Heping St",
    "Xinhua Rd",
    "Jianshe Rd",
    "Changjiang Rd",
    "Huanghe St",
    "Dongfeng Rd",
    "Wenhua St",
    "Gongyuan Rd",
    "Binhe Ave",
]
DISTRICTS = [
    "Riverside",
    "Old Town",
    "North Hills",
    "Harbour",
    "University",
    "Industrial Park",
    "East Gate",
    "Lakeside",
]
SAFETY_SITES = [
    "City Hospital",
    "Water Works",
    "Substation Control",
    "Fire Station",
    "Children's Hospital",
    "Pumping Station",
    "Emergency Call Centre",
]


def credentials_path() -> Path:
    return Path(current_app.instance_path) / "demo-credentials.txt"


def demo_admin_password() -> str:
    """The demo admin's password: random per instance, kept in the instance folder (never in git)."""
    path = credentials_path()
    if not path.exists():
        path.write_text(secrets.token_urlsafe(9))
        path.chmod(0o600)
    return path.read_text().strip()


def _user(username: str, name: str, role: str, password: str | None = None) -> User:
    return users.create_user(username, role, name, password)


def seed_demo(*, seed: int, customers: int, jobs: int, progress: bool = False) -> dict[str, int]:
    rng = random.Random(seed)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    today = now.date()
    cycle_start = today.replace(day=1)
    previous_cycle = (cycle_start - dt.timedelta(days=1)).replace(day=1)

    _user(DEMO_ADMIN_USERNAME, "Demo Administrator", "admin", demo_admin_password())
    for i in range(1, 4):
        _user(
            f"staff{i}",
            f"{rng.choice(SURNAMES)} {rng.choice(GIVEN)} (service centre)",
            "staff",
            secrets.token_urlsafe(12),
        )
    linemen = [_user(f"lineman{i}", f"{rng.choice(SURNAMES)} {rng.choice(GIVEN)}", "lineman") for i in range(1, 9)]
    db.session.flush()

    customer_rows: list[dict[str, Any]] = []
    premise_rows: list[dict[str, Any]] = []
    meter_rows: list[dict[str, Any]] = []
    for i in range(1, customers + 1):
        cid = f"C{i:06d}"
        roll = rng.random()
        if roll < 0.01:
            segment, name, meter_class, daily = (
                "safety",
                f"{rng.choice(SAFETY_SITES)} {rng.choice(DISTRICTS)}",
                "industrial",
                rng.lognormvariate(7.5, 0.5),
            )
        elif roll < 0.04:
            segment, name, meter_class, daily = (
                "profit",
                f"{rng.choice(SURNAMES)} Manufacturing Co.",
                "industrial",
                rng.lognormvariate(6.5, 0.8),
            )
        elif roll < 0.20:
            segment, name, meter_class, daily = (
                "profit",
                f"{rng.choice(SURNAMES)}'s {rng.choice(['Shop', 'Restaurant', 'Clinic', 'Hotel', 'Market'])}",
                "commercial",
                rng.lognormvariate(4.2, 0.7),
            )
        elif roll < 0.30:
            segment, name, meter_class, daily = (
                "social",
                f"{rng.choice(SURNAMES)} {rng.choice(GIVEN)} (welfare tariff)",
                "residential",
                rng.lognormvariate(1.8, 0.5),
            )
        else:
            segment, name, meter_class, daily = (
                "standard",
                f"{rng.choice(SURNAMES)} {rng.choice(GIVEN)}",
                "residential",
                rng.lognormvariate(2.3, 0.6),
            )
        vip = segment == "safety" or (segment == "profit" and rng.random() < 0.08)
        customer_rows.append(
            dict(
                id=cid,
                account_no=f"{4100000000 + i}",
                name=name,
                phone=f"+86 139 {rng.randrange(10**7, 10**8)}",
                segment=segment,
                vip=vip,
            )
        )
        district = rng.randrange(len(DISTRICTS))
        pid = f"P{i:06d}"
        hazards = [code for code in codes.HAZARD_CODES if rng.random() < 0.03]
        premise_rows.append(
            dict(
                id=pid,
                customer_id=cid,
                address=f"{rng.randrange(1, 400)} {rng.choice(STREETS)}, {DISTRICTS[district]}",
                lat=31.2 + district * 0.01 + rng.random() * 0.01,
                lon=121.4 + rng.random() * 0.05,
                hazards=hazards,
                access_notes="Gate code 4711" if rng.random() < 0.05 else None,
            )
        )
        dials = 6 if meter_class != "residential" else 5
        last = rng.randrange(0, 10**dials)
        meter_rows.append(
            dict(
                id=f"M{i:06d}",
                number=f"{rng.choice('ABEK')}{rng.randrange(10**7, 10**8)}",
                premise_id=pid,
                route_id=None,
                route_seq=None,
                meter_class=meter_class,
                dials=dials,
                multiplier=1.0 if meter_class == "residential" else rng.choice([1.0, 10.0]),
                avg_daily=round(daily, 2),
                last_value=None,
                last_read_at=None,
                last_read_type=None,
                consecutive_estimates=0,
                _district=district,
                _start=last,
            )
        )
    # routes: meters grouped by district, then split into walks of 200-500 meters (only a demo of
    # fewer than 200 meters has a shorter route: all of them)
    meter_rows.sort(key=lambda m: (m["_district"], m["premise_id"]))
    route_rows: list[dict[str, Any]] = []
    readers: list[User] = []
    index = 0
    while index < len(meter_rows):
        size = rng.randrange(200, 501)
        remaining = len(meter_rows) - index
        if remaining - size < 200:  # never leave a tail shorter than a walk: take it, or halve the rest
            size = remaining if remaining <= 500 else remaining // 2
        number = len(route_rows) + 1
        reader = _user(f"reader{number}", f"{rng.choice(SURNAMES)} {rng.choice(GIVEN)}", "meter_reader")
        readers.append(reader)
        rid = f"R{number:03d}"
        district = DISTRICTS[meter_rows[index]["_district"]]
        route_rows.append(
            dict(
                id=rid,
                code=f"RT-{number:03d}",
                name=f"{district} walk {number}",
                assigned_to=None,
                cycle_start=cycle_start,
                cycle_end=(cycle_start + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1),
            )
        )
        for seq, meter in enumerate(meter_rows[index : index + size], start=1):
            meter["route_id"], meter["route_seq"] = rid, seq * 10
        index += size
    db.session.flush()

    # three cycles of history: actual reads, some estimates, some skips
    reading_rows: list[dict[str, Any]] = []
    months = [
        (previous_cycle - dt.timedelta(days=62)).replace(day=1),
        (previous_cycle - dt.timedelta(days=31)).replace(day=1),
        previous_cycle,
    ]
    bar = click.progressbar(meter_rows, label="meters and reading history") if progress else None
    iterator = bar if bar is not None else meter_rows
    if bar is not None:
        bar.__enter__()
    try:
        for meter in iterator:
            value = meter.pop("_start")
            meter.pop("_district")
            limit = 10 ** meter["dials"]
            previous_type = None
            for month in months:
                read_at = dt.datetime.combine(
                    month + dt.timedelta(days=rng.randrange(2, 9)),
                    dt.time(9 + rng.randrange(8), rng.randrange(60)),
                    dt.UTC,
                )
                used = int(meter["avg_daily"] * 30 * rng.uniform(0.8, 1.25) / meter["multiplier"])
                value = (value + used) % limit
                kind = "estimated" if rng.random() < 0.04 else "regular"
                reading_rows.append(
                    dict(
                        id=new_id("MR"),
                        meter_id=meter["id"],
                        route_id=meter["route_id"],
                        reader_id=None,
                        device_id=None,
                        value=value,
                        reading_type=kind,
                        skip_code=None,
                        trouble_code=None,
                        comment_code=None,
                        note=None,
                        read_at=read_at,
                        supersedes=None,
                        superseded_by=None,
                        gps=None,
                        check=None,
                        check_result="in_range",
                        consumption=used * meter["multiplier"],
                        rollover=False,
                        hlc=str(now_hlc()),
                        received_at=read_at,
                        flags=[],
                    )
                )
                meter["last_value"], meter["last_read_at"], meter["last_read_type"] = value, read_at, kind
                meter["consecutive_estimates"] = (
                    meter["consecutive_estimates"] + 1
                    if kind == previous_type == "estimated"
                    else int(kind == "estimated")
                )
                previous_type = kind
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)

    db.session.execute(insert(Customer), customer_rows)
    db.session.execute(insert(Premise), premise_rows)
    db.session.execute(insert(Route), route_rows)
    db.session.execute(insert(Meter), meter_rows)
    for start in range(0, len(reading_rows), 5000):
        db.session.execute(insert(MeterReading), reading_rows[start : start + 5000])
    db.session.flush()
    for route_row, reader in zip(route_rows, readers, strict=True):
        route = db.session.get(Route, route_row["id"])
        office.assign_route(route, reader.id)

    created_jobs = _seed_jobs(rng, jobs, customer_rows, linemen, now)
    db.session.commit()
    return {
        "customers": len(customer_rows),
        "meters": len(meter_rows),
        "routes": len(route_rows),
        "readings": len(reading_rows),
        "jobs": created_jobs,
        "users": 4 + len(linemen) + len(readers),
    }


SUMMARIES = {
    "outage": ["No power at premises", "Partial outage, half the street dark", "Power out after storm"],
    "line_repair": [
        "Sagging service drop over driveway",
        "Tree branch on low-voltage line",
        "Damaged pole after collision",
    ],
    "meter_fault": ["Meter display blank", "Customer disputes high bill, check meter", "Meter seal broken"],
    "connection": ["New connection for extension", "Temporary supply for construction site"],
    "disconnection": ["Disconnect at customer's request (moving out)"],
    "inspection": ["Annual safety inspection", "Planned-outage notice and inspection for VIP site"],
    "complaint": ["Voltage flicker complaint", "Complaint about late repair", "Noise from transformer"],
}


def _field_status(job: Any, status: Status, at: dt.datetime, author: str) -> None:
    event = JobEvent(
        id=new_id("E"),
        job_id=job.id,
        kind="status",
        status=status.value,
        round=job.round,
        recorded_at=at,
        hlc=str(now_hlc()),
        source="field",
        author_id=author,
        received_at=at,
        flags=[],
    )
    db.session.add(event)
    db.session.flush()
    store_state(job, load_state(job))


def _seed_jobs(
    rng: random.Random, count: int, customers: list[dict[str, Any]], linemen: list[User], now: dt.datetime
) -> int:
    vip_first = sorted(customers, key=lambda c: (not c["vip"], rng.random()))
    for n in range(count):
        customer = vip_first[n % 40] if n < 60 else rng.choice(customers)
        job_type = rng.choice(list(SUMMARIES))
        created = now - dt.timedelta(days=rng.uniform(0, 45), hours=rng.uniform(0, 8))
        priority = (
            1
            if job_type == "outage" and rng.random() < 0.5
            else (2 if customer["vip"] else rng.choice([2, 3, 3, 3, 4]))
        )
        lineman = rng.choice(linemen)
        job = office.create_job(
            customer_id=customer["id"],
            premise_id="P" + customer["id"][1:],
            job_type=job_type,
            summary=rng.choice(SUMMARIES[job_type]),
            priority=priority,
            created_at=created,
            scheduled_start=created + dt.timedelta(hours=rng.choice([1, 2, 4, 24])),
            requires_signature=job_type in ("connection", "disconnection"),
        )
        age_days = (now - created).days
        if age_days < 1 and rng.random() < 0.5:
            continue  # still new, waiting for dispatch
        office.assign_job(job, lineman.id)
        if age_days < 2 and rng.random() < 0.6:
            continue  # assigned, not started
        t = created + dt.timedelta(minutes=rng.uniform(20, 240) * (0.5 if priority == 1 else 1))
        _field_status(job, Status.EN_ROUTE, t, lineman.id)
        t += dt.timedelta(minutes=rng.uniform(10, 60))
        _field_status(job, Status.ON_SITE, t, lineman.id)
        if rng.random() < 0.15:
            t += dt.timedelta(minutes=rng.uniform(10, 40))
            _field_status(job, Status.ON_HOLD, t, lineman.id)
            t += dt.timedelta(minutes=rng.uniform(10, 90))
            _field_status(job, Status.ON_SITE, t, lineman.id)
        if age_days < 1:
            continue  # on site now
        t += dt.timedelta(minutes=rng.uniform(20, 180))
        outcome = Status.COMPLETED if rng.random() < 0.88 else Status.CANNOT_COMPLETE
        _field_status(job, outcome, t, lineman.id)
        job.resolution_code = (
            rng.choice(["repaired", "replaced", "no_fault_found"]) if outcome is Status.COMPLETED else "no_access"
        )
        job.field_hlc = {"resolution_code": str(now_hlc())}
        if age_days > 7 and rng.random() < 0.7:
            office.close_job(job)
    return count
