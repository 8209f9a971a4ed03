"""The crew's jobs in the order `jobs.list()` gives (open first, most urgent first), VIP and
safety-critical customers marked, hazards flagged; tap one for its detail."""

from __future__ import annotations

from kivy.properties import BooleanProperty, StringProperty

from .. import labels
from ..i18n import tr
from . import AppScreen


class JobListScreen(AppScreen):
    include_finished = BooleanProperty(False)
    summary = StringProperty("")

    def refresh(self) -> None:
        if self.handheld is None:
            return
        jobs = self.handheld.jobs.list(include_finished=self.include_finished)
        self.ids.list.data = [labels.job_row(job) for job in jobs]
        self.summary = tr._("Jobs: {count}").format(count=len(jobs)) if jobs else tr._("No jobs. Sync to receive work.")

    def toggle_finished(self) -> None:
        self.include_finished = not self.include_finished
        self.refresh()
