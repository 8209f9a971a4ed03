"""Restore detection through hello's `last_ack`: a device names the newest change the server
acknowledged to it; a server without a receipt of it (restored from an older backup) answers
resync_required, so the device re-sends its journal (DESIGN.md invariant 8)."""

from __future__ import annotations

from sqlalchemy import delete

from server.extensions import db
from server.models import ChangeReceipt
from tests.server.helpers import assert_error, device

HELLO = "/api/v1/sync/hello"


def _hello(handheld, last_ack):
    return handheld.client.get(HELLO, headers=handheld.headers, query_string={"last_ack": last_ack})


def test_hello_accepts_a_change_the_server_acknowledged(app, client, world):
    reader = device(app, client, "reader")
    change = reader.reading(world.meters[0], 1100)
    assert reader.push(change).get_json()["results"][0]["status"] == "applied"
    assert _hello(reader, change["change_id"]).status_code == 200


def test_hello_asks_for_a_resync_when_the_server_lost_an_acknowledged_change(app, client, world):
    reader = device(app, client, "reader")
    change = reader.reading(world.meters[0], 1100)
    reader.push(change)
    with app.app_context():  # as a restore from a backup taken before the push would
        db.session.execute(delete(ChangeReceipt).where(ChangeReceipt.change_id == change["change_id"]))
        db.session.commit()
    error = assert_error(_hello(reader, change["change_id"]), 409, "resync_required")
    assert "restored" in error["message"]


def test_another_users_change_id_is_not_proof_of_this_devices_work(app, client, world):
    reader = device(app, client, "reader")
    other = device(app, client, "reader2")
    change = other.reading(world.other_meters[0], 1100)
    assert other.push(change).get_json()["results"][0]["status"] == "applied"
    assert_error(_hello(reader, change["change_id"]), 409, "resync_required")


def test_an_oversized_last_ack_is_a_validation_error(app, client, world):
    reader = device(app, client, "reader")
    assert_error(_hello(reader, "x" * 65), 422, "validation_error")
