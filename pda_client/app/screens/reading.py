"""Reading entry for one meter: an on-screen keypad (no system keyboard: big keys for gloves), the last
reading and today's expected range, then Save. A value outside the range is never refused: the reader
types it again (two equal entries make a verified read; a different second value starts over) or picks
a remark. Skip codes, reading type, meter condition and a note are one tap away. After a save the
screen moves to the next meter still to read, in walk order.

Taps for an in-range reading of an N-dial meter: N digits + Save = N + 1 (6 for the usual 5 dials)."""

from __future__ import annotations

from typing import Any

from kivy.properties import BooleanProperty, NumericProperty, OptionProperty, StringProperty

from pda_client.errors import HandheldError, NeedsConfirmation
from sync_protocol import codes

from .. import labels
from ..i18n import tr
from ..widgets import Picker
from . import AppScreen


class ReadingScreen(AppScreen):
    meter_id = StringProperty("")
    number = StringProperty("")
    place = StringProperty("")
    hazards = StringProperty("")
    last_text = StringProperty("")
    range_text = StringProperty("")
    entry = StringProperty("")  # the digits typed so far
    dials = NumericProperty(5)
    first_value = NumericProperty(-1)  # the out-of-range value waiting for its second entry (-1: none)
    prompt = StringProperty("")
    prompt_kind = OptionProperty("", options=["", "warn", "error"])
    saved = StringProperty("")  # what the previous save did, shown on the next meter
    reading_type = StringProperty("regular")
    trouble_code = StringProperty("")
    busy = BooleanProperty(False)

    def open(self, **params: Any) -> None:
        self.saved = params.pop("saved", "")
        super().open(**params)
        self.entry, self.first_value, self.prompt, self.prompt_kind = "", -1, "", ""
        self.reading_type, self.trouble_code = "regular", ""
        if "note" in self.ids:
            self.ids.note.text = ""

    def refresh(self) -> None:
        if self.handheld is None or not self.meter_id:
            return
        readings = self.handheld.readings
        meter = self.meter = readings.find_meter(self.meter_id)
        self.number, self.dials = meter["number"], meter["dials"]
        walk = readings.walk(meter["route_id"]) if meter.get("route_id") else []
        position = next((i for i, m in enumerate(walk, 1) if m["id"] == meter["id"]), 0)
        self.place = f"#{meter['route_seq']} ({position}/{len(walk)}) · {meter.get('address') or ''}"
        if meter.get("access_notes"):
            self.place += f" · {meter['access_notes']}"
        hazard_words = labels.hazards(meter.get("hazards"))
        self.hazards = tr._("HAZARDS: {hazards}").format(hazards=hazard_words) if hazard_words else ""
        if meter["last_value"] is None:
            self.last_text = tr._("No previous reading.")
        else:
            self.last_text = tr._("Last reading: {value} on {date} ({type})").format(
                value=meter["last_value"], date=labels.date(meter["last_read_at"]),
                type=labels.code_label(codes.READING_TYPES, meter["last_read_type"]),
            )
        current = readings.current_reading(meter["id"])
        if current is not None:
            done = (str(current["value"]) if current["value"] is not None
                    else labels.code_label(codes.SKIP_CODES, current["skip_code"]))
            self.last_text += "\n" + tr._("Already done this cycle: {done}. A new entry replaces it.").format(done=done)
        expected = readings.expected_range(meter["id"])
        self.range_text = (
            tr._("Expected now: {low} to {high}").format(low=expected["low"], high=expected["high"]) if expected
            else tr._("Expected now: no history to compare with")
        )

    # --- keypad ----------------------------------------------------------------------------------------

    def key(self, digit: str) -> None:
        if len(self.entry) < self.dials:
            self.entry += digit
        if self.prompt_kind == "error":
            self.prompt, self.prompt_kind = "", ""

    def delete(self) -> None:
        self.entry = self.entry[:-1]

    def save(self) -> None:
        if not self.entry:
            self._say(tr._("Type the reading first."), "error")
            return
        value = int(self.entry)
        self.entry = ""
        if self.first_value >= 0 and value == self.first_value:
            self._record(value, confirm=value)  # the second, equal entry: a verified read
            return
        self.first_value = -1  # a different second value: the reader corrected a typo, check it afresh
        try:
            self._record(value, raise_confirmation=True)
        except NeedsConfirmation as exc:
            self.first_value = value
            band = exc.band
            side = tr._("above") if band.result == "high" else tr._("below")
            expected = self.handheld.readings.expected_range(self.meter_id)
            bounds = f"{expected['low']} - {expected['high']}" if expected else "?"
            self._say(
                tr._("{value} is {side} the expected range ({bounds}). Type it again to confirm, or pick a remark.")
                .format(value=value, side=side, bounds=bounds),
                "warn",
            )

    def remark(self) -> None:
        value = int(self.entry) if self.entry else (self.first_value if self.first_value >= 0 else None)
        if value is None:
            self._say(tr._("Type the reading first, then pick the remark."), "error")
            return
        Picker(
            tr._("Remark for {value}").format(value=value),
            labels.code_options(codes.COMMENT_CODES),
            lambda code, _note: self._record(value, comment_code=code),
        ).open()

    def skip(self) -> None:
        Picker(
            tr._("Why can meter {number} not be read?").format(number=self.number),
            labels.code_options(codes.SKIP_CODES),
            lambda code, _note: self._store(
                self.handheld.readings.skip, self.meter_id, code,
                trouble_code=self.trouble_code or None, note=self._note(),
                saved=tr._("Skipped {number}: {reason}").format(
                    number=self.number, reason=labels.code_label(codes.SKIP_CODES, code)),
            ),
        ).open()

    def pick_type(self) -> None:
        Picker(
            tr._("Reading type"),
            labels.code_options(codes.READING_TYPES, exclude={"verified", "re_read"}),
            lambda code, _note: setattr(self, "reading_type", code),
        ).open()

    def pick_condition(self) -> None:
        Picker(
            tr._("Meter condition"),
            [("", tr._("No problem")), *labels.code_options(codes.TROUBLE_CODES)],
            lambda code, _note: setattr(self, "trouble_code", code),
        ).open()

    # --- saving ----------------------------------------------------------------------------------------------

    def _note(self) -> str | None:
        return self.ids.note.text.strip() or None

    def _record(self, value: int, raise_confirmation: bool = False, **kwargs: Any) -> None:
        kind = labels.code_label(codes.READING_TYPES, "verified" if "confirm" in kwargs else self.reading_type)
        self._store(
            self.handheld.readings.record, self.meter_id, value,
            reading_type=self.reading_type, trouble_code=self.trouble_code or None, note=self._note(),
            saved=tr._("Saved {number}: {value} ({type})").format(number=self.number, value=value, type=kind),
            raise_confirmation=raise_confirmation, **kwargs,
        )

    def _store(self, operation: Any, *args: Any, saved: str, raise_confirmation: bool = False, **kwargs: Any) -> None:
        try:
            operation(*args, **kwargs)
        except NeedsConfirmation:
            if raise_confirmation:
                raise
            self._say(tr._("Type the value again to confirm it."), "warn")
            return
        except HandheldError as exc:
            self.first_value = -1
            self._say(exc.message, "error")
            return
        self.app.changed()
        self._go_on(saved)

    def _go_on(self, saved: str) -> None:
        """To the next meter still to read after this one in walk order (then from the start)."""
        walk = self.handheld.readings.walk(self.meter["route_id"]) if self.meter.get("route_id") else []
        here = next((i for i, m in enumerate(walk) if m["id"] == self.meter_id), -1)
        after = [m for m in walk[here + 1:] + walk[: here + 1] if m["state"] == "remaining"]
        if after:
            self.app.show("reading", meter_id=after[0]["id"], saved=saved)
        else:
            self.app.show("route", message=saved + ". " + tr._("Every meter on this route is done."))

    def _say(self, text: str, kind: str) -> None:
        self.prompt, self.prompt_kind = text, kind
