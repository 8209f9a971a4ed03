"""Shared handhelds: each enrolled user has a data folder of their own under the app's data root; the
user switch lists them and adds one; enrolment failures say what to do and leave nothing behind; enrolling
a user again renews the handheld's identity and keeps their unsent work."""

from __future__ import annotations

import sqlite3

import pytest

from tests.ui.conftest import install
from tests.ui.helpers import in_range_value, remaining


def test_a_new_handheld_starts_at_enrolment(run_app, data_root):
    ui = run_app(data_root)
    assert ui.app.root.current == "enrol" and ui.app.handheld is None
    assert ui.shows("Enter the server address and the one-time code from the office.")
    assert ui.screen.ids.server.text == "http://127.0.0.1:5000"
    ui.tap("Enrol")
    assert ui.shows("Enter the server address and the code from the office.")
    ui.screenshot("enrol", publish=False)


@pytest.mark.e2e
def test_a_wrong_code_says_what_to_do_and_leaves_nothing_behind(run_app, data_root, ui_server):
    ui = run_app(data_root)
    ui.screen.ids.server.text = ui_server.url
    ui.type("AAAA-BBBB-CCCC", into=ui.screen.ids.code)
    ui.tap("Enrol")
    ui.wait_until(lambda: not ui.screen.busy, "the server answered")
    assert ui.shows("The server did not accept the code. Ask the office for a new one.")
    assert ui.app.root.current == "enrol" and ui.app.handheld is None
    assert [p.name for p in data_root.iterdir() if p.name != "app.json"] == [], "no half-made user folder"


def test_an_address_without_scheme_is_explained(run_app, data_root):
    ui = run_app(data_root)
    ui.screen.ids.server.text = "fieldsync.example.net"
    ui.type("AAAA-BBBB-CCCC", into=ui.screen.ids.code)
    ui.tap("Enrol")
    ui.wait_until(lambda: not ui.screen.busy, "the check answered")
    assert ui.shows("The server address starts with https:// (or http:// on a test network).")


def test_users_have_their_own_data_and_the_switch_lists_them(run_app, reader, lineman, data_root):
    install(lineman, data_root)
    install(reader, data_root)  # the reader used the handheld last
    ui = run_app(data_root)
    assert ui.app.user_id == reader.user_id and ui.shows("Today's route")
    assert ui.app.handheld.data_dir == data_root / reader.user_id
    ui.tap("Switch user")
    assert ui.shows(reader.name) and ui.shows(lineman.name)
    assert ui.shows("Meter reader · using now") and ui.shows("Lineman")
    ui.screenshot("users")
    ui.tap(lineman.name)
    assert ui.app.root.current == "home" and ui.app.user_id == lineman.user_id
    assert ui.app.handheld.data_dir == data_root / lineman.user_id
    assert ui.shows("Open jobs: ") and not ui.shows("Today's route")
    assert ui.app.handheld.readings.routes() == []
    ui.tap("Switch user")
    ui.tap(reader.name)
    assert ui.app.user_id == reader.user_id and ui.shows("Today's route")


@pytest.mark.e2e
def test_enrolling_a_user_already_here_points_to_their_row(run_app, reader, data_root, ui_server):
    install(reader, data_root)
    ui = run_app(data_root)
    ui.tap("Switch user")
    ui.tap("Add a user (enrol)")
    ui.screen.ids.server.text = ui_server.url
    ui.type(ui_server.flask("enroll-code", "reader1").strip(), into=ui.screen.ids.code)
    ui.tap("Enrol")
    ui.wait_until(lambda: not ui.screen.busy, "the server answered")
    assert ui.shows("This user is already on the handheld: pick them in the user list.")
    assert sorted(p.name for p in data_root.iterdir() if p.is_dir()) == [reader.user_id]


@pytest.mark.e2e
def test_enrolling_again_keeps_the_users_unsent_work(run_app, reader, data_root, ui_server):
    install(reader, data_root)
    ui = run_app(data_root)
    handheld = ui.app.handheld
    old_device = handheld.status()["device_id"]
    meter = remaining(handheld)[0]
    value = in_range_value(handheld, meter["id"])
    handheld.readings.record(meter["id"], value)
    ui.tap("Switch user")
    ui.tap("Enrol again")
    assert ui.app.root.current == "enrol"
    assert ui.shows(f"Enrol {reader.name} again with a new code issued for them.")
    ui.type(ui_server.flask("enroll-code", "reader1").strip(), into=ui.screen.ids.code)
    ui.tap("Enrol")
    ui.wait_until(lambda: ui.app.root.current == "home", "home after enrolling again")
    renewed = ui.app.handheld
    assert renewed.status()["device_id"] != old_device
    assert renewed.readings.current_reading(meter["id"])["value"] == value and ui.app.pending == 1
    ui.tap("Sync now")
    ui.wait_for_sync()
    assert ui.app.pending == 0 and ui.app.last_error == ""


def test_data_from_a_newer_app_is_listed_but_left_alone(run_app, reader, lineman, data_root):
    install(lineman, data_root)
    folder = install(reader, data_root)
    with sqlite3.connect(folder / "handheld.db") as db:  # as a newer app version would have left it
        db.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    before = (folder / "handheld.db").read_bytes()
    ui = run_app(data_root)
    assert ui.app.root.current == "users" and ui.app.handheld is None
    assert ui.shows(lineman.name)
    problem = next(t for t in ui.texts() if "written by a newer app" in t)
    ui.tap(reader.user_id)
    assert ui.app.root.current == "users" and ui.shows(problem)
    ui.tap(lineman.name)
    assert ui.app.user_id == lineman.user_id
    assert (folder / "handheld.db").read_bytes() == before
