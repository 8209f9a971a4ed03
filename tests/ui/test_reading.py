"""The meter reader's screens over a synced route from the demo server: home, the route in walk order,
and reading entry with its keypad, expected range, re-entry of out-of-range values, remarks and skips.
Each test works on its own copy of the handheld's data; what is stored is checked through the core."""

from __future__ import annotations

import pytest

from tests.ui.conftest import install
from tests.ui.helpers import digits, in_range_value, out_of_range_value, remaining


@pytest.fixture
def ui(run_app, reader, data_root):
    install(reader, data_root)
    return run_app(data_root)


def open_next_meter(ui) -> dict:
    meter = remaining(ui.app.handheld)[0]
    ui.tap("Read next meter")
    assert ui.app.root.current == "reading" and ui.screen.meter_id == meter["id"]
    return meter


def current(ui, meter_id: str) -> dict:
    return ui.app.handheld.readings.current_reading(meter_id)


def test_home_shows_connection_pending_last_sync_and_route_progress(ui, reader):
    handheld = ui.app.handheld
    status = handheld.status()
    route = status["routes"][0]
    assert ui.app.root.current == "home"
    assert ui.shows(reader.name)
    assert ui.shows("Offline: your work is saved on the handheld"), "nothing has reached the server yet"
    assert ui.shows("Changes waiting to be sent: 0")
    assert ui.shows("Last sync: today ")
    assert ui.shows(f"{route['code']} · {route['name']}")
    assert ui.shows(f"0 read · 0 skipped · {route['total']} to read")
    ui.app.probe()
    ui.wait_until(lambda: ui.app.connection == "online", "the probe found the server")
    assert ui.shows("Online")
    ui.screenshot("home", publish=True)


def test_in_range_reading_takes_dials_plus_one_taps_and_moves_to_the_next_meter(ui):
    handheld = ui.app.handheld
    meter = open_next_meter(ui)
    following = remaining(handheld)[1]
    value = in_range_value(handheld, meter["id"])
    expected = handheld.readings.expected_range(meter["id"])
    assert ui.shows(f"Last reading: {meter['last_value']} on ")
    assert ui.shows(f"Expected now: {expected['low']} to {expected['high']}")
    ui.screenshot("reading")

    ui.taps = 0
    ui.keypad(digits(value, meter["dials"]))
    assert ui.screen.ids.display.text == digits(value, meter["dials"])
    ui.tap("Save")
    assert ui.taps == meter["dials"] + 1 == 6, "a 5-dial reading: five digits and Save"

    assert ui.screen.meter_id == following["id"], "the next meter still to read comes up by itself"
    assert ui.shows(f"Saved {meter['number']}: {value} (Regular read)")
    reading = current(ui, meter["id"])
    assert (reading["value"], reading["reading_type"], reading["check"]["result"]) == (value, "regular", "in_range")
    assert reading["check"]["entries"] == 1
    assert ui.app.pending == 1


def test_out_of_range_value_is_saved_only_when_typed_again_the_same(ui):
    handheld = ui.app.handheld
    meter = open_next_meter(ui)
    odd = out_of_range_value(handheld, meter["id"])
    typed = digits(odd, meter["dials"])
    ui.taps = 0
    ui.keypad(typed)
    ui.tap("Save")
    assert ui.screen.meter_id == meter["id"] and current(ui, meter["id"]) is None
    assert ui.screen.prompt_kind == "warn"
    assert ui.shows(f"{odd} is ") and ui.shows("Type it again to confirm, or pick a remark.")
    ui.screenshot("reading-out-of-range", publish=True)

    ui.keypad(typed)
    ui.tap("Save")
    assert ui.taps == 2 * (meter["dials"] + 1)
    reading = current(ui, meter["id"])
    assert reading["value"] == odd and reading["reading_type"] == "verified"
    assert reading["check"]["entries"] == 2 and reading["check"]["result"] in ("low", "high")
    assert ui.screen.meter_id != meter["id"]


def test_walking_meters_in_a_row_costs_no_taps_between_them(ui):
    handheld = ui.app.handheld
    walk = remaining(handheld)[:3]
    ui.tap("Read next meter")
    ui.taps = 0
    for meter in walk:
        assert ui.screen.meter_id == meter["id"]
        ui.keypad(digits(in_range_value(handheld, meter["id"]), meter["dials"]))
        ui.tap("Save")
    assert ui.taps == sum(m["dials"] + 1 for m in walk)
    assert [handheld.readings.current_reading(m["id"])["check"]["result"] for m in walk] == ["in_range"] * 3


def test_a_different_second_entry_is_checked_afresh(ui):
    handheld = ui.app.handheld
    meter = open_next_meter(ui)
    odd = out_of_range_value(handheld, meter["id"])
    good = in_range_value(handheld, meter["id"])
    ui.keypad(digits(odd, meter["dials"]))
    ui.tap("Save")
    assert ui.screen.prompt_kind == "warn"
    ui.keypad(digits(good, meter["dials"]))  # the reader saw the typo and typed the right value
    ui.tap("Save")
    reading = current(ui, meter["id"])
    assert (reading["value"], reading["reading_type"], reading["check"]["entries"]) == (good, "regular", 1)


