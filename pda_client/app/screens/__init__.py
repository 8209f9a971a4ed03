"""The app's screens, one module and one kv file each. `AppScreen` is what they share: `open(**params)`
takes what the screen is about (a job, a meter), `refresh()` rebuilds what it shows from the core."""

from __future__ import annotations

from typing import Any

from kivy.app import App
from kivy.clock import Clock
from kivy.uix.screenmanager import Screen

from pda_client.errors import NotFound


class AppScreen(Screen):
    @property
    def app(self) -> Any:
        return App.get_running_app()

    @property
    def handheld(self) -> Any:
        return self.app.handheld

    def open(self, **params: Any) -> None:
        for name, value in params.items():
            setattr(self, name, value)

    def on_pre_enter(self, *_args: Any) -> None:
        try:
            self.refresh()
        except NotFound:  # what this screen was opened for has left the handheld (a sync removed it)
            Clock.schedule_once(lambda _dt: self.app.show("home", reset=True))

    def refresh(self) -> None:
        """Rebuild the texts made in Python (called on entry, after a sync and on a language switch)."""
