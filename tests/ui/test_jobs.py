"""The lineman's screens over jobs synced from the demo server: the list in the core's order with VIP
and safety customers marked, and a job's detail with hazards first and big buttons for exactly the
lifecycle steps allowed now. Each test works on its own copy of the handheld's data."""

from __future__ import annotations

import pytest

from pda_client.app.widgets import Badge
from tests.ui.conftest import install


@pytest.fixture
def ui(run_app, lineman, data_root):
    install(lineman, data_root)
    return run_app(data_root)


def action_buttons(ui) -> list[str]:
    return [button.text for button in reversed(ui.screen.ids.actions.children)]


def test_job_list_is_in_the_cores_order_with_vip_and_safety_marked(ui):
    jobs = ui.app.handheld.jobs.list()
    assert len(jobs) >= 4
    ui.tap("All jobs")
    assert ui.app.root.current == "jobs"
    rows = ui.screen.ids.list.data
    assert [r["job_id"] for r in rows] == [j["id"] for j in jobs]
    assert [(r["vip"], r["safety"], r["hazard"]) for r in rows] == [
        (j["vip"], j["safety"], bool(j["hazards"])) for j in jobs
    ]
    assert any(j["vip"] for j in jobs) and any(j["safety"] for j in jobs)
    shown = {w.heading: w for w in ui.screen.ids.list.layout_manager.children}
    checked = 0
    for job in jobs:
        row = next((w for heading, w in shown.items() if job["number"] in heading), None)
        if row is None:
            continue  # scrolled out of view
        checked += 1
        badges = {b.text for b in row.walk(restrict=True) if isinstance(b, Badge) and b.opacity == 1}
        assert ("VIP" in badges) == job["vip"] and ("SAFETY" in badges) == job["safety"]
    assert checked >= 4
    ui.screenshot("job-list")
    ui.tap("Show finished")
    assert len(ui.screen.ids.list.data) == len(ui.app.handheld.jobs.list(include_finished=True))


def test_job_detail_shows_hazards_first_and_only_the_allowed_actions(ui, hazard_job):
    detail = ui.app.handheld.jobs.detail(hazard_job)
    ui.tap(detail["number"], exact=False)
    assert ui.app.root.current == "job" and ui.screen.job_id == hazard_job
    hazards = ui.screen.ids.hazards
    assert hazards.text.startswith("HAZARDS: ") and hazards.height > 0
    assert hazards.y > ui.screen.ids.status.y > ui.screen.ids.actions.y, "hazards above everything else"
    assert detail["status"] == "assigned" and sorted(detail["actions"]) == ["arrive", "start_travel"]
    assert action_buttons(ui) == ["Accept job", "Start travel", "Arrived on site"]
    assert ui.shows("Status: Assigned")
    assert ui.shows(f"Customer: {detail['customer']['name']}")
    ui.screenshot("job-detail", publish=True)


def test_lifecycle_through_the_buttons(ui, hazard_job):
    jobs = ui.app.handheld.jobs
    ui.show("job", job_id=hazard_job)
    ui.tap("Start travel")
    assert jobs.find(hazard_job)["status"] == "en_route"
    assert action_buttons(ui) == ["Arrived on site", "Cannot complete"]
    ui.tap("Arrived on site")
    assert jobs.find(hazard_job)["status"] == "on_site"
    assert ui.shows("(running)"), "time on site runs from arrival"
    assert action_buttons(ui) == ["Complete job", "Put on hold", "Cannot complete"]
    ui.type("waiting for a bucket truck", into=ui.screen.ids.note)
    ui.tap("Put on hold")
    assert jobs.find(hazard_job)["status"] == "on_hold"
    assert action_buttons(ui) == ["Resume work", "Cannot complete"]
    notes = [e["text"] for e in jobs.detail(hazard_job)["events"] if e["kind"] == "note"]
    assert notes == ["waiting for a bucket truck"], "the hold's reason is a note"
    ui.tap("Resume work")
    assert jobs.find(hazard_job)["status"] == "on_site"

    ui.tap("Complete job")
    assert ui.shows("Complete job: pick the resolution")
    ui.tap("Cancel")
    assert jobs.find(hazard_job)["status"] == "on_site", "no resolution code, no completion"
    ui.tap("Complete job")
    ui.screenshot("job-complete-picker")
    ui.type("new fuse, supply back", into=ui.roots()[0].ids.note)
    ui.tap("Part replaced")
    job = jobs.find(hazard_job)
    assert (job["status"], job["resolution_code"], job["resolution_note"]) == (
        "completed", "replaced", "new fuse, supply back"
    )
    assert ui.shows("Status: Completed") and ui.shows("Resolution: Part replaced")
    assert ui.shows("Nothing more to do from the field.")
    assert ui.app.pending == len(ui.app.handheld.outbox()) > 0


def test_notes_and_materials_are_recorded(ui, hazard_job):
    ui.show("job", job_id=hazard_job)
    ui.type("Customer asks for a call first", into=ui.screen.ids.note)
    ui.tap("Add note")
    ui.type("FUSE-63A", into=ui.screen.ids.material)
    ui.type("2", into=ui.screen.ids.quantity)
    ui.tap("Add material")
    events = ui.app.handheld.jobs.detail(hazard_job)["events"]
    assert [e["text"] for e in events if e["kind"] == "note"] == ["Customer asks for a call first"]
    assert [(e["material_code"], e["quantity"], e["unit"]) for e in events if e["kind"] == "material"] == [
        ("FUSE-63A", 2.0, "pcs")
    ]
    assert any("2 pcs FUSE-63A" in t and "not sent yet" in t for t in ui.texts())
    ui.tap("Add note")  # an empty note: the core's message is shown, nothing stored
    assert ui.shows("Write something in the note.")
    assert len([e for e in ui.app.handheld.jobs.detail(hazard_job)["events"] if e["kind"] == "note"]) == 1


def test_opening_a_job_no_longer_on_the_handheld_leads_home(ui):
    ui.tap("All jobs")
    ui.show("job", job_id="J-not-here")
    ui.frames()
    assert ui.app.root.current == "home"
