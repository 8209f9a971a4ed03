"""Serving pulls: a device's scope as pages, after an opaque cursor.

A first pull (no cursor) is a snapshot: the current scope, entity by entity in a fixed order, then the
change log from the sequence number read when the snapshot began (changes made meanwhile are sent again,
which is harmless: records are idempotent upserts). Afterwards the cursor is the last change-log sequence
number delivered. Pages stop at a byte budget and are read from the database in chunks, so neither side
ever holds a whole route in memory.

The cursor names the database epoch and the uid of the change-log row it points at. When the epoch
changed, the row is gone (the database was restored from a backup) or lies below the compaction
watermark, the cursor cannot be served and the device is told `resync_required`.

A device does not pull back its own echo: change-log rows whose `origin_device_id` is the requesting
device (its pushed record stored exactly as sent; the push answer carried the stamp and flags) are left out
of its pages. Every other device of the user still receives them.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from flask import current_app
from sqlalchemy import or_, select

from sync_protocol import ProtocolError

from ..extensions import db
from ..models import ChangeLog, User
from . import changefeed, scope, state
from .office import route_meter_count
from .records import SERIALIZERS, route_data

CHUNK = 200  # rows fetched from the database at a time
MAX_SEQ = 2**63 - 1  # change-log sequence numbers are BIGINTs
MAX_CONFLICT_ID = 2**31 - 1  # conflict ids are INTEGERs


@dataclass(frozen=True)
class Cursor:
    epoch: str
    seq: int  # change-log position (snapshot: where the log resumes afterwards)
    uid: str  # uid of the change-log row at `seq` ("" at 0)
    phase: int | None = None  # snapshot: index into SNAPSHOT_ORDER; None once in log mode
    after: str = ""  # snapshot: last id sent in that phase
    catch_up: bool = False  # log mode still completing a snapshot (until a page ends at the head)

    def encode(self) -> str:
        raw: dict[str, Any] = {"e": self.epoch, "s": self.seq, "u": self.uid}
        if self.phase is not None:
            raw.update(p=self.phase, a=self.after)
        if self.catch_up:
            raw["c"] = 1
        return base64.urlsafe_b64encode(json.dumps(raw, separators=(",", ":")).encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """Parse a cursor this server issued; any other text (wrong shape or types, a sequence number
        outside the log's range) is a validation_error, never a server failure."""
        try:
            raw = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
            cursor = cls(raw["e"], raw["s"], raw["u"], raw.get("p"), raw.get("a", ""))
            catch_up = raw.get("c", 0)
        except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
            raise ProtocolError(
                "validation_error",
                "The cursor is not one this server issued.",
                {"cursor": ["Malformed cursor."]},
            ) from exc
        if not (
            all(isinstance(value, str) for value in (cursor.epoch, cursor.uid, cursor.after))
            and _is_int(cursor.seq)
            and 0 <= cursor.seq <= MAX_SEQ
            and _is_int(catch_up)
            and catch_up in (0, 1)
            and not (catch_up and cursor.phase is not None)
        ):
            raise ProtocolError(
                "validation_error", "The cursor is not one this server issued.", {"cursor": ["Malformed cursor."]}
            )
        if cursor.phase is not None and not (
            _is_int(cursor.phase)
            and 0 <= cursor.phase < len(scope.SNAPSHOT_ORDER)
            and _valid_position(scope.SNAPSHOT_ORDER[cursor.phase], cursor.after)
        ):
            raise ProtocolError(
                "validation_error", "The cursor is not one this server issued.", {"cursor": ["Bad phase."]}
            )
        return replace(cursor, catch_up=catch_up == 1)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _valid_position(entity: str, after: str) -> bool:
    """Conflicts have integer ids, so a snapshot position among them is one (or empty: the start)."""
    if entity != "conflict" or after == "":
        return True
    return after.isascii() and after.isdigit() and int(after) <= MAX_CONFLICT_ID


def _check_servable(cursor: Cursor) -> None:
    """Refuse cursors from another epoch, below compaction, or pointing at a row that is not ours."""
    if cursor.epoch != state.epoch():
        raise ProtocolError("resync_required", "The server's database was replaced (new epoch): resync.")
    if cursor.seq < state.compacted_below():
        raise ProtocolError("resync_required", "Offline longer than the server keeps changes: resync.")
    if cursor.seq == 0:
        if cursor.uid == "":
            return
        raise ProtocolError("resync_required", "Unknown cursor position: resync.")
    uid = db.session.execute(select(ChangeLog.uid).where(ChangeLog.seq == cursor.seq)).scalar()
    if uid != cursor.uid:
        raise ProtocolError(
            "resync_required", "The server's history differs from this cursor (restored backup): resync."
        )


def pull_page(
    user: User, cursor_text: str | None, limit: int | None = None, *, device_id: str | None = None
) -> dict[str, Any]:
    """One page of the user's scope after `cursor_text`: {"cursor", "has_more", "records"}. Change-log rows
    that `device_id`'s own pushes alone caused are left out (its push answers told it everything)."""
    config = current_app.config
    max_records = min(limit or config["PULL_PAGE_RECORDS"], config["PULL_PAGE_RECORDS"])
    budget = config["PULL_PAGE_BYTES"]
    if cursor_text:
        cursor = Cursor.decode(cursor_text)
        _check_servable(cursor)
    else:
        seq, uid = changefeed.head()
        cursor = Cursor(state.epoch(), seq, uid, phase=0, after="")
    page = _Page(max_records, budget)
    if cursor.phase is not None:
        cursor = _snapshot(user.id, cursor, page)
    if cursor.phase is None and not page.full:
        # A snapshot must deliver what the device pushed while it ran (the snapshot's pages may have
        # passed those records' ids already); the echo is skipped only in plain log mode.
        cursor = _log(user.id, None if cursor.catch_up else device_id, cursor, page)
    return {"cursor": cursor.encode(), "has_more": page.full, "records": page.records}


class _Page:
    def __init__(self, max_records: int, budget: int) -> None:
        self.records: list[dict[str, Any]] = []
        self.size = 0
        self.max_records = max_records
        self.budget = budget
        self.full = False

    def add(self, record: dict[str, Any]) -> None:
        """Add a record; the page is full once its records' JSON (as sent, compact, with the comma
        between records) reaches the byte budget, so a page exceeds the budget by less than one record."""
        self.records.append(record)
        self.size += len(json.dumps(record, separators=(",", ":"))) + 1
        if self.size >= self.budget or len(self.records) >= self.max_records:
            self.full = True


def _record(entity: str, entity_id: str, obj: Any) -> dict[str, Any]:
    data = route_data(obj, route_meter_count(obj.id)) if entity == "route" else SERIALIZERS[entity](obj)
    return {"entity": entity, "id": entity_id, "op": "upsert", "data": data}


def _chunks(statement: Any) -> Iterator[Any]:
    for partition in db.session.execute(statement.execution_options(yield_per=CHUNK)).scalars().partitions():
        yield from partition


def _snapshot(user_id: str, cursor: Cursor, page: _Page) -> Cursor:
    phase, after = cursor.phase or 0, cursor.after
    while phase < len(scope.SNAPSHOT_ORDER):
        entity = scope.SNAPSHOT_ORDER[phase]
        model = scope.MODELS[entity]
        statement = scope.SCOPES[entity](user_id)
        if after:
            statement = statement.where(model.id > (int(after) if entity == "conflict" else after))
        statement = statement.order_by(model.id)
        for obj in _chunks(statement):
            if page.full:
                return Cursor(cursor.epoch, cursor.seq, cursor.uid, phase, after)
            after = str(obj.id)
            page.add(_record(entity, after, obj))
        if page.full:
            return Cursor(cursor.epoch, cursor.seq, cursor.uid, phase, after)
        phase, after = phase + 1, ""
    return Cursor(cursor.epoch, cursor.seq, cursor.uid, catch_up=True)


def _log(user_id: str, device_id: str | None, cursor: Cursor, page: _Page) -> Cursor:
    seq, uid = cursor.seq, cursor.uid
    head_seq, head_uid = changefeed.head()
    statement = select(ChangeLog).where(ChangeLog.user_id == user_id, ChangeLog.seq > seq, ChangeLog.seq <= head_seq)
    if device_id is not None:
        # the device's echo: skipped rows need no cursor position, since a page that ends early
        # moves the cursor to the head below, and a full one stops at a row it delivered
        statement = statement.where(or_(ChangeLog.origin_device_id.is_(None), ChangeLog.origin_device_id != device_id))
    statement = statement.order_by(ChangeLog.seq)
    sent: set[tuple[str, str]] = set()
    for row in _chunks(statement):
        if page.full:
            return Cursor(cursor.epoch, seq, uid, catch_up=cursor.catch_up)
        seq, uid = row.seq, row.uid
        key = (row.entity, row.entity_id)
        if key in sent:
            continue
        sent.add(key)
        # The record's state now decides, not the row's op: a record removed and later re-added (or the
        # reverse) within one page must end as it is now.
        obj = scope.in_scope(row.entity, row.entity_id, user_id)
        if obj is None:
            page.add({"entity": row.entity, "id": row.entity_id, "op": "remove", "data": None})
        else:
            page.add(_record(row.entity, row.entity_id, obj))
    if page.full:
        return Cursor(cursor.epoch, seq, uid, catch_up=cursor.catch_up)
    # nothing more for this user up to the head: move to the head, so the cursor stays servable
    return Cursor(cursor.epoch, head_seq, head_uid)
