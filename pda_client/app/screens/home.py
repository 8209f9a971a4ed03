"""Home: online / offline / syncing in big letters, changes waiting to be sent, the last sync and the
last error in plain words, today's route with its progress, and the open jobs, most urgent first."""

from __future__ import annotations

from kivy.properties import BooleanProperty, NumericProperty, StringProperty

from .. import labels
from ..i18n import tr
from ..widgets import JobRow
from . import AppScreen

JOBS_ON_HOME = 3


class HomeScreen(AppScreen):
    route_id = StringProperty("")
    route_title = StringProperty("")
    route_words = StringProperty("")
    route_read = NumericProperty(0)
    route_skipped = NumericProperty(0)
    route_total = NumericProperty(0)
    has_route = BooleanProperty(False)
    has_next = BooleanProperty(False)
    show_jobs = BooleanProperty(False)
    jobs_title = StringProperty("")

    def refresh(self) -> None:
        if self.handheld is None:
            return
        status = self.app.refresh_status() or {}
        routes = status.get("routes") or []
        self.has_route = bool(routes)
        if routes:
            route = routes[0]
            self.route_id = route["id"]
            self.route_title = f"{route['code']} · {route['name']}"
            self.route_read, self.route_skipped, self.route_total = route["read"], route["skipped"], route["total"]
            self.route_words = tr._("{read} read · {skipped} skipped · {remaining} to read").format(**route)
            self.has_next = route["remaining"] > 0
        jobs = self.handheld.jobs.list()
        self.show_jobs = bool(jobs) or (status.get("user") or {}).get("role") == "lineman"
        self.jobs_title = tr._("Open jobs: {count}").format(count=len(jobs))
        box = self.ids.jobs
        box.clear_widgets()
        for job in jobs[:JOBS_ON_HOME]:
            box.add_widget(JobRow(**labels.job_row(job)))
        if not jobs:
            box.add_widget(JobRow(heading=tr._("No open jobs"), details=tr._("Sync to receive new work."),
                                  disabled=True))

    def sync(self) -> None:
        self.app.show("sync")
        self.app.sync_now()

    def read_next(self) -> None:
        progress = self.handheld.readings.progress(self.route_id)
        if progress["next_meter"]:
            self.app.show("reading", meter_id=progress["next_meter"])
