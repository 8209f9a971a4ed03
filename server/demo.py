"""Realistic, deterministic demo data for `make run`, manual testing and the page-speed checks.

What it makes (the same for the same --seed, as of the current hour):
- customers with heavy-tailed consumption (log-normal, a few industrial and safety-critical sites), so ABC
  analysis is meaningful; one premise and one meter each;
- routes of 200-500 meters in walk order, one meter reader each, read on fixed days of every monthly cycle;
- `months` cycles of reading history and the current cycle in progress: regular reads, skips (more often
  where a dog lives), the billing system's estimates after a skip, out-of-range reads confirmed by a second
  entry or a remark, trouble codes, register rollovers, corrections that supersede a mistyped read. The hi/lo
  check, consumption and rollover come from sync_protocol.readings, as on the server. The demo reader's
  route (`reader1`) is due today and still unread in the current cycle, so an enrolled handheld has a walk
  to do;
- a handheld for every field user (one flagged for a clock 7 minutes ahead, one revoked after it was lost);
- repair jobs and complaints (job_type "complaint") across the same months, with every status event at a
  plausible time: dispatch, acceptance, travel, arrival, holds, notes, materials, completion or not, the
  office's review; some returned to the field (a second round), some cancelled with the crew's work kept as
  conflicts, and concurrent edits where the crew's value lost. Each job's stored status is the merge of its
  status events (sync_protocol's JobState), exactly as a sync would leave it.

Everything is written with bulk `insert(table)` statements in batches (executemany): at 100k readings and
10k jobs the per-record office services would take minutes. Nothing is put in the change log: a handheld's
first sync is a snapshot of its scope (services/pull.py), so data that no device has seen needs no feed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from flask import current_app
from sqlalchemy import Table, insert

from sync_protocol import HLC, Actor, JobState, Status
from sync_protocol.codes import HAZARD_CODES
from sync_protocol.merge import StatusMark
from sync_protocol.readings import CheckResult, consumption, expected_band, register_limit

from .database import analyze
from .extensions import db
from .models import ConflictRecord, Customer, Device, Job, JobEvent, Meter, MeterReading, Premise, Route, User
from .services import users
from .services.records import reading_factors

DEMO_READER = "reader1"
DEMO_LINEMAN = "lineman1"
DEMO_ADMIN_USERNAME = "admin"
LINEMEN = 8

# Sizes people ask for: `seed-demo --scale large` is the size the service-centre pages must stay fast on.
SCALES: dict[str, dict[str, int]] = {
    "demo": {"customers": 3000, "jobs": 400, "months": 3},
    "large": {"customers": 10_000, "jobs": 10_000, "months": 10},
}
BATCH = 5000  # rows per executemany

SURNAMES = ["Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou", "Xu", "Sun", "Ma", "Zhu"]
GIVEN = ["Wei", "Fang", "Min", "Jing", "Lei", "Qiang", "Yan", "Jun", "Hui", "Ping", "Gang", "Xia", "Tao", "Ying"]
STREETS = [
    "Renmin Rd", "Jiefang Ave", "Zhongshan Rd", "Heping St", "Xinhua Rd", "Jianshe Rd",
    "Changjiang Rd", "Huanghe St", "Dongfeng Rd", "Wenhua St", "Gongyuan Rd", "Binhe Ave",
]  # fmt: skip
DISTRICTS = [
    "Riverside", "Old Town", "North Hills", "Harbour", "University", "Industrial Park", "East Gate", "Lakeside",
]  # fmt: skip
SAFETY_SITES = [
    "City Hospital", "Water Works", "Substation Control", "Fire Station", "Children's Hospital",
    "Pumping Station", "Emergency Call Centre",
]  # fmt: skip

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
    "complaint": [
        "Voltage flicker complaint",
        "Complaint about late repair",
        "Noise from transformer",
        "Complaint: estimated bill too high",
        "Complaint: crew left site untidy",
    ],
}
JOB_TYPE_WEIGHTS = {
    "outage": 24, "line_repair": 14, "meter_fault": 14, "connection": 9,
    "disconnection": 5, "inspection": 10, "complaint": 24,
}  # fmt: skip
NOTES = [
    "Customer not home, spoke to neighbour",
    "Replaced the fuse, supply restored",
    "Needs a bucket truck: pole top damage",
    "Waiting for the customer to clear access",
    "Explained the bill; meter tested OK",
    "Vegetation cleared from the line",
    "Loose neutral tightened at the service head",
]
MATERIALS = [("FUSE-63A", 2, "pcs"), ("CABLE-16MM", 12.5, "m"), ("CONNECTOR-IPC", 4, "pcs"), ("SEAL-M", 1, "pcs")]
CAUSES = ["storm damage", "ageing equipment", "vegetation", "third-party damage", "overload", "customer equipment"]
OFFICE_CAUSES = ["storm damage (confirmed by dispatch)", "third-party damage (police report)"]
TROUBLE = ["broken_glass", "seal_missing", "dial_damaged", "leaking", "tamper"]
SKIPS = ["locked_gate", "no_access", "meter_obstructed", "customer_refused", "extreme_weather"]
PLATFORMS = [("android-11", "1.4.2"), ("android-13", "1.4.2"), ("android-13", "1.3.0"), ("windows-10-iot", "1.4.2")]
OFFICE_NODE = "srv-demo0001"
BILLING_NODE = "srv-billing1"


def credentials_path() -> Path:
    return Path(current_app.instance_path) / "demo-credentials.txt"


def demo_admin_password() -> str:
    """The demo admin's password: random per instance, kept in the instance folder (never in git)."""
    path = credentials_path()
    if not path.exists():
        path.write_text(secrets.token_urlsafe(9))
        path.chmod(0o600)
    return path.read_text().strip()


