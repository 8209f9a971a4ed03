"""Demo data (`flask seed-demo`): bulk-inserted, yet exactly what syncs and office actions would have
left — job statuses that are the merge of their events, billing bases that start_cycle would set,
handhelds that can sync it — with the cases the service-centre pages show."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
import sqlalchemy as sa
from werkzeug.security import generate_password_hash

from server.demo import DEMO_READER, seed_demo
from server.extensions import db
from server.models import ConflictRecord, Device, Job, JobEvent, Meter, MeterReading, Route, User
from server.services.jobstate import load_state
from sync_protocol.readings import ACTUAL_TYPES
from tests.server.world import enrol

SIZE = {"customers": 600, "jobs": 300, "months": 4}
AS_OF = dt.datetime(2026, 11, 20, 9, tzinfo=dt.UTC)  # fixed, so two seeds never straddle an hour


@pytest.fixture
def demo(app, monkeypatch):
    """The app's empty database seeded with demo data; the value is seed_demo's summary."""
    _fast_passwords(monkeypatch)
    with app.app_context():
        return seed_demo(seed=11, as_of=AS_OF, **SIZE)


def _fast_passwords(monkeypatch) -> None:
    """Demo staff passwords are random anyway: hash them cheaply so seeding stays quick."""
    cheap = lambda password: generate_password_hash(password, "pbkdf2:sha256:1")  # noqa: E731
    monkeypatch.setattr("server.services.users.generate_password_hash", cheap)


def _all(model, *where):
    return db.session.execute(sa.select(model).where(*where)).scalars().all()


def test_seed_demo_counts_what_it_made(app, demo):
    with app.app_context():
        for name, model in (("jobs", Job), ("readings", MeterReading), ("devices", Device), ("users", User)):
            assert demo[name] == db.session.execute(sa.select(sa.func.count()).select_from(model)).scalar_one()
    assert demo["customers"] == demo["meters"] == SIZE["customers"] and demo["jobs"] == SIZE["jobs"]
    # four cycles of history and most of the current one, plus the estimates after skips
    assert SIZE["customers"] * SIZE["months"] < demo["readings"] < SIZE["customers"] * (SIZE["months"] + 2)


def test_seed_demo_job_status_is_the_merge_of_its_events(app, demo):
    with app.app_context():
        jobs = _all(Job)
        for job in jobs:
            current = load_state(job).current
            assert (current.status.value, current.round, str(current.hlc)) == (job.status, job.round, job.status_hlc)
        statuses = Counter(job.status for job in jobs)
        assert statuses["closed"] > len(jobs) / 2 and {"new", "assigned", "cancelled", "completed"} <= set(statuses)
        assert any(job.round == 2 for job in jobs), "some jobs were returned to the field"
        assert Counter(job.job_type for job in jobs)["complaint"] > len(jobs) / 10
        now = dt.datetime.now(dt.UTC)
        events = _all(JobEvent)
        assert all(event.recorded_at <= event.received_at <= now for event in events)
        assert {"status", "note", "material", "accepted"} == {event.kind for event in events}
        by_job: dict[str, list[JobEvent]] = {}
        for event in events:
            by_job.setdefault(event.job_id, []).append(event)
        for job in jobs:  # the lifecycle in time order: created, then dispatched, then the crew
            ordered = [e.status for e in sorted(by_job[job.id], key=lambda e: e.recorded_at) if e.kind == "status"]
            assert ordered[0] == "new" and ordered[0:2] in (["new"], ["new", "assigned"]), ordered
            assert job.created_at == min(e.recorded_at for e in by_job[job.id])


def test_seed_demo_conflicts_are_those_the_merge_would_keep(app, demo):
    with app.app_context():
        conflicts = _all(ConflictRecord)
        kinds = Counter(conflict.kind for conflict in conflicts)
        assert kinds["work_after_cancel"] and kinds["concurrent_edit"]
        assert any(c.resolved_at is None and c.device_id for c in conflicts), "some wait on a handheld"
        for conflict in conflicts:
            job = db.session.get(Job, conflict.entity_id)
            if conflict.kind == "work_after_cancel":
                event = db.session.get(JobEvent, conflict.change_id)
                assert job.status in ("cancelled", "closed") and conflict.winner == "cancelled"
                assert event.source == "field" and "work_after_cancel" in event.flags
                assert (conflict.loser, conflict.loser_hlc) == (event.status, event.hlc)
            else:  # the office's value won; a later round may have set the field again since
                assert conflict.winner != conflict.loser and conflict.winner_hlc > conflict.loser_hlc
                assert job.field_hlc[conflict.field] >= conflict.winner_hlc
                if job.field_hlc[conflict.field] == conflict.winner_hlc:
                    assert getattr(job, conflict.field) == conflict.winner


def test_seed_demo_reading_history_has_every_case_and_consistent_billing_bases(app, demo):
    with app.app_context():
        readings = _all(MeterReading)
        assert Counter(r.reading_type for r in readings).keys() >= {"regular", "verified", "estimated", "re_read"}
        assert any(r.skip_code == "dog" for r in readings) and any(r.skip_code not in (None, "dog") for r in readings)
        assert Counter(r.check_result for r in readings).keys() >= {"in_range", "high", "low"}
        assert any(r.rollover for r in readings) and any(r.trouble_code for r in readings)
        assert any(r.comment_code == "high_use_confirmed" for r in readings)
        corrected = [r for r in readings if r.superseded_by]
        assert corrected and all(db.session.get(MeterReading, r.superseded_by).supersedes == r.id for r in corrected)
        for r in readings:
            assert (r.value is None) == (r.skip_code is not None) or r.reading_type == "estimated"
            if r.reading_type == "estimated":
                assert r.reader_id is None and r.value is not None
            elif r.value is not None:
                assert r.check["result"] == r.check_result and r.check["rollover"] == r.rollover
        routes = {route.id: route for route in _all(Route)}
        by_meter: dict[str, list[MeterReading]] = {}
        for r in readings:
            by_meter.setdefault(r.meter_id, []).append(r)
        demo_route = db.session.execute(
            sa.select(Route.id).join(User, User.id == Route.assigned_to).where(User.username == DEMO_READER)
        ).scalar_one()
        for meter in _all(Meter):
            start = dt.datetime.combine(routes[meter.route_id].cycle_start, dt.time(), dt.UTC)
            history = [r for r in by_meter[meter.id] if r.read_at < start]
            # the billing base is the latest valid valued read before the cycle, as start_cycle sets it
            base = max((r for r in history if r.value is not None and r.superseded_by is None), key=lambda r: r.read_at)
            assert (meter.last_value, meter.last_read_at, meter.last_read_type) == (
                base.value,
                base.read_at,
                base.reading_type,
            )
            estimated_run = 0
            valued = (r for r in history if r.value is not None and not r.superseded_by)
            for r in sorted(valued, key=lambda r: r.read_at):
                estimated_run = estimated_run + 1 if r.reading_type not in ACTUAL_TYPES else 0
            assert meter.consecutive_estimates == estimated_run
            if meter.route_id == demo_route:
                assert len(history) == len(by_meter[meter.id]), "the demo reader's walk is still to do"


def test_seeded_handhelds_and_a_new_one_sync_the_demo_world(app, client, demo):
    with app.app_context():
        devices = _all(Device)
        field_users = _all(User, User.role.in_(User.FIELD_ROLES))
        assert {d.user_id for d in devices if d.revoked_at is None} == {u.id for u in field_users}
        assert sum(d.revoked_at is not None for d in devices) == 1
        assert any(abs(d.clock_offset_ms) > 5 * 60_000 for d in devices)
        assert all(d.last_push_at for d in devices if d.revoked_at is None)
        handheld = enrol(client, DEMO_READER, "demo check")
        lineman = enrol(client, "lineman1", "demo crew")
    records = handheld.pull_all()
    meters = [r for r in records if r["entity"] == "meter"]
    assert len(meters) >= 200 and not any(r["entity"] == "meter_reading" for r in records)
    meter = min(meters, key=lambda r: r["data"]["route_seq"])
    value = (meter["data"]["last_value"] + 50) % 10 ** meter["data"]["dials"]
    result = handheld.push(handheld.reading(meter["id"], value)).get_json()["results"][0]
    assert result["status"] == "applied", result
    jobs = [r for r in lineman.pull_all() if r["entity"] == "job" and r["data"]["status"] == "assigned"]
    if jobs:
        result = lineman.push(lineman.status(jobs[0]["id"], "en_route")).get_json()["results"][0]
        assert result["status"] == "applied", result


def test_seed_demo_same_seed_same_data_and_scale_options(app, tmp_path, monkeypatch):
    from tests.server.helpers import fresh_app

    _fast_passwords(monkeypatch)
    args = (
        "seed-demo",
        "--scale",
        "large",
        "--customers",
        "250",
        "--jobs",
        "30",
        "--months",
        "1",
        "--seed",
        "5",
        "--as-of",
        "2026-11-20T09:00",
    )
    dumps = []
    for _ in range(2):
        with fresh_app(app, tmp_path) as new:
            result = new.test_cli_runner().invoke(args=list(args))
            assert result.exit_code == 0, result.output
            assert "250 customers" in result.output and "30 jobs" in result.output and "seeded in" in result.output
            with new.app_context():
                dumps.append(
                    {
                        "events": sorted(
                            (e.id, e.kind, e.status, e.recorded_at.isoformat(), e.hlc) for e in _all(JobEvent)
                        ),
                        "readings": sorted(
                            (r.id, r.meter_id, repr(r.value), r.read_at.isoformat(), r.check_result)
                            for r in _all(MeterReading)
                        ),
                        "conflicts": sorted((c.entity_id, c.change_id, c.kind) for c in _all(ConflictRecord)),
                    }
                )
                assert len({r.read_at.date().replace(day=1) for r in _all(MeterReading)}) <= 2  # --months 1
    assert dumps[0] == dumps[1]
