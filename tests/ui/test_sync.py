"""Syncing from the app against real server processes: by hand with progress and an outcome in words,
on a worker thread; conflicts and refusals listed with what happened; offline shown plainly with the
error in words; a sync as soon as the server answers again, and on the periodic timer."""

from __future__ import annotations

import threading
import time

import pytest

from server.models import Job
from tests.e2e.conftest import start_server
from tests.ui.conftest import enrolled_template, install, new_job, server_rows, service_centre, user_id
from tests.ui.helpers import in_range_value, remaining


@pytest.mark.e2e
def test_manual_sync_shows_progress_and_outcome_and_runs_off_the_ui_thread(run_app, reader, data_root, ui_server):
    install(reader, data_root)
    ui = run_app(data_root)
    handheld = ui.app.handheld
    meter = remaining(handheld)[0]
    reading = handheld.readings.record(meter["id"], in_range_value(handheld, meter["id"]))
    ui.app.changed()
    ui.frames()
    assert ui.shows("Changes waiting to be sent: 1")

    threads, stages = [], []
    real_sync = handheld.sync

    def sync(progress, cancel):
        threads.append(threading.current_thread())

        def each_shown(stage, done, total):  # wait until the screen took each report (the UI batches them)
            progress(stage, done, total)
            deadline = time.monotonic() + 30
            while ui.app._progress is not None and time.monotonic() < deadline:
                time.sleep(0.005)

        return real_sync(progress=each_shown, cancel=cancel)

    handheld.sync = sync
    ui.app.bind(sync_stage=lambda _app, text: stages.append(text))
    ui.tap("Sync now")
    assert ui.app.root.current == "sync"
    ui.wait_for_sync()

    assert threads and threads[0] is not threading.main_thread(), "sync runs on a worker thread"
    assert "Sending your changes: 1/1" in stages and stages[-1] == "Finished"
    assert any(s.startswith("Receiving updates") for s in stages)
    assert ui.screen.ids.bar.width > 0 and ui.app.sync_fraction == 1.0
    assert ui.shows("Changes sent: 1 (1 applied, 0 conflicts, 0 refused).")
    assert ui.shows("Changes waiting to be sent: 0") and ui.app.connection == "online"
    assert handheld.outbox() == []
    (row,) = server_rows(ui_server, "SELECT value FROM meter_readings WHERE id = :id", id=reading["id"])
    assert row["value"] == reading["value"]
    ui.screenshot("sync", publish=True)


@pytest.mark.e2e
def test_conflicts_and_refusals_are_listed_with_what_happened(run_app, lineman, data_root, ui_server, tmp_path):
    cancelled = new_job(ui_server, tmp_path, "lineman1", "Meter cabinet door broken")
    moved = new_job(ui_server, tmp_path, "lineman1", "Streetlight feeder check")
    install(lineman, data_root)
    ui = run_app(data_root)
    jobs = ui.app.handheld.jobs
    ui.app.sync_now()
    ui.wait_for_sync()
    jobs.arrive(cancelled)  # the crew works offline...
    jobs.add_note(moved, "Feeder looks fine")
    with service_centre(ui_server, tmp_path):  # ...while the office cancels one job and gives the other away
        from server.extensions import db
        from server.services import office

        office.cancel_job(db.session.get(Job, cancelled), reason="duplicate")
        office.assign_job(db.session.get(Job, moved), user_id("lineman2"))
    ui.show("sync")
    ui.tap("Sync now")
    ui.wait_for_sync()

    assert ui.shows("Conflicts: 1") and ui.shows("Refused by the server: 1")
    number = jobs.find(cancelled)["number"]
    assert any(f"Job {number}: Work recorded after the office cancelled the job" in t for t in ui.texts())
    assert any('Status: kept "Cancelled by the office"; yours, "On site", is saved' in t for t in ui.texts())
    # the job left this handheld with its reassignment: it is named by its id
    assert any(f"Job {moved}: this job is not assigned to you" in t for t in ui.texts())
    assert ui.app.handheld.status()["unseen_conflicts"] == 0, "seen once shown"
    assert [r["code"] for r in ui.app.handheld.rejected()] == ["not_in_scope"]
    ui.screenshot("sync-conflicts")


@pytest.mark.e2e
def test_offline_in_plain_words_then_sync_as_soon_as_the_server_answers(run_app, data_root, tmp_path):
    with start_server(tmp_path / "server", "sqlite") as live:
        template = enrolled_template(live, tmp_path / "template", "reader1")
        install(template, data_root)
        live.stop()
        ui = run_app(data_root)
        ui.app.probe()
        ui.wait_until(lambda: not ui.app._probing, "the probe answered")
        assert ui.app.connection == "offline"
        handheld = ui.app.handheld
        meter = remaining(handheld)[0]
        ui.tap("Read next meter")
        handheld_value = in_range_value(handheld, meter["id"])
        ui.keypad(f"{handheld_value:0{meter['dials']}d}")
        ui.tap("Save")
        ui.tap("Back", exact=False)
        ui.tap("Sync now")
        ui.wait_for_sync()
        assert ui.app.connection == "offline"
        words = "Cannot reach the server. Your work is saved on the handheld and will be sent later."
        assert ui.shows(words)
        ui.tap("Back", exact=False)
        assert ui.shows(f"Last error: {words}") and ui.shows("Changes waiting to be sent: 1")
        ui.screenshot("home-offline")

        live.start()  # the link comes back: the next probe finds it and a sync starts by itself
        ui.app.probe()
        ui.wait_until(lambda: ui.app.connection == "syncing" or ui.app.pending == 0, "a sync started")
        ui.wait_for_sync()
        assert ui.app.pending == 0 and ui.app.last_error == "" and ui.app.connection == "online"
        assert ui.shows("Changes waiting to be sent: 0") and not ui.shows("Last error")
        reading = handheld.readings.current_reading(meter["id"])
        (row,) = server_rows(live, "SELECT meter_id, value FROM meter_readings WHERE id = :id", id=reading["id"])
        assert row == {"meter_id": meter["id"], "value": handheld_value}


@pytest.mark.e2e
def test_periodic_sync_sends_work_without_a_tap(run_app, reader, data_root, ui_server):
    install(reader, data_root)
    ui = run_app(data_root, auto_sync_s=0.2)
    handheld = ui.app.handheld
    meter = remaining(handheld)[0]
    skip = handheld.readings.skip(meter["id"], "no_access")
    ui.wait_until(lambda: not handheld.outbox() and not ui.app.syncing, "the timer's sync sent the skip")
    rows = server_rows(ui_server, "SELECT skip_code FROM meter_readings WHERE id = :id", id=skip["id"])
    assert [r["skip_code"] for r in rows] == ["no_access"]


@pytest.mark.e2e
def test_a_job_taken_away_while_open_on_screen_leads_home(run_app, lineman, data_root, ui_server, tmp_path):
    job_id = new_job(ui_server, tmp_path, "lineman1", "Check the recloser")
    install(lineman, data_root)
    ui = run_app(data_root)
    ui.app.sync_now()
    ui.wait_for_sync()
    ui.show("job", job_id=job_id)
    assert ui.shows("Check the recloser")
    with service_centre(ui_server, tmp_path):
        from server.extensions import db
        from server.services import office

        office.assign_job(db.session.get(Job, job_id), user_id("lineman2"))
    ui.app.sync_now("auto")  # as the periodic timer does, with the job open on screen
    ui.wait_for_sync()
    assert ui.app.last_error == ""
    assert ui.app.root.current == "home", "the job left this handheld: home, not a crash"
    assert not any("Check the recloser" in t for t in ui.texts())
