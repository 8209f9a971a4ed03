"""The whole working day through the app, against a real server process: enrol a meter reader with the
one-time code, sync, read three meters (one out of range confirmed by typing it again, one skipped with a
code), sync; then, on the same handheld, add a lineman with the user switch, complete a job with a
resolution code, sync; and find every bit of it in the server's database."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import start_server
from tests.ui.conftest import new_job, server_rows
from tests.ui.helpers import digits, in_range_value, out_of_range_value, remaining


def enrol(ui, url: str, code: str) -> None:
    assert ui.app.root.current == "enrol"
    server = ui.screen.ids.server
    server.text = ""  # the field comes filled with the default address
    ui.type(url, into=server)
    ui.type(code, into=ui.screen.ids.code)
    ui.tap("Enrol")
    ui.wait_until(lambda: ui.app.root.current == "home", "the home screen after enrolment")


def sync_from_home(ui) -> None:
    ui.tap("Sync now")
    assert ui.app.root.current == "sync"
    ui.wait_for_sync()
    assert ui.app.last_error == "", ui.app.last_error
    ui.tap("Back", exact=False)
    assert ui.app.root.current == "home"


@pytest.mark.e2e
def test_reader_and_lineman_work_reaches_the_server(run_app, data_root: Path, tmp_path: Path):
    with start_server(tmp_path / "server", "sqlite") as live:
        job_id = new_job(live, tmp_path, "lineman3", "Replace blown fuse at the cabinet")
        ui = run_app(data_root)

        # --- the meter reader -------------------------------------------------------------------------
        enrol(ui, live.url, live.flask("enroll-code", "reader1").strip())
        reader = ui.app.handheld
        reader_id = reader.status()["user"]["id"]
        assert reader.status()["user"]["role"] == "meter_reader"
        assert ui.shows("Changes waiting to be sent: 0")
        sync_from_home(ui)
        route = reader.readings.routes()[0]
        assert ui.shows(f"0 read · 0 skipped · {route['progress']['total']} to read")

        first, second, third = remaining(reader)[:3]
        good = in_range_value(reader, first["id"])
        odd = out_of_range_value(reader, second["id"])

        ui.tap("Read next meter")
        assert ui.screen.number == first["number"]
        ui.keypad(digits(good, first["dials"]))
        ui.tap("Save")
        assert ui.screen.number == second["number"], "after a save the next meter to read is shown"
        assert ui.shows(f"Saved {first['number']}: {good}")

        ui.keypad(digits(odd, second["dials"]))
        ui.tap("Save")
        assert ui.screen.number == second["number"], "an out-of-range value is not saved on the first entry"
        assert ui.shows("Type it again to confirm"), ui.texts()
        ui.keypad(digits(odd, second["dials"]))
        ui.tap("Save")
        assert ui.screen.number == third["number"]

        ui.tap("Skip...")
        ui.tap("Dog on premises")
        assert ui.screen.number == remaining(reader)[0]["number"]

        reading_ids = [reader.readings.current_reading(m["id"])["id"] for m in (first, second, third)]
        progress = reader.readings.progress(route["id"])
        assert (progress["read"], progress["skipped"]) == (2, 1)
        assert ui.app.pending == 3 == len(reader.outbox())
        ui.tap("Back", exact=False)
        assert ui.app.root.current == "home"
        assert ui.shows("Changes waiting to be sent: 3")
        sync_from_home(ui)
        assert reader.outbox() == []
        assert ui.shows("Changes waiting to be sent: 0")
        assert ui.shows("2 read · 1 skipped")

        # --- a lineman on the same handheld ------------------------------------------------------------------
        ui.tap("Switch user")
        assert ui.app.root.current == "users"
        ui.tap("Add a user (enrol)")
        enrol(ui, live.url, live.flask("enroll-code", "lineman3").strip())
        lineman = ui.app.handheld
        assert lineman is not reader and lineman.status()["user"]["role"] == "lineman"
        assert lineman.readings.routes() == [], "the lineman's data folder holds none of the reader's work"
        sync_from_home(ui)
        number = lineman.jobs.find(job_id)["number"]
        ui.tap("All jobs")
        ui.tap(number, exact=False)
        assert ui.app.root.current == "job" and ui.screen.job_id == job_id
        for step in ("Accept job", "Start travel", "Arrived on site"):
            ui.tap(step)
        ui.type("Fuse 63A replaced", into=ui.screen.ids.note)
        ui.tap("Add note")
        ui.tap("Complete job")
        ui.tap("Repaired")
        assert lineman.jobs.find(job_id)["status"] == "completed"
        assert ui.shows("Status: Completed")
        ui.app.show("home", reset=True)
        ui.frames()
        sync_from_home(ui)
        assert lineman.outbox() == []
        users = {a.user_id for a in ui.app.accounts.list()}
        assert users == {reader_id, lineman.status()["user"]["id"]}, "each user has a data folder of their own"

        # --- what the service centre sees --------------------------------------------------------------------
        readings = {
            r["meter_id"]: r
            for r in server_rows(
                live,
                "SELECT meter_id, value, reading_type, skip_code, check_result FROM meter_readings "
                "WHERE id IN (:a, :b, :c)",
                **dict(zip("abc", reading_ids, strict=True)),
            )
        }
        assert set(readings) == {first["id"], second["id"], third["id"]}
        assert readings[first["id"]]["value"] == good
        assert readings[first["id"]]["reading_type"] == "regular"
        assert readings[first["id"]]["check_result"] == "in_range"
        assert readings[second["id"]]["value"] == odd
        assert readings[second["id"]]["reading_type"] == "verified"
        assert readings[second["id"]]["check_result"] in ("low", "high")
        assert readings[third["id"]]["value"] is None
        assert readings[third["id"]]["skip_code"] == "dog"
        (job,) = server_rows(live, "SELECT status, resolution_code FROM jobs WHERE id = :id", id=job_id)
        assert job == {"status": "completed", "resolution_code": "repaired"}
        events = server_rows(
            live, "SELECT kind, status, text FROM job_events WHERE job_id = :id AND source = 'field'", id=job_id
        )
        assert {e["status"] for e in events if e["kind"] == "status"} == {"en_route", "on_site", "completed"}
        assert any(e["kind"] == "accepted" for e in events)
        assert [e["text"] for e in events if e["kind"] == "note"] == ["Fuse 63A replaced"]
