"""The route in walk order: each meter read, skipped or still to read; a shortcut to the next meter to
read; search by meter number. Tap a meter to enter (or correct) its reading."""

from __future__ import annotations

from typing import Any

from kivy.properties import BooleanProperty, ColorProperty, NumericProperty, StringProperty

from pda_client.errors import NotFound
from sync_protocol import codes

from .. import labels, theme
from ..i18n import tr
from ..widgets import RowButton
from . import AppScreen

STATE_COLOURS = {"read": theme.READ, "skipped": theme.SKIPPED, "remaining": theme.REMAINING}


class MeterRow(RowButton):
    meter_id = StringProperty("")
    heading = StringProperty("")
    address = StringProperty("")
    state_text = StringProperty("")
    state_colour = ColorProperty(theme.REMAINING)
    hazard = BooleanProperty(False)

    def on_release(self) -> None:
        from kivy.app import App

        App.get_running_app().show("reading", meter_id=self.meter_id)


class RouteScreen(AppScreen):
    route_id = StringProperty("")
    title = StringProperty("")
    words = StringProperty("")
    read = NumericProperty(0)
    skipped = NumericProperty(0)
    total = NumericProperty(0)
    next_meter = StringProperty("")
    next_text = StringProperty("")
    only_remaining = BooleanProperty(False)
    message = StringProperty("")

    def open(self, **params: Any) -> None:
        super().open(**params)
        self.message = params.get("message", "")

    def refresh(self) -> None:
        if self.handheld is None:
            return
        routes = self.handheld.readings.routes()
        route = next((r for r in routes if r["id"] == self.route_id), routes[0] if routes else None)
        if route is None:
            self.title, self.words, self.total, self.next_meter = tr._("Route"), tr._("No route assigned."), 0, ""
            self.ids.list.data = []
            return
        self.route_id = route["id"]
        progress = route["progress"]
        self.title = f"{route['code']} · {route['name']}"
        self.read, self.skipped, self.total = progress["read"], progress["skipped"], progress["total"]
        self.words = tr._("{read} read · {skipped} skipped · {remaining} to read").format(**progress)
        self._walk = self.handheld.readings.walk(self.route_id)
        nxt = next((m for m in self._walk if m["state"] == "remaining"), None)
        self.next_meter = nxt["id"] if nxt else ""
        self.next_text = (
            tr._("Next: {number} (#{seq})").format(number=nxt["number"], seq=nxt["route_seq"]) if nxt
            else tr._("Route finished")
        )
        self.filter()

    def filter(self) -> None:
        query = self.ids.search.text.strip().lower()
        rows = []
        for meter in getattr(self, "_walk", []):
            if query and query not in meter["number"].lower():
                continue
            if self.only_remaining and meter["state"] != "remaining":
                continue
            rows.append(self._row(meter))
        self.ids.list.data = rows

    def _row(self, meter: dict[str, Any]) -> dict[str, Any]:
        reading = meter["reading"]
        state = tr._(labels.METER_STATE[meter["state"]])
        if reading is not None:
            state += ": " + (str(reading["value"]) if reading["value"] is not None
                             else labels.code_label(codes.SKIP_CODES, reading["skip_code"]))
        return {
            "meter_id": meter["id"],
            "heading": f"#{meter['route_seq']}  {meter['number']}",
            "address": meter.get("address") or "",
            "state_text": state,
            "state_colour": STATE_COLOURS[meter["state"]],
            "stripe": STATE_COLOURS[meter["state"]],
            "hazard": bool(meter.get("hazards")),
        }

    def toggle_remaining(self) -> None:
        self.only_remaining = not self.only_remaining
        self.filter()

    def find(self) -> None:
        """Open the meter whose number was typed (or the only one matching it)."""
        query = self.ids.search.text.strip()
        if not query:
            return
        try:
            meter = self.handheld.readings.find_meter(query)
        except NotFound:
            matches = self.ids.list.data
            if len(matches) != 1:
                self.message = tr._("No meter {number} on this route.").format(number=query) if not matches else \
                    tr._("{count} meters match: type more digits.").format(count=len(matches))
                return
            meter = {"id": matches[0]["meter_id"]}
        self.message = ""
        self.ids.search.text = ""
        self.app.show("reading", meter_id=meter["id"])

    def read_next(self) -> None:
        if self.next_meter:
            self.app.show("reading", meter_id=self.next_meter)
