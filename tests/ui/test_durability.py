"""Closing or killing the app loses nothing: every action is committed by the core before the screen
moves on, so a second connection sees it at once, and an app killed outright (SIGKILL: no on_stop, no
clean close) leaves the reading and its outbox entry in the database."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pda_client import Handheld
from tests.ui.conftest import install
from tests.ui.driver import ROOT
from tests.ui.helpers import digits, in_range_value, remaining


def test_an_action_is_committed_before_the_screen_moves_on(run_app, reader, data_root):
    folder = install(reader, data_root)
    ui = run_app(data_root)
    meter = remaining(ui.app.handheld)[0]
    value = in_range_value(ui.app.handheld, meter["id"])
    ui.tap("Read next meter")
    ui.keypad(digits(value, meter["dials"]))
    ui.tap("Save")
    other = Handheld(folder)  # another connection: sees only committed data
    try:
        assert other.readings.current_reading(meter["id"])["value"] == value
        assert [e["entity_id"] for e in other.outbox()] == [other.readings.current_reading(meter["id"])["id"]]
    finally:
        other.close()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_killing_the_app_right_after_a_save_loses_nothing(reader, data_root):
    folder = install(reader, data_root)
    probe = Handheld(folder)
    try:
        meter = remaining(probe)[0]
        value = in_range_value(probe, meter["id"])
    finally:
        probe.close()
    result = subprocess.run(
        [sys.executable, "-m", "tests.ui.in_own_process", "kill", str(data_root), digits(value, meter["dials"])],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == -9, result.stderr[-3000:]
    assert "saved 1" in result.stdout
    after = Handheld(folder)
    try:
        reading = after.readings.current_reading(meter["id"])
        assert reading["value"] == value
        assert [e["entity_id"] for e in after.outbox()] == [reading["id"]]
    finally:
        after.close()
