"""Administration commands: `flask --app server <command>` (see README, "Operating the server")."""

from __future__ import annotations

import datetime as dt
import getpass
import secrets
import sys
import time
from typing import Any

import click
from flask import Flask, current_app
from flask_migrate import upgrade
from sqlalchemy import func, select
from werkzeug.serving import run_simple

from sync_protocol import ProtocolError

from .database import analyze
from .demo import SCALES
from .extensions import db
from .models import Device, Job, User
from .services import enrollment, state, users


def init_database() -> bool:
    """Bring the schema to the newest migration and give a new database its epoch. True if it was new."""
    upgrade(directory=str(current_app.extensions["migrate"].directory))
    created = state.initialise()
    db.session.commit()
    analyze()  # a migration may add indexes the planner has no statistics for
    return created


def _user(username: str) -> User:
    user = db.session.execute(select(User).where(User.username == username)).scalar()
    if user is None:
        raise click.ClickException(f"no user {username!r}")
    return user


def register(app: Flask) -> None:
    @app.cli.command("init-db")
    def init_db_command() -> None:
        """Create or upgrade the database schema (migrations) and initialise sync state."""
        created = init_database()
        click.echo("database initialised" if created else "database schema is up to date")

    @app.cli.command("analyze")
    def analyze_command() -> None:
        """Refresh the query planner's statistics (SQLite: ANALYZE and PRAGMA optimize). Run it
        periodically (e.g. nightly from cron) as data grows; init-db and seed-demo run it themselves."""
        analyze()
        click.echo("statistics refreshed")

    @app.cli.command("seed-demo")
    @click.option("--seed", default=7, show_default=True, help="Random seed: same seed, same data.")
    @click.option(
        "--scale",
        type=click.Choice(sorted(SCALES)),
        default="demo",
        show_default=True,
        help="demo: 3000 customers, 400 jobs, 3 months of readings; large: 10,000 customers, 10,000 jobs, "
        "10 months (about 100,000 readings), the size the service-centre pages must stay fast on.",
    )
    @click.option("--customers", type=click.IntRange(min=1), help="Customers (one meter each); overrides --scale.")
    @click.option("--jobs", type=click.IntRange(min=0), help="Repair jobs and complaints; overrides --scale.")
    @click.option("--months", type=click.IntRange(min=0), help="Reading cycles before this one; overrides --scale.")
    @click.option(
        "--as-of",
        type=click.DateTime(formats=["%Y-%m-%dT%H:%M"]),
        help="Build the world as of this UTC time (YYYY-MM-DDTHH:MM; default now): reproduces a data set exactly.",
    )
    def seed_demo_command(
        seed: int, scale: str, customers: int | None, jobs: int | None, months: int | None, as_of: Any
    ) -> None:
        """Fill an empty database with realistic demo data (users, handhelds, customers, routes, meters,
        reading history, jobs with their events, conflicts)."""
        from .demo import seed_demo

        init_database()
        if db.session.execute(select(func.count()).select_from(Job)).scalar():
            raise click.ClickException("the database already holds data; seed only an empty one")
        overrides = {"customers": customers, "jobs": jobs, "months": months}
        size = {**SCALES[scale], **{name: value for name, value in overrides.items() if value is not None}}
        started = time.monotonic()
        moment = None if as_of is None else as_of.replace(tzinfo=dt.UTC)
        summary = seed_demo(seed=seed, progress=True, as_of=moment, **size)
        click.echo(", ".join(f"{count} {name}" for name, count in summary.items()))
        click.echo(f"seeded in {time.monotonic() - started:.1f} s")

    @app.cli.command("create-user")
    @click.argument("username")
    @click.option("--role", type=click.Choice(User.ROLES), required=True)
    @click.option("--name", "display_name", help="Display name (default: the username).")
    @click.option("--password", help="For staff and admins; prompted for when omitted.")
    def create_user_command(username: str, role: str, display_name: str | None, password: str | None) -> None:
        """Create a user. Field users enrol handhelds with codes; staff and admins sign in with passwords."""
        if role in ("staff", "admin") and password is None:
            password = getpass.getpass("password: ") if sys.stdin.isatty() else secrets.token_urlsafe(12)
            if not sys.stdin.isatty():
                click.echo(f"generated password: {password}")
        try:
            user = users.create_user(username, role, display_name or username, password)
        except ProtocolError as exc:
            raise click.ClickException(exc.message) from exc
        db.session.commit()
        click.echo(f"created {role} {username} ({user.id})")

    @app.cli.command("enroll-code")
    @click.argument("username")
    @click.option("--hours", type=click.IntRange(min=1), help="Validity (default FIELDSYNC_ENROLL_CODE_TTL_HOURS).")
    def enroll_code_command(username: str, hours: int | None) -> None:
        """Print a one-time enrolment code for a field user's handheld."""
        user = _user(username)
        if not user.is_field:
            raise click.ClickException("only field users (lineman, meter_reader) enrol handhelds")
        try:
            code = enrollment.issue_code(user, hours or current_app.config["ENROLL_CODE_TTL_HOURS"])
        except ProtocolError as exc:
            raise click.ClickException(exc.message) from exc
        db.session.commit()
        click.echo(code)

    @app.cli.command("revoke-device")
    @click.argument("device_id")
    def revoke_device_command(device_id: str) -> None:
        """Revoke a handheld's token; its next request is refused."""
        device = db.session.get(Device, device_id)
        if device is None:
            raise click.ClickException(f"no device {device_id!r}")
        enrollment.revoke(device)
        db.session.commit()
        click.echo(f"revoked {device_id}")

    @app.cli.command("list-devices")
    def list_devices_command() -> None:
        """Devices with their user, last sync and state."""
        rows = db.session.execute(
            select(Device, User.username).join(User, User.id == Device.user_id).order_by(Device.created_at)
        )
        for device, username in rows:
            status = "revoked" if device.revoked_at else "active"
            last = device.last_push_at or device.last_pull_at
            click.echo(f"{device.id}  {username:<16} {device.name:<24} {status:<8} last sync {last or '-'}")

    @app.cli.command("rotate-epoch")
    def rotate_epoch_command() -> None:
        """After restoring a backup: make every handheld push its outbox and download its scope again."""
        epoch = state.rotate_epoch()
        db.session.commit()
        click.echo(f"new epoch {epoch}")

    @app.cli.command("compact")
    @click.option("--days", type=click.IntRange(min=0), help="Retention (default FIELDSYNC_CHANGE_RETENTION_DAYS).")
    def compact_command(days: int | None) -> None:
        """Delete change-log rows (tombstones included) older than the retention period; --days 0 keeps
        only the newest row (an explicit 0 is honoured, not replaced by the default)."""
        retention = days if days is not None else current_app.config["CHANGE_RETENTION_DAYS"]
        deleted = state.compact(retention, dt.datetime.now(dt.UTC))
        db.session.commit()
        click.echo(f"compacted {deleted} change-log rows")

    @app.cli.command("quickstart")
    @click.option("--host", default="127.0.0.1", show_default=True)
    @click.option("--port", default=5000, show_default=True)
    @click.option(
        "--scale",
        type=click.Choice(sorted(SCALES)),
        default="large",
        show_default=True,
        help="Demo data loaded on first run (see seed-demo); large takes about 10-25 s.",
    )
    def quickstart_command(host: str, port: int, scale: str) -> None:
        """Initialise the database with demo data on first run, print the URL and logins, and serve."""
        from .demo import DEMO_ADMIN_USERNAME, DEMO_READER, demo_admin_password, seed_demo

        init_database()
        if not db.session.execute(select(func.count()).select_from(Job)).scalar():
            click.echo(f"first run: loading demo data ({scale}) ...")
            started = time.monotonic()
            summary = seed_demo(seed=7, progress=True, **SCALES[scale])
            click.echo(", ".join(f"{count} {name}" for name, count in summary.items()))
            click.echo(f"seeded in {time.monotonic() - started:.1f} s")
        reader = _user(DEMO_READER)
        code = enrollment.issue_code(reader, current_app.config["ENROLL_CODE_TTL_HOURS"])
        db.session.commit()
        url = f"http://{host}:{port}/"
        click.echo("")
        click.echo(f"FieldSync server: {url}")
        click.echo(f"  service centre login: {DEMO_ADMIN_USERNAME} / {demo_admin_password()}")
        click.echo(f"  handheld enrolment code for meter reader {DEMO_READER}: {code}")
        click.echo(f"  health: {url}api/v1/health")
        click.echo("")
        # the development server (one process, threaded); production runs gunicorn (docs/operations.md)
        run_simple(host, port, current_app._get_current_object(), threaded=True)
