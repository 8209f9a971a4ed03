"""Storage: typed SQLAlchemy 2 models. Schema changes go through migrations (server/migrations)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from .extensions import db

ID = String(64)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Stores UTC without an offset (SQLite has none) and always returns aware UTC datetimes."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=dt.UTC)


# --- people and devices -----------------------------------------------------------------------


class User(db.Model):
    __tablename__ = "users"
    ROLES = ("lineman", "meter_reader", "staff", "admin")
    FIELD_ROLES = ("lineman", "meter_reader")

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    STAFF_ROLES = ("staff", "admin")

    @property
    def is_field(self) -> bool:
        return self.role in self.FIELD_ROLES

    @property
    def is_staff(self) -> bool:
        return self.role in self.STAFF_ROLES

    # what Flask-Login asks of a user object (a deactivated user's session stops working)
    is_authenticated = True
    is_anonymous = False

    @property
    def is_active(self) -> bool:
        return self.active

    def get_id(self) -> str:
        return self.id


class EnrollmentCode(db.Model):
    """A one-time code an administrator gives a field user to enrol a handheld (stored hashed)."""

    __tablename__ = "enrollment_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    device_id: Mapped[str | None] = mapped_column(ID)


class Device(db.Model):
    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(80))
    platform: Mapped[str] = mapped_column(String(40), default="")
    app_version: Mapped[str] = mapped_column(String(40), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_push_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_pull_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    clock_offset_ms: Mapped[int | None] = mapped_column(BigInteger)


# --- reference data (owned by the service centre) ---------------------------------------------


class Customer(db.Model):
    __tablename__ = "customers"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    account_no: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(40))
    segment: Mapped[str] = mapped_column(String(20), default="standard")
    vip: Mapped[bool] = mapped_column(Boolean, default=False)


class Premise(db.Model):
    __tablename__ = "premises"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    address: Mapped[str] = mapped_column(String(300))
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    hazards: Mapped[list[str]] = mapped_column(JSON, default=list)
    access_notes: Mapped[str | None] = mapped_column(Text)


class Route(db.Model):
    __tablename__ = "routes"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    assigned_to: Mapped[str | None] = mapped_column(ForeignKey("users.id"), index=True)
    cycle_start: Mapped[dt.date | None] = mapped_column(Date)
    cycle_end: Mapped[dt.date | None] = mapped_column(Date)


class Meter(db.Model):
    __tablename__ = "meters"
    __table_args__ = (Index("ix_meters_route_seq", "route_id", "route_seq"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    number: Mapped[str] = mapped_column(String(40), unique=True)
    premise_id: Mapped[str] = mapped_column(ForeignKey("premises.id"), index=True)
    route_id: Mapped[str | None] = mapped_column(ForeignKey("routes.id"))
    route_seq: Mapped[int | None] = mapped_column(Integer)
    meter_class: Mapped[str] = mapped_column(String(40), default="residential")
    dials: Mapped[int] = mapped_column(Integer, default=5)
    multiplier: Mapped[float] = mapped_column(Float, default=1.0)
    avg_daily: Mapped[float | None] = mapped_column(Float)
    # the previous cycle's billing read: the base of this cycle's hi/lo check
    last_value: Mapped[int | None] = mapped_column(BigInteger)
    last_read_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_read_type: Mapped[str | None] = mapped_column(String(20))
    consecutive_estimates: Mapped[int] = mapped_column(Integer, default=0)


# --- field work ----------------------------------------------------------------------------------


class Job(db.Model):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_assignee_status", "assigned_to", "status"),
        Index("ix_jobs_status_created", "status", "created_at"),
        Index("ix_jobs_priority_created", "priority", "created_at"),
        Index("ix_jobs_type_created", "job_type", "created_at"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    number: Mapped[str] = mapped_column(String(40), unique=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    premise_id: Mapped[str] = mapped_column(ForeignKey("premises.id"))
    job_type: Mapped[str] = mapped_column(String(20))
    summary: Mapped[str] = mapped_column(Text)
    priority: Mapped[int] = mapped_column(Integer, default=3)
    assigned_to: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    scheduled_start: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    scheduled_end: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    requires_signature: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # merged from status events (sync_protocol.merge.merge_status)
    status: Mapped[str] = mapped_column(String(20), default="new")
    round: Mapped[int] = mapped_column(Integer, default=1)
    status_hlc: Mapped[str | None] = mapped_column(String(80))
    # field-editable, per-field last writer wins; field_hlc holds each field's stamp
    resolution_code: Mapped[str | None] = mapped_column(String(40))
    cause: Mapped[str | None] = mapped_column(String(200))
    resolution_note: Mapped[str | None] = mapped_column(Text)
    follow_up_needed: Mapped[bool | None] = mapped_column(Boolean)
    contact_name: Mapped[str | None] = mapped_column(String(120))
    field_hlc: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)


class JobEvent(db.Model):
    """An immutable fact about a job: a status change, a note, materials used, acceptance."""

    __tablename__ = "job_events"
    __table_args__ = (
        Index("ix_job_events_job_source_received", "job_id", "source", "received_at"),
        Index("ix_job_events_kind_recorded", "kind", "recorded_at"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str | None] = mapped_column(String(20))
    round: Mapped[int | None] = mapped_column(Integer)
    text: Mapped[str | None] = mapped_column(Text)
    material_code: Mapped[str | None] = mapped_column(String(40))
    quantity: Mapped[float | None] = mapped_column(Float)
    unit: Mapped[str | None] = mapped_column(String(16))
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    gps: Mapped[dict | None] = mapped_column(JSON)
    hlc: Mapped[str] = mapped_column(String(80))
    source: Mapped[str] = mapped_column(String(10))  # field | office
    author_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    device_id: Mapped[str | None] = mapped_column(ID)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    flags: Mapped[list[str]] = mapped_column(JSON, default=list)


EFFECTIVE_VALUED = "superseded_by IS NULL AND value IS NOT NULL"  # a reading that counts, with a value


class MeterReading(db.Model):
    """An immutable reading or skip. A correction is a new reading that supersedes an earlier one."""

    __tablename__ = "meter_readings"
    __table_args__ = (
        Index("ix_readings_meter_read_at", "meter_id", "read_at"),
        Index("ix_readings_read_at_id", "read_at", "id"),  # newest first, date ranges, CSV
        Index("ix_readings_route_read_at", "route_id", "read_at"),
        Index("ix_readings_reader_read_at", "reader_id", "read_at"),
        Index("ix_readings_supersedes", "supersedes"),
        # covers the value analysis's aggregate (consumption per meter of the effective valued readings in
        # a period): read from this index alone, not from the wide table rows
        Index(
            "ix_readings_effective_read_at",
            "read_at",
            "meter_id",
            "consumption",
            sqlite_where=text(EFFECTIVE_VALUED),
            postgresql_where=text(EFFECTIVE_VALUED),
        ),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    meter_id: Mapped[str] = mapped_column(ForeignKey("meters.id"))
    route_id: Mapped[str | None] = mapped_column(ID, index=True)
    reader_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"), index=True)
    device_id: Mapped[str | None] = mapped_column(ID)
    value: Mapped[int | None] = mapped_column(BigInteger)
    reading_type: Mapped[str] = mapped_column(String(20))
    skip_code: Mapped[str | None] = mapped_column(String(40))
    trouble_code: Mapped[str | None] = mapped_column(String(40))
    comment_code: Mapped[str | None] = mapped_column(String(40))
    note: Mapped[str | None] = mapped_column(Text)
    read_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    supersedes: Mapped[str | None] = mapped_column(ID)
    superseded_by: Mapped[str | None] = mapped_column(ID)
    gps: Mapped[dict | None] = mapped_column(JSON)
    check: Mapped[dict | None] = mapped_column(JSON)
    check_result: Mapped[str | None] = mapped_column(String(20))
    consumption: Mapped[float | None] = mapped_column(Float)
    rollover: Mapped[bool] = mapped_column(Boolean, default=False)
    hlc: Mapped[str] = mapped_column(String(80))
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    flags: Mapped[list[str]] = mapped_column(JSON, default=list)


class ConflictRecord(db.Model):
    """A value that lost to a concurrent one, or field work on a cancelled job: shown to staff and device."""

    __tablename__ = "conflicts"
    __table_args__ = (
        Index("ix_conflicts_device_open", "device_id", "resolved_at"),
        Index("ix_conflicts_open_created", "resolved_at", "created_at"),
        Index("ix_conflicts_created", "created_at"),
        Index("ix_conflicts_kind", "kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(30))
    entity: Mapped[str] = mapped_column(String(20))
    entity_id: Mapped[str] = mapped_column(ID, index=True)
    field: Mapped[str] = mapped_column(String(64))
    winner: Mapped[Any] = mapped_column(JSON)
    winner_hlc: Mapped[str] = mapped_column(String(80))
    loser: Mapped[Any] = mapped_column(JSON)
    loser_hlc: Mapped[str] = mapped_column(String(80))
    change_id: Mapped[str] = mapped_column(ID)
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"), index=True)
    device_id: Mapped[str | None] = mapped_column(ID)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    resolved_by: Mapped[str | None] = mapped_column(ID)


# --- sync bookkeeping ------------------------------------------------------------------------------


class ChangeReceipt(db.Model):
    """Every change a device pushed, with its result: the idempotency record, written in the same
    transaction as the change's effects. Rejected changes keep their payload here, so nothing is lost."""

    __tablename__ = "change_receipts"

    change_id: Mapped[str] = mapped_column(ID, primary_key=True)
    device_id: Mapped[str] = mapped_column(ID, index=True)
    user_id: Mapped[str] = mapped_column(ID)
    entity: Mapped[str] = mapped_column(String(40))
    entity_id: Mapped[str] = mapped_column(ID)
    status: Mapped[str] = mapped_column(String(20), index=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict] = mapped_column(JSON)
    result: Mapped[dict] = mapped_column(JSON)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ChangeLog(db.Model):
    """What changed, for whom: the feed of pulls. `seq` is assigned under the sync counter's lock, so
    sequence order is commit order and a cursor can never skip a late-committing transaction."""

    __tablename__ = "change_log"
    __table_args__ = (Index("ix_change_log_user_seq", "user_id", "seq"),)

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    uid: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[str] = mapped_column(ID)
    entity: Mapped[str] = mapped_column(String(20))
    entity_id: Mapped[str] = mapped_column(ID)
    op: Mapped[str] = mapped_column(String(10))  # upsert | remove
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # The device whose push alone caused this row; its own pulls skip it (the push answer told it
    # everything). NULL when anything else (office, merge, another device) changed the record.
    origin_device_id: Mapped[str | None] = mapped_column(ID, nullable=True)


class SyncCounter(db.Model):
    """One row: the last change-log sequence number handed out."""

    __tablename__ = "sync_counter"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class ServerState(db.Model):
    """Key/value settings of this database: its epoch, the change-log compaction watermark."""

    __tablename__ = "server_state"

    key: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))


class RateLimitWindow(db.Model):
    """Requests counted per key (e.g. enrolment attempts per client address) in a fixed window; kept in
    the database so every worker and host shares the count."""

    __tablename__ = "rate_limit_windows"

    key: Mapped[str] = mapped_column(String(120), primary_key=True)
    window_start: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    count: Mapped[int] = mapped_column(Integer, default=0)


class ApiToken(db.Model):
    """A bearer token for integrations with the staff API, owned by a staff or admin user (stored
    hashed; a device token is never accepted where an API token is expected, nor the reverse)."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(80))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
