"""Administration commands (`flask --app server <command>`), run through Flask's CLI test runner."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
import sqlalchemy as sa
from werkzeug.security import check_password_hash, generate_password_hash

from server.extensions import db
from server.models import ChangeLog, Customer, Device, EnrollmentCode, Job, Meter, MeterReading, User
from server.services import state
from tests.server.helpers import assert_error, counts, device, fresh_app

WORLD_TABLES = ("users", "customers", "premises", "routes", "meters", "jobs", "job_events", "change_log")


def invoke(runner, *args: str):
    return runner.invoke(args=list(args))


def _epoch(app) -> str:
    with app.app_context():
        return state.epoch()


def _user(app, username: str) -> User | None:
    with app.app_context():
        user = db.session.execute(sa.select(User).where(User.username == username)).scalar()
        if user is not None:
            db.session.expunge(user)
        return user


# --- init-db --------------------------------------------------------------------------------------


def test_init_db_initialises_a_new_database(app, tmp_path):
    with fresh_app(app, tmp_path, initialise=False) as new:
        result = invoke(new.test_cli_runner(), "init-db")
        assert result.exit_code == 0, result.output
        assert "database initialised" in result.output
        assert _epoch(new)


def test_init_db_is_idempotent(app, runner, world):
    epoch = _epoch(app)
    before = counts(app, *WORLD_TABLES)
    for _ in range(2):
        result = invoke(runner, "init-db")
        assert result.exit_code == 0, result.output
        assert "up to date" in result.output
    assert _epoch(app) == epoch
    assert counts(app, *WORLD_TABLES) == before


# --- users and devices ----------------------------------------------------------------------------


def test_create_user_adds_a_field_user_without_password(app, runner, world):
    result = invoke(runner, "create-user", "bob", "--role", "lineman", "--name", "Bob Li")
    assert result.exit_code == 0, result.output
    user = _user(app, "bob")
    assert (user.role, user.display_name, user.password_hash, user.active) == ("lineman", "Bob Li", None, True)
    assert user.id in result.output


def test_create_staff_user_without_password_gets_a_generated_one(app, runner, world):
    result = invoke(runner, "create-user", "carol", "--role", "staff")
    assert result.exit_code == 0, result.output
    password = result.output.split("generated password:")[1].split()[0]
    assert check_password_hash(_user(app, "carol").password_hash, password)


def test_create_user_refuses_a_taken_username_and_an_unknown_role(app, runner, world):
    before = counts(app, "users")
    taken = invoke(runner, "create-user", "reader", "--role", "meter_reader")
    assert taken.exit_code == 1 and "exists" in taken.output
    unknown = invoke(runner, "create-user", "dave", "--role", "wizard")
    assert unknown.exit_code == 2
    assert counts(app, "users") == before


def test_enroll_code_prints_a_code_usable_once_for_enrolment(app, client, runner, world):
    result = invoke(runner, "enroll-code", "reader", "--hours", "2")
    assert result.exit_code == 0, result.output
    code = result.output.strip().splitlines()[-1]
    with app.app_context():
        expires = db.session.execute(sa.select(EnrollmentCode.expires_at)).scalar_one()
    assert abs(expires - (dt.datetime.now(dt.UTC) + dt.timedelta(hours=2))) < dt.timedelta(minutes=1)
    response = client.post("/api/v1/devices/enroll", json={"code": code, "device_name": "pda"})
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["user"]["id"] == world.users["reader"]
    again = client.post("/api/v1/devices/enroll", json={"code": code, "device_name": "pda"})
    assert_error(again, 401, "invalid_enrollment_code")


def test_enroll_code_refuses_office_and_unknown_users(app, runner, world):
    for username in ("staff", "admin", "nobody"):
        result = invoke(runner, "enroll-code", username)
        assert result.exit_code == 1, result.output
    assert "only field users" in invoke(runner, "enroll-code", "staff").output
    assert invoke(runner, "enroll-code", "reader", "--hours", "0").exit_code == 2
    assert counts(app, "enrollment_codes") == {"enrollment_codes": 0}


def test_revoke_device_refuses_its_next_request(app, client, runner, world):
    handheld = device(app, client, "lineman")
    assert handheld.hello().status_code == 200
    result = invoke(runner, "revoke-device", handheld.device_id)
    assert result.exit_code == 0, result.output
    assert_error(handheld.hello(), 401, "unauthorized")
    with app.app_context():
        assert db.session.get(Device, handheld.device_id).revoked_at is not None
    listing = invoke(runner, "list-devices")
    assert handheld.device_id in listing.output and "revoked" in listing.output
    assert invoke(runner, "revoke-device", "D-unknown").exit_code == 1


# --- sync state -----------------------------------------------------------------------------------


def test_rotate_epoch_makes_devices_resync(app, client, runner, world):
    handheld = device(app, client, "reader")
    handheld.pull_all()
    epoch = _epoch(app)
    result = invoke(runner, "rotate-epoch")
    assert result.exit_code == 0, result.output
    assert _epoch(app) != epoch and _epoch(app) in result.output
    response = client.get("/api/v1/sync/pull", query_string={"cursor": handheld.cursor}, headers=handheld.headers)
    assert_error(response, 409, "resync_required")


def _age_change_log(app, days: int) -> None:
    with app.app_context():
        db.session.execute(sa.update(ChangeLog).values(created_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=days)))
        db.session.commit()


def test_compact_keeps_changes_younger_than_the_retention(app, runner, world):
    _age_change_log(app, 2)
    before = counts(app, "change_log")
    result = invoke(runner, "compact")  # default retention: 60 days
    assert result.exit_code == 0, result.output
    assert "compacted 0 change-log rows" in result.output
    assert counts(app, "change_log") == before


def test_compact_with_days_zero_drops_all_but_the_newest_row(app, client, runner, world):
    handheld = device(app, client, "reader")
    handheld.pull_all()
    handheld.push(handheld.reading("M1", 1300))
    _age_change_log(app, 1)
    total = counts(app, "change_log")["change_log"]
    result = invoke(runner, "compact", "--days", "0")
    assert result.exit_code == 0, result.output
    assert f"compacted {total - 1} change-log rows" in result.output
    assert counts(app, "change_log") == {"change_log": 1}
    response = client.get("/api/v1/sync/pull", query_string={"cursor": handheld.cursor}, headers=handheld.headers)
    assert_error(response, 409, "resync_required")
    assert invoke(runner, "compact", "--days", "-1").exit_code == 2


# --- demo data ------------------------------------------------------------------------------------

DEMO = ("seed-demo", "--customers", "300", "--jobs", "40", "--seed", "3", "--as-of", "2026-11-20T09:00")


@pytest.fixture
def fast_passwords(monkeypatch):
    """Demo staff passwords are random anyway: hash them cheaply so seeding stays quick."""
    cheap = lambda password: generate_password_hash(password, "pbkdf2:sha256:1")  # noqa: E731
    monkeypatch.setattr("server.services.users.generate_password_hash", cheap)


def _rows(statement) -> list[tuple]:
    return sorted((tuple(row) for row in db.session.execute(statement)), key=repr)  # skips have no value


def _seed(app, *args: str) -> dict[str, list[tuple]]:
    result = invoke(app.test_cli_runner(), *args)
    assert result.exit_code == 0, result.output
    with app.app_context():
        return {
            "customers": _rows(sa.select(Customer.id, Customer.name, Customer.segment)),
            "meters": _rows(sa.select(Meter.id, Meter.number, Meter.route_id, Meter.avg_daily)),
            "readings": _rows(sa.select(MeterReading.meter_id, MeterReading.value, MeterReading.reading_type)),
            "jobs": _rows(sa.select(Job.customer_id, Job.job_type, Job.summary, Job.priority, Job.status)),
        }


def test_seed_demo_is_deterministic_and_realistic(app, tmp_path, fast_passwords):
    with fresh_app(app, tmp_path) as first, fresh_app(app, tmp_path) as second:
        data = _seed(first, *DEMO)
        assert _seed(second, *DEMO) == data
    customers, meters = data["customers"], data["meters"]
    assert len(customers) == len(meters) == 300 and len(data["jobs"]) == 40
    assert len({customer[1] for customer in customers}) > 100  # varied, not one name repeated
    routes = Counter(meter[2] for meter in meters)
    assert None not in routes and all(200 <= size <= 500 for size in routes.values()), routes
    # one meter per customer: its average daily consumption is the customer's volume
    ranked = sorted((meter[3] for meter in meters), reverse=True)
    top_third = sum(ranked[: len(ranked) // 3]) / sum(ranked)
    assert top_third > 0.6, top_third  # heavy-tailed: ABC analysis has something to find


def test_seed_demo_never_leaves_a_short_last_route(app, tmp_path, fast_passwords):
    with fresh_app(app, tmp_path) as new:
        meters = _seed(new, "seed-demo", "--customers", "700", "--jobs", "0", "--seed", "1")["meters"]
    routes = Counter(meter[2] for meter in meters)
    assert sum(routes.values()) == 700
    assert all(200 <= size <= 500 for size in routes.values()), routes


def test_seed_demo_refuses_a_database_with_data(app, runner, world):
    before = counts(app, *WORLD_TABLES)
    result = invoke(runner, *DEMO)
    assert result.exit_code == 1 and "already holds data" in result.output
    assert counts(app, *WORLD_TABLES) == before