@dataclass
class _World:
    """What the later steps need from the earlier ones."""

    rng: random.Random
    now: dt.datetime
    cycles: list[dt.date]  # first day of each cycle, oldest first; the last one is the current cycle
    staff: list[str] = field(default_factory=list)
    linemen: list[str] = field(default_factory=list)
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)  # user id -> its current handheld
    device_rows: list[dict[str, Any]] = field(default_factory=list)  # inserted last: work sets their sync times
    customers: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def id(self, prefix: str) -> str:
        return f"{prefix}-{self.rng.getrandbits(64):016x}"


def seed_demo(
    *,
    seed: int,
    customers: int,
    jobs: int,
    months: int = 3,
    progress: bool = False,
    as_of: dt.datetime | None = None,
) -> dict[str, int]:
    """Fill an empty database with demo data (see the module's docstring) and commit. `months` full
    reading cycles of history precede the current one. Returns how many of each thing were made.
    The world is built as of `as_of` (default: the current hour): the same seed and `as_of` make the
    same data."""
    rng = random.Random(seed)
    now = (as_of or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
    current = now.date().replace(day=1)
    cycles = [current]
    for _ in range(months):
        cycles.insert(0, (cycles[0] - dt.timedelta(days=1)).replace(day=1))
    world = _World(rng, now, cycles)
    with _progress(progress, customers + jobs) as advance:
        _people(world)
        meters, routes, readers = _reference_data(world, customers)
        _devices(world, readers)
        _reading_history(world, meters, routes, advance)
        _jobs(world, jobs, advance)
        _insert(Device, world.device_rows)
    db.session.commit()
    analyze()  # a bulk load makes the planner's statistics stale (or leaves none)
    return world.counts


# --- people, customers, routes -----------------------------------------------------------------------------


def _people(world: _World) -> None:
    rng = world.rng
    users.create_user(DEMO_ADMIN_USERNAME, "admin", "Demo Administrator", demo_admin_password())
    for i in range(1, 4):
        name = f"{rng.choice(SURNAMES)} {rng.choice(GIVEN)} (service centre)"
        world.staff.append(users.create_user(f"staff{i}", "staff", name, secrets.token_urlsafe(12)).id)
    for i in range(1, LINEMEN + 1):
        name = f"{rng.choice(SURNAMES)} {rng.choice(GIVEN)}"
        world.linemen.append(users.create_user(f"lineman{i}", "lineman", name).id)
    db.session.flush()
    world.counts["users"] = 4 + LINEMEN


def _reference_data(world: _World, count: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[User]]:
    """Customers, premises, routes (with their readers) and meters; customers, premises and routes are
    inserted, meters returned for the reading history (which sets their billing base)."""
    rng = world.rng
    customer_rows: list[dict[str, Any]] = []
    premise_rows: list[dict[str, Any]] = []
    meter_rows: list[dict[str, Any]] = []
    numbers: set[str] = set()  # random meter numbers collide by some 20,000 meters: draw again
    for i in range(1, count + 1):
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
        hazards = [code for code in HAZARD_CODES if rng.random() < 0.03]
        lat, lon = 31.2 + district * 0.01 + rng.random() * 0.01, 121.4 + rng.random() * 0.05
        premise_rows.append(
            dict(
                id=pid,
                customer_id=cid,
                address=f"{rng.randrange(1, 400)} {rng.choice(STREETS)}, {DISTRICTS[district]}",
                lat=lat,
                lon=lon,
                hazards=hazards,
                access_notes="Gate code 4711" if rng.random() < 0.05 else None,
            )
        )
        dials = 6 if meter_class != "residential" else 5
        number = f"{rng.choice('ABEK')}{rng.randrange(10**7, 10**8)}"
        while number in numbers:
            number = f"{rng.choice('ABEK')}{rng.randrange(10**7, 10**8)}"
        numbers.add(number)
        meter_rows.append(
            dict(
                id=f"M{i:06d}",
                number=number,
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
                _start=rng.randrange(0, 10**dials),
                _hazards=hazards,
            )
        )
    # routes: meters grouped by district, then split into walks of 200-500 meters (only a demo of
    # fewer than 200 meters has a shorter route: all of them)
    meter_rows.sort(key=lambda m: (m["_district"], m["premise_id"]))
    current = world.cycles[-1]
    cycle_end = (current + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
    route_rows: list[dict[str, Any]] = []
    readers: list[User] = []
    index = 0
    while index < len(meter_rows):
        size = rng.randrange(200, 501)
        remaining = len(meter_rows) - index
        if remaining - size < 200:  # never leave a tail shorter than a walk: take it, or halve the rest
            size = remaining if remaining <= 500 else remaining // 2
        number = len(route_rows) + 1
        reader = users.create_user(f"reader{number}", "meter_reader", f"{rng.choice(SURNAMES)} {rng.choice(GIVEN)}")
        readers.append(reader)
        rid = f"R{number:03d}"
        route_rows.append(
            dict(
                id=rid,
                code=f"RT-{number:03d}",
                name=f"{DISTRICTS[meter_rows[index]['_district']]} walk {number}",
                assigned_to=reader.id,
                cycle_start=current,
                cycle_end=cycle_end,
            )
        )
        for seq, meter in enumerate(meter_rows[index : index + size], start=1):
            meter["route_id"], meter["route_seq"] = rid, seq * 10
        index += size
    db.session.flush()
    _insert(Customer, customer_rows)
    _insert(Premise, premise_rows)
    _insert(Route, route_rows)
    world.customers = customer_rows
    world.counts.update(customers=len(customer_rows), routes=len(route_rows), meters=len(meter_rows))
    world.counts["users"] += len(readers)
    return meter_rows, route_rows, readers


def _devices(world: _World, readers: Sequence[User]) -> None:
    """A handheld for every field user, enrolled before the history starts. Their tokens are random and
    never shown: to use a handheld, enrol a new one with a code."""
    rng = world.rng
    enrolled = dt.datetime.combine(world.cycles[0], dt.time(7), dt.UTC) - dt.timedelta(days=7)
    rows = []
    field_users = [(uid, f"lineman{i}") for i, uid in enumerate(world.linemen, 1)]
    field_users += [(reader.id, reader.username) for reader in readers]
    for number, (user_id, username) in enumerate(field_users, 1):
        platform, version = rng.choice(PLATFORMS)
        offset = rng.randrange(-20_000, 20_000)
        if username == "lineman2":
            offset = 7 * 60_000 + 12_000  # a drifting clock: flagged on the devices page
        if username == "reader3":
            offset = -(6 * 60_000 + 40_000)
        device = _device_row(world, user_id, f"PDA-{number:03d}", platform, version, enrolled, offset)
        world.devices[user_id] = device
        rows.append(device)
    # lineman3 lost a handheld in a flood: revoked, replaced by the one above
    lost = _device_row(
        world, world.linemen[2], "PDA-LOST-01", "android-11", "1.3.0", enrolled - dt.timedelta(days=90), 3_000
    )
    lost["revoked_at"] = enrolled - dt.timedelta(days=1)
    lost["last_seen_at"] = lost["last_push_at"] = lost["last_pull_at"] = enrolled - dt.timedelta(days=3)
    rows.append(lost)
    world.device_rows = rows
    world.counts["devices"] = len(rows)


def _device_row(
    world: _World, user_id: str, name: str, platform: str, version: str, enrolled: dt.datetime, offset: int
) -> dict[str, Any]:
    return dict(
        id=world.id("D"),
        user_id=user_id,
        name=name,
        platform=platform,
        app_version=version,
        token_hash=hashlib.sha256(secrets.token_bytes(32)).hexdigest(),
        created_at=enrolled,
        revoked_at=None,
        last_seen_at=None,  # set from the device's last work below
        last_push_at=None,
        last_pull_at=None,
        clock_offset_ms=offset,
        _node=f"dev-{world.rng.getrandbits(32):08x}",
    )


def _touch(device: dict[str, Any], at: dt.datetime) -> None:
    """The handheld synced at `at` (push, then pull)."""
    if device["last_push_at"] is None or at > device["last_push_at"]:
        device["last_seen_at"] = device["last_push_at"] = at
        device["last_pull_at"] = at + dt.timedelta(seconds=4)


def _hlc(at: dt.datetime, node: str, counter: int = 0) -> str:
    return str(HLC(int(at.timestamp() * 1000), counter, node))


# --- meter readings ----------------------------------------------------------------------------------------

READS_PER_DAY = 250  # a reader walks about this many meters a day


def _reading_history(world: _World, meters: list[dict[str, Any]], routes: list[dict[str, Any]], advance) -> None:
    """Per route: its meters (with their billing base for the current cycle) and every cycle's readings."""
    by_route: dict[str, list[dict[str, Any]]] = {}
    for meter in meters:
        by_route.setdefault(meter["route_id"], []).append(meter)
    readings = 0
    buffer: list[dict[str, Any]] = []
    for index, route in enumerate(routes):
        route_meters = by_route[route["id"]]
        reader = route["assigned_to"]
        device = world.devices[reader]
        # routes are read on different days of the month; the demo reader's walk is due today, so its
        # meters were last read about a month ago and the hi/lo bands fit a read made now
        first_day = min(world.now.day, 28) if route["code"] == "RT-001" else 1 + (index * 3) % 20
        for meter in route_meters:
            buffer.extend(_meter_history(world, meter, route, first_day, device))
        _insert(Meter, route_meters)
        readings += len(buffer)
        _insert(MeterReading, buffer)
        buffer.clear()
        advance(len(route_meters))
    world.counts["readings"] = readings


def _meter_history(
    world: _World, meter: dict[str, Any], route: dict[str, Any], first_day: int, device: dict[str, Any]
) -> list[dict[str, Any]]:
    rng, now = world.rng, world.now
    low_factor, high_factor = reading_factors(meter["meter_class"])
    dials, multiplier, daily = meter["dials"], meter["multiplier"], meter["avg_daily"]
    limit = register_limit(dials)
    register = meter["_start"]  # what the dials really show
    base: tuple[int, dt.datetime, str] | None = None  # the billing base: the last valued read
    estimates = 0
    truth_at: dt.datetime | None = None
    seq = meter["route_seq"] // 10 - 1
    hazard = bool({"dog", "unsafe_access", "aggressive_occupant"} & set(meter["_hazards"]))
    rows: list[dict[str, Any]] = []

    def check(value: int, at: dt.datetime, previous: tuple[int, dt.datetime, str]) -> Any:
        """The hi/lo check against the billing base, as the handheld and the server run it."""
        return expected_band(
            current=value, previous=previous[0], previous_at_ms=int(previous[1].timestamp() * 1000),
            read_at_ms=int(at.timestamp() * 1000), dials=dials, multiplier=multiplier, avg_daily=daily,
            low_factor=low_factor, high_factor=high_factor, previous_estimated=previous[2] == "estimated",
        )  # fmt: skip

    for cycle in world.cycles:
        current = cycle == world.cycles[-1]
        if current:  # the meter's billing base for this cycle, as start_cycle sets it
            if base is not None:
                meter["last_value"], meter["last_read_at"], meter["last_read_type"] = base
            meter["consecutive_estimates"] = estimates
            if route["code"] == "RT-001":
                break  # the demo reader's walk this cycle is still to do
        day = cycle + dt.timedelta(days=first_day - 1 + seq // READS_PER_DAY)
        minutes = 8 * 60 + 30 + (seq % READS_PER_DAY) * 1.7 + rng.uniform(0, 1.5)
        read_at = dt.datetime.combine(day, dt.time(), dt.UTC) + dt.timedelta(minutes=minutes)
        read_at = read_at.replace(microsecond=0)
        if read_at > now:
            break
        if base is None:  # the previous billing read, from before the history shown
            base = (register, read_at - dt.timedelta(days=30), "regular")
        # the register advances with real use, read or not
        days = 30.0 if truth_at is None else (read_at - truth_at).total_seconds() / 86400
        used = daily * days * rng.uniform(0.8, 1.25)
        anomaly = rng.random()
        if anomaly < 0.012:
            used *= rng.uniform(3, 6)  # a new tenant's workshop, a stuck heater: really used
        elif anomaly < 0.02:
            used *= 0.05  # vacant
        register = (register + int(used / multiplier)) % limit
        truth_at = read_at
        received = min(read_at + dt.timedelta(minutes=rng.uniform(10, 480)), now)
        common = dict(route_id=route["id"], received_at=received, flags=[])
        if rng.random() < (0.25 if hazard else 0.03):
            skip = "dog" if hazard and rng.random() < 0.7 else rng.choice(SKIPS)
            rows.append(_reading(world, meter, read_at, None, device, skip_code=skip, **common))
            _touch(device, received)
            assert base is not None
            # the billing system estimates the period overnight
            estimated_at = read_at.replace(hour=23, minute=0, second=0)
            if estimated_at <= now:
                elapsed = (estimated_at - base[1]).total_seconds() / 86400
                value = (base[0] + int(daily * elapsed / multiplier)) % limit
                used_estimate, rolled = consumption(base[0], value, dials, multiplier, base[2] == "estimated")
                rows.append(
                    _reading(
                        world, meter, estimated_at, value, None, reading_type="estimated", used=used_estimate,
                        rollover=rolled, route_id=route["id"], received_at=min(estimated_at, now), flags=[],
                    )
                )
                base, estimates = (value, estimated_at, "estimated"), estimates + 1
            continue
        entered = register
        typo = rng.random() < 0.003
        if typo:  # a mistyped digit, corrected minutes later by a re-read that supersedes it
            entered = (register + 10 ** rng.randrange(1, dials)) % limit
        band = check(entered, read_at, base)
        reading_type, comment, entries = "regular", None, 1
        if band.result in (CheckResult.LOW, CheckResult.HIGH):  # the reader confirmed it, or gave a remark
            if rng.random() < 0.7:
                reading_type, entries = "verified", 2
            else:
                comment = "high_use_confirmed" if band.result is CheckResult.HIGH else "low_use_vacant"
        row = _reading(
            world, meter, read_at, entered, device, band=band, reading_type=reading_type, comment_code=comment,
            entries=entries, trouble_code=rng.choice(TROUBLE) if rng.random() < 0.01 else None, **common,
        )  # fmt: skip
        rows.append(row)
        if typo:
            fixed_at = read_at + dt.timedelta(minutes=rng.uniform(3, 20))
            received = min(received + dt.timedelta(minutes=25), now)
            fix = _reading(
                world, meter, fixed_at, register, device, band=check(register, fixed_at, base), reading_type="re_read",
                supersedes=row["id"], route_id=route["id"], received_at=received, flags=[],
            )  # fmt: skip
            row["superseded_by"] = fix["id"]
            rows.append(fix)
            read_at, reading_type = fixed_at, "re_read"
        _touch(device, received)
        base, estimates = (register, read_at, reading_type), 0
    return rows


def _reading(
    world: _World,
    meter: dict[str, Any],
    read_at: dt.datetime,
    value: int | None,
    device: dict[str, Any] | None,
    *,
    band: Any = None,
    reading_type: str = "regular",
    entries: int = 1,
    used: float | None = None,
    rollover: bool = False,
    **columns: Any,
) -> dict[str, Any]:
    check = None
    if band is not None:
        check = {
            "result": band.result.value,
            "consumption": band.consumption,
            "expected": band.expected,
            "low": band.low,
            "high": band.high,
            "rollover": band.rollover,
            "entries": entries,
        }
    row = dict(
        id=world.id("MR"),
        meter_id=meter["id"],
        reader_id=None if device is None else device["user_id"],
        device_id=None if device is None else device["id"],
        value=value,
        reading_type=reading_type,
        skip_code=None,
        trouble_code=None,
        comment_code=None,
        note=None,
        read_at=read_at,
        supersedes=None,
        superseded_by=None,
        gps=None,
        check=check,
        check_result=None if band is None else band.result.value,
        consumption=used if band is None else band.consumption,
        rollover=rollover if band is None else band.rollover,
        hlc=_hlc(read_at, BILLING_NODE if device is None else device["_node"]),
    )
    row.update(columns)
    return row


# --- jobs ----------------------------------------------------------------------------------------------------


@dataclass
class _Job:
    """One job being simulated: its row, its events and the conflicts it produced."""

    row: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    marks: list[StatusMark] = field(default_factory=list)


def _jobs(world: _World, count: int, advance) -> None:
    rng = world.rng
    start = dt.datetime.combine(world.cycles[0], dt.time(), dt.UTC)
    span = (world.now - start).total_seconds()
    storms = [start + dt.timedelta(seconds=span * rng.uniform(0.05, 0.95)) for _ in range(3)]
    vip_first = sorted(world.customers, key=lambda c: (not c["vip"], rng.random()))
    types, weights = list(JOB_TYPE_WEIGHTS), list(JOB_TYPE_WEIGHTS.values())
    numbers: set[str] = set()
    jobs: list[_Job] = []
    totals = {"jobs": 0, "job_events": 0, "conflicts": 0}
    for n in range(count):
        customer = vip_first[n % 40] if n < 60 else rng.choice(world.customers)
        if rng.random() < 0.1:  # storm days: outages and line damage pile up
            job_type = rng.choice(["outage", "outage", "line_repair"])
            created = rng.choice(storms) + dt.timedelta(hours=rng.uniform(0, 20))
        else:
            job_type = rng.choices(types, weights)[0]
            day = start + dt.timedelta(seconds=rng.uniform(0, span))
            created = dt.datetime.combine(day.date(), dt.time(), dt.UTC) + dt.timedelta(hours=rng.uniform(7, 20))
        created = min(created, world.now - dt.timedelta(minutes=rng.uniform(1, 90))).replace(microsecond=0)
        jobs.append(_simulate_job(world, customer, job_type, created, numbers))
        if len(jobs) >= 1000 or n == count - 1:
            _store_jobs(jobs, totals)
            advance(len(jobs))
            jobs.clear()
    world.counts.update(totals)


def _store_jobs(jobs: list[_Job], totals: dict[str, int]) -> None:
    for job in jobs:
        current = JobState(job.row["id"], {}, frozenset(job.marks)).current
        assert current is not None
        job.row.update(status=current.status.value, round=current.round, status_hlc=str(current.hlc))
    events = [event for job in jobs for event in job.events]
    conflicts = [conflict for job in jobs for conflict in job.conflicts]
    _insert(Job, [job.row for job in jobs])
    _insert(JobEvent, events)
    _insert(ConflictRecord, conflicts)
    totals["jobs"] += len(jobs)
    totals["job_events"] += len(events)
    totals["conflicts"] += len(conflicts)


def _simulate_job(
    world: _World, customer: dict[str, Any], job_type: str, created: dt.datetime, numbers: set[str]
) -> _Job:
    """One job through the lifecycle, each step at a plausible time; stops at the present."""
    rng, now = world.rng, world.now
    priority = (
        1 if job_type == "outage" and rng.random() < 0.5 else (2 if customer["vip"] else rng.choice([2, 3, 3, 3, 4]))
    )
    number = f"J{created:%y%m%d}-{rng.getrandbits(24):06X}"
    while number in numbers:
        number = f"J{created:%y%m%d}-{rng.getrandbits(24):06X}"
    numbers.add(number)
    lead = {1: 1, 2: 4, 3: 24, 4: 72}[priority]
    job = _Job(
        dict(
            id=world.id("J"),
            number=number,
            customer_id=customer["id"],
            premise_id="P" + customer["id"][1:],
            job_type=job_type,
            summary=rng.choice(SUMMARIES[job_type]),
            priority=priority,
            assigned_to=None,
            scheduled_start=created + dt.timedelta(hours=lead),
            scheduled_end=created + dt.timedelta(hours=lead + rng.choice([2, 4, 8])),
            requires_signature=job_type in ("connection", "disconnection"),
            created_at=created,
            status="new",
            round=1,
            status_hlc=None,
            resolution_code=None,
            cause=None,
            resolution_note=None,
            follow_up_needed=None,
            contact_name=None,
            field_hlc={},
        )
    )
    dispatcher = rng.choice(world.staff)
    _office(world, job, Status.NEW, 1, created, dispatcher)
    t = created + dt.timedelta(minutes=rng.uniform(2, 15) if priority == 1 else rng.uniform(10, 120))
    if t > now or (now - created < dt.timedelta(hours=3) and rng.random() < 0.4):
        return job  # waiting for dispatch
    lineman = rng.choice(world.linemen)
    job.row["assigned_to"] = lineman
    _office(world, job, Status.ASSIGNED, 1, t, dispatcher)
    if now - t < dt.timedelta(days=2) and rng.random() < 0.4:
        return job  # assigned, the crew has not got to it yet
    finished = _field_round(world, job, 1, t, lineman, cancel=rng.random() < 0.04)
    if finished is None:
        return job
    outcome, t = finished
    if outcome is Status.CANCELLED:
        close_after = dt.timedelta(days=rng.uniform(1, 10))
        if t + close_after <= now and rng.random() < 0.7:
            _office(world, job, Status.CLOSED, job.marks[-1].round, t + close_after, rng.choice(world.staff))
            _resolve_conflicts(job, t + close_after, rng.choice(world.staff))
        return job
    if rng.random() < 0.06 and t + dt.timedelta(days=1) < now:  # the office returns it for a correction
        t += dt.timedelta(hours=rng.uniform(6, 48))
        _office(world, job, Status.ASSIGNED, 2, t, rng.choice(world.staff))
        finished = _field_round(world, job, 2, t, lineman, cancel=False)
        if finished is None:
            return job
        outcome, t = finished
    review = t + dt.timedelta(hours=rng.uniform(4, 24 * 6))
    if review <= now and rng.random() < 0.97:  # a few stay unreviewed: the office's backlog
        _office(world, job, Status.CLOSED, job.marks[-1].round, review, rng.choice(world.staff))
        _resolve_conflicts(job, review, rng.choice(world.staff))
    return job


def _field_round(
    world: _World, job: _Job, round_: int, t: dt.datetime, lineman: str, *, cancel: bool
) -> tuple[Status, dt.datetime] | None:
    """The crew's work in one round; (outcome, when) once finished, None while still under way."""
    rng, now = world.rng, world.now
    device = world.devices[lineman]
    urgent = job.row["priority"] == 1
    cancel_at_stage = rng.choice([Status.ASSIGNED, Status.EN_ROUTE, Status.ON_SITE]) if cancel else None
    if rng.random() < 0.8:
        t += dt.timedelta(minutes=rng.uniform(1, 30))
        if t > now:
            return None
        _field(world, job, "accepted", t, device)
    if cancel_at_stage is Status.ASSIGNED:
        return _cancel(world, job, round_, t + dt.timedelta(hours=rng.uniform(1, 24)), device)
    start = t + dt.timedelta(minutes=rng.uniform(5, 40)) if urgent else max(
        t + dt.timedelta(minutes=rng.uniform(20, 90)), job.row["scheduled_start"] - dt.timedelta(minutes=30)
    )
    steps = [(Status.EN_ROUTE, start), (Status.ON_SITE, start + dt.timedelta(minutes=rng.uniform(10, 60)))]
    for status, at in steps:
        if at > now:
            return None
        t = at
        _field(world, job, "status", t, device, status=status, round_=round_)
        if cancel_at_stage is status:
            return _cancel(world, job, round_, t + dt.timedelta(minutes=rng.uniform(5, 40)), device)
    if rng.random() < 0.15:
        t += dt.timedelta(minutes=rng.uniform(10, 40))
        if t > now:
            return None
        _field(world, job, "status", t, device, status=Status.ON_HOLD, round_=round_)
        t += dt.timedelta(minutes=rng.uniform(15, 120))
        if t > now:
            return None
        _field(world, job, "status", t, device, status=Status.ON_SITE, round_=round_)
    if rng.random() < 0.45:
        t += dt.timedelta(minutes=rng.uniform(5, 30))
        if t > now:
            return None
        _field(world, job, "note", t, device, text=rng.choice(NOTES))
    if job.row["job_type"] in ("outage", "line_repair", "meter_fault", "connection") and rng.random() < 0.6:
        code, quantity, unit = rng.choice(MATERIALS)
        t += dt.timedelta(minutes=rng.uniform(5, 45))
        if t > now:
            return None
        _field(world, job, "material", t, device, material_code=code, quantity=quantity, unit=unit)
    t += dt.timedelta(minutes=rng.uniform(15, 150))
    if t > now:
        return None
    outcome = Status.COMPLETED if rng.random() < 0.88 else Status.CANNOT_COMPLETE
    stamp = _field(world, job, "status", t, device, status=outcome, round_=round_)
    values: dict[str, Any] = {
        "resolution_code": rng.choice(["repaired", "replaced", "no_fault_found", "made_safe", "customer_side"])
        if outcome is Status.COMPLETED
        else rng.choice(["no_access", "referred"]),
        "cause": rng.choice(CAUSES) if job.row["job_type"] in ("outage", "line_repair") else None,
        "follow_up_needed": rng.random() < 0.1,
        "contact_name": f"{rng.choice(SURNAMES)} {rng.choice(GIVEN)}" if rng.random() < 0.5 else None,
    }
    for name, value in values.items():
        if value is not None:
            job.row[name] = value
            job.row["field_hlc"] = {**job.row["field_hlc"], name: stamp}
    if values["cause"] and rng.random() < 0.04:  # the office set the cause meanwhile: the crew's value lost
        office_at = t + dt.timedelta(minutes=rng.uniform(1, 20))
        office_stamp = _hlc(office_at, OFFICE_NODE)
        winner = rng.choice(OFFICE_CAUSES)
        job.row["cause"] = winner
        job.row["field_hlc"] = {**job.row["field_hlc"], "cause": office_stamp}
        job.conflicts.append(
            _conflict(job, "concurrent_edit", "cause", winner, office_stamp, values["cause"], stamp,
                      world.id("X"), lineman, device["id"], min(office_at + dt.timedelta(minutes=30), now))
        )  # fmt: skip
    return outcome, t


def _cancel(
    world: _World, job: _Job, round_: int, at: dt.datetime, device: dict[str, Any]
) -> tuple[Status, dt.datetime] | None:
    """The office cancels: field status work already in the round is kept and flagged, as the merge does."""
    if at > world.now:
        return None
    cancel = _office(world, job, Status.CANCELLED, round_, at, world.rng.choice(world.staff))
    # the crew learns of it at its next sync; half the time its work arrived after the cancellation (a push)
    pushed_late = world.rng.random() < 0.5
    for event in job.events:
        if event["kind"] == "status" and event["source"] == "field" and event["round"] == round_:
            event["flags"] = ["work_after_cancel"]
            job.conflicts.append(
                _conflict(job, "work_after_cancel", "status", "cancelled", cancel["hlc"], event["status"],
                          event["hlc"], event["id"], event["author_id"], device["id"] if pushed_late else None, at)
            )  # fmt: skip
    return Status.CANCELLED, at


def _conflict(
    job: _Job, kind: str, name: str, winner: Any, winner_hlc: str, loser: Any, loser_hlc: str, change_id: str,
    user_id: str, device_id: str | None, at: dt.datetime,
) -> dict[str, Any]:  # fmt: skip
    """A conflict record as services.conflicts stores it; `change_id` is the change that lost (for field
    work on a cancelled job: the flagged event's id)."""
    return dict(
        kind=kind,
        entity="job",
        entity_id=job.row["id"],
        field=name,
        winner=winner,
        winner_hlc=winner_hlc,
        loser=loser,
        loser_hlc=loser_hlc,
        change_id=change_id,
        user_id=user_id,
        device_id=device_id,
        created_at=at,
        resolved_at=None,
        resolved_by=None,
    )


def _resolve_conflicts(job: _Job, at: dt.datetime, staff_id: str) -> None:
    """The office's review settles what it saw."""
    for conflict in job.conflicts:
        conflict["resolved_at"], conflict["resolved_by"] = at, staff_id


def _office(world: _World, job: _Job, status: Status, round_: int, at: dt.datetime, author: str) -> dict[str, Any]:
    stamp = _hlc(at, OFFICE_NODE)
    event = _event(world, job, "status", at, stamp, "office", author, None, status=status.value, round=round_)
    job.marks.append(StatusMark.of(status, round_, HLC.parse(stamp), Actor.OFFICE, event["id"]))
    return event


def _field(
    world: _World,
    job: _Job,
    kind: str,
    at: dt.datetime,
    device: dict[str, Any],
    *,
    status: Status | None = None,
    round_: int | None = None,
    **values: Any,
) -> str:
    """A crew's event, recorded on its handheld at `at` and pushed at its next sync; returns its stamp."""
    stamp = _hlc(at, device["_node"])
    received = min(at + dt.timedelta(minutes=world.rng.uniform(0.5, 90)), world.now)
    event = _event(
        world, job, kind, at, stamp, "field", device["user_id"], device["id"], received=received,
        status=None if status is None else status.value, round=round_, **values,
    )  # fmt: skip
    if status is not None:
        job.marks.append(StatusMark.of(status, round_ or 1, HLC.parse(stamp), Actor.FIELD, event["id"]))
    _touch(device, received)
    return stamp


def _event(
    world: _World,
    job: _Job,
    kind: str,
    at: dt.datetime,
    stamp: str,
    source: str,
    author: str | None,
    device_id: str | None,
    received: dt.datetime | None = None,
    **values: Any,
) -> dict[str, Any]:
    event = dict(
        id=world.id("E"),
        job_id=job.row["id"],
        kind=kind,
        status=None,
        round=None,
        text=None,
        material_code=None,
        quantity=None,
        unit=None,
        recorded_at=at,
        gps=None,
        hlc=stamp,
        source=source,
        author_id=author,
        device_id=device_id,
        received_at=received or at,
        flags=[],
    )
    event.update(values)
    job.events.append(event)
    return event


# --- storage ---------------------------------------------------------------------------------------------------


def _insert(model: type[db.Model], rows: Sequence[dict[str, Any]]) -> None:
    """Bulk insert through SQLAlchemy core: one executemany per batch; keys starting with "_" are the
    generator's own and are not stored."""
    table: Table = model.__table__  # type: ignore[assignment]
    columns = {column.name for column in table.columns}
    for start in range(0, len(rows), BATCH):
        batch = [{k: v for k, v in row.items() if k in columns} for row in rows[start : start + BATCH]]
        db.session.execute(insert(table), batch)


@contextmanager
def _progress(enabled: bool, total: int) -> Iterator[Any]:
    """advance(n) moves a progress bar (on stderr-like terminals) when enabled, else does nothing."""
    if not enabled:
        yield lambda n: None
        return
    with click.progressbar(length=total, label="demo data (meters, then jobs)") as bar:
        yield bar.update