def test_out_of_range_value_with_a_remark(ui):
    handheld = ui.app.handheld
    meter = open_next_meter(ui)
    odd = out_of_range_value(handheld, meter["id"])
    ui.taps = 0
    ui.keypad(digits(odd, meter["dials"]))
    ui.tap("Save")
    ui.tap("Remark...")
    assert ui.shows(f"Remark for {odd}")
    ui.tap("High use confirmed with customer")
    assert ui.taps == meter["dials"] + 3
    reading = current(ui, meter["id"])
    assert (reading["value"], reading["comment_code"], reading["check"]["entries"]) == (
        odd, "high_use_confirmed", 1
    )


def test_skip_with_a_code_takes_two_taps(ui):
    meter = open_next_meter(ui)
    ui.taps = 0
    ui.tap("Skip...")
    assert ui.shows(f"Why can meter {meter['number']} not be read?")
    ui.tap("Locked gate")
    assert ui.taps == 2
    reading = current(ui, meter["id"])
    assert (reading["value"], reading["skip_code"]) == (None, "locked_gate")
    assert ui.shows(f"Skipped {meter['number']}: Locked gate")


def test_reading_type_condition_and_note_are_stored(ui):
    handheld = ui.app.handheld
    meter = open_next_meter(ui)
    value = in_range_value(handheld, meter["id"])
    ui.tap("Regular read")
    ui.tap("Customer read")
    ui.tap("Condition...")
    ui.tap("Broken glass")
    ui.type("glass cracked, value readable", into=ui.screen.ids.note)
    ui.keypad(digits(value, meter["dials"]))
    ui.tap("Save")
    reading = current(ui, meter["id"])
    assert (reading["reading_type"], reading["trouble_code"], reading["note"]) == (
        "customer_read", "broken_glass", "glass cracked, value readable"
    )


def test_keypad_stops_at_the_dials_and_deletes(ui):
    meter = open_next_meter(ui)
    ui.keypad("1234567")
    assert ui.screen.ids.display.text == "12345"[: meter["dials"]]
    ui.tap("Del")
    assert ui.screen.ids.display.text == "1234"


def test_save_with_nothing_typed_asks_for_the_reading(ui):
    meter = open_next_meter(ui)
    ui.tap("Save")
    assert ui.shows("Type the reading first.")
    assert current(ui, meter["id"]) is None


def test_route_in_walk_order_with_states_next_meter_and_search(ui):
    handheld = ui.app.handheld
    route = handheld.readings.routes()[0]
    walk = handheld.readings.walk(route["id"])
    handheld.readings.record(walk[0]["id"], in_range_value(handheld, walk[0]["id"]))
    handheld.readings.skip(walk[1]["id"], "dog")
    handheld.readings.record(walk[3]["id"], in_range_value(handheld, walk[3]["id"]))
    ui.tap("Route list")
    assert ui.app.root.current == "route"
    rows = ui.screen.ids.list.data
    assert [r["meter_id"] for r in rows] == [m["id"] for m in walk], "walk order"
    assert rows[0]["state_text"].startswith("Read: ") and rows[1]["state_text"] == "Skipped: Dog on premises"
    assert rows[2]["state_text"] == "To read"
    assert ui.shows(f"2 read · 1 skipped · {len(walk) - 3} to read")
    assert ui.shows(f"Next: {walk[2]['number']} (#{walk[2]['route_seq']})"), "the first meter still to read"
    ui.screenshot("route", publish=True)

    ui.tap("To read")
    assert [r["meter_id"] for r in ui.screen.ids.list.data][:2] == [walk[2]["id"], walk[4]["id"]]
    ui.tap("All")
    wanted = walk[40]
    ui.type(wanted["number"], into=ui.screen.ids.search)
    assert [r["meter_id"] for r in ui.screen.ids.list.data] == [wanted["id"]]
    ui.tap("Find")
    assert ui.app.root.current == "reading" and ui.screen.meter_id == wanted["id"]
    ui.tap("Back", exact=False)
    ui.tap(f"Next: {walk[2]['number']}", exact=False)
    assert ui.screen.meter_id == walk[2]["id"]


def test_search_for_an_unknown_meter_says_so(ui):
    ui.tap("Route list")
    ui.type("ZZ999", into=ui.screen.ids.search)
    ui.tap("Find")
    assert ui.app.root.current == "route"
    assert ui.shows("No meter ZZ999 on this route.")


def test_hazards_are_shown_before_reading(ui):
    handheld = ui.app.handheld
    route = handheld.readings.routes()[0]
    meter = next(m for m in handheld.readings.walk(route["id"]) if m["hazards"])
    ui.show("reading", meter_id=meter["id"])
    assert ui.screen.ids.hazards.text.startswith("HAZARDS: ")
    assert ui.screen.ids.hazards.height > 0 and ui.screen.ids.hazards.opacity == 1
