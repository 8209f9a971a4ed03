"""Made for gloves and sunlight: every touch target at least 48 dp on every screen (popups included),
text no smaller than 16 sp, every text colour at least 7:1 against its background, and the 480 x 800
portrait layout scaling up to a bigger screen without anything falling off it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from kivy.core.window import Window
from kivy.metrics import dp, sp
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.label import Label
from kivy.uix.textinput import TextInput

from pda_client.app import theme
from tests.ui.conftest import install
from tests.ui.driver import ROOT
from tests.ui.helpers import out_of_range_value, remaining


def targets(ui) -> list:
    return [w for w in ui.widgets() if isinstance(w, ButtonBehavior | TextInput)]


def check(ui, where: str) -> int:
    """Touch targets and text sizes of what is on screen now; returns how many targets were checked."""
    found = targets(ui)
    assert found, where
    for widget in found:
        name = getattr(widget, "text", "") or type(widget).__name__
        assert widget.width >= dp(theme.TOUCH_MIN) - 0.5, f"{where}: {name!r} is {widget.width:.0f} wide"
        assert widget.height >= dp(theme.TOUCH_MIN) - 0.5, f"{where}: {name!r} is {widget.height:.0f} high"
        left, _bottom = widget.to_window(widget.x, widget.y)
        assert left >= -0.5 and left + widget.width <= Window.width + 0.5, f"{where}: {name!r} leaves the screen"
    for label in (w for w in ui.widgets() if isinstance(w, Label | TextInput) and w.text):
        assert label.font_size >= sp(theme.SMALL_SP) - 0.5, f"{where}: {label.text!r} is {label.font_size} px"
    return len(found)


def test_text_colours_are_at_least_7_to_1():
    for pair, (foreground, background) in theme.CONTRAST_PAIRS.items():
        assert theme.contrast_ratio(foreground, background) >= 7, pair


def tour_reader(ui, where: str) -> int:
    checked = check(ui, f"{where} home")
    ui.tap(ui.screen.ids.open_route)
    checked += check(ui, f"{where} route")
    ui.tap(ui.screen.ids.next)
    handheld = ui.app.handheld
    meter = remaining(handheld)[0]
    ui.keypad(f"{out_of_range_value(handheld, meter['id']):0{meter['dials']}d}")
    ui.tap(ui.screen.ids.save)
    assert ui.screen.prompt_kind == "warn"
    checked += check(ui, f"{where} reading with the out-of-range prompt")
    ui.tap(ui.screen.ids.skip)
    checked += check(ui, f"{where} skip codes")
    ui.tap(ui.roots()[0].ids.choices.children[-1])
    hazard = next(m for m in remaining(handheld) if m["hazards"])
    ui.show("reading", meter_id=hazard["id"], saved="Saved A1: 1 (Regular read)")
    ui.keypad(f"{out_of_range_value(handheld, hazard['id']):0{hazard['dials']}d}")
    ui.tap(ui.screen.ids.save)
    assert ui.screen.hazards and ui.screen.saved and ui.screen.prompt_kind == "warn"
    checked += check(ui, f"{where} reading with hazards, the last save and the prompt")
    ui.screenshot(f"reading-crowded-{where}")
    ui.show("sync")
    checked += check(ui, f"{where} sync")
    ui.show("users")
    checked += check(ui, f"{where} users")
    ui.tap(ui.screen.ids.add)
    checked += check(ui, f"{where} enrol")
    return checked


def test_reader_screens_have_big_targets_and_text(run_app, reader, data_root):
    install(reader, data_root)
    ui = run_app(data_root)
    assert tour_reader(ui, "480x800") > 40


def test_lineman_screens_have_big_targets_and_text(run_app, lineman, hazard_job, data_root):
    install(lineman, data_root)
    ui = run_app(data_root)
    check(ui, "home")
    ui.tap(ui.screen.ids.all_jobs)
    check(ui, "jobs")
    ui.show("job", job_id=hazard_job)
    check(ui, "job")
    ui.tap("Arrived on site")
    ui.tap("Complete job")
    check(ui, "resolution codes")


@pytest.mark.parametrize(("size", "density"), [("720x1280", "1.5"), ("800x1280", "1")])
def test_layout_scales_up_to_bigger_screens(size, density, reader, data_root):
    """A 720 x 1280 phone at 1.5 dp per pixel, and a 800 x 1280 tablet: same checks, own window."""
    install(reader, data_root)
    env = {**os.environ, "KIVY_METRICS_DENSITY": density}
    result = subprocess.run(
        [sys.executable, "-m", "tests.ui.in_own_process", "big", str(data_root), size],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout.split("checked")[-1]) > 40
