"""Widgets every screen uses: flat high-contrast buttons, wrapping labels, badges, the top bar with the
connection indicator, text fields and a picker for code lists. Their look is in widgets.kv."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from kivy.app import App
from kivy.properties import (
    BooleanProperty,
    ColorProperty,
    ListProperty,
    NumericProperty,
    OptionProperty,
    StringProperty,
)
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.label import Label
from kivy.uix.modalview import ModalView
from kivy.uix.textinput import TextInput
from kivy.uix.widget import Widget

from . import theme

BUTTON_COLOURS = {  # kind -> (background, pressed background, text)
    "primary": (theme.PRIMARY, theme.PRIMARY_DOWN, theme.WHITE),
    "secondary": (theme.SECONDARY, theme.SECONDARY_DOWN, theme.TEXT),
    "danger": (theme.DANGER, theme.PRIMARY_DOWN, theme.WHITE),
    "go": (theme.ONLINE, theme.PRIMARY_DOWN, theme.WHITE),
}


class FSButton(ButtonBehavior, Label):
    """A flat button, at least 56 dp high: white on dark blue (primary), dark on light (secondary)."""

    kind = OptionProperty("primary", options=list(BUTTON_COLOURS))
    background = ColorProperty(theme.PRIMARY)
    background_down = ColorProperty(theme.PRIMARY_DOWN)

    def on_kind(self, _instance: Any, kind: str) -> None:
        self.background, self.background_down, self.color = BUTTON_COLOURS[kind]

    def on_kv_post(self, base_widget: Any) -> None:
        self.on_kind(self, self.kind)


class RowButton(ButtonBehavior, BoxLayout):
    """A tappable list row (several labels inside)."""

    background = ColorProperty(theme.SURFACE)
    stripe = ColorProperty(theme.SURFACE)  # a coloured edge: state of a meter, VIP or safety


class FSLabel(Label):
    """Dark text on the light ground that wraps to its width and grows to its height."""


class FSTitle(FSLabel):
    pass


class Badge(Label):
    """White words on a solid colour: VIP, SAFETY, HAZARD, a meter's state."""

    background = ColorProperty(theme.DANGER)


class Banner(FSLabel):
    """A full-width message on a solid colour (hazards, errors, the out-of-range prompt)."""

    background = ColorProperty(theme.DANGER)
    shown = BooleanProperty(True)


class FSTextInput(TextInput):
    pass


class TopBar(BoxLayout):
    """Back button, title, and the connection indicator (tap it for the sync screen)."""

    title = StringProperty("")
    back = BooleanProperty(True)


class ConnectionPill(ButtonBehavior, Label):
    """Online / Offline / Syncing with the count of changes waiting to be sent."""


class Picker(ModalView):
    """A list of choices as big buttons (code lists); calls `on_pick(code, note)` and closes.
    With `with_note`, a text field above the list carries an optional note."""

    title = StringProperty("")
    with_note = BooleanProperty(False)
    options = ListProperty([])  # [(code, label)]
    _anim_duration = 0  # no fade: slow handhelds, and a tap must land on what is drawn

    def __init__(
        self,
        title: str,
        options: Sequence[tuple[str, str]],
        on_pick: Callable[[str, str], None],
        *,
        with_note: bool = False,
        **kwargs: Any,
    ) -> None:
        self._on_pick = on_pick
        super().__init__(title=title, options=list(options), with_note=with_note, **kwargs)

    def on_kv_post(self, base_widget: Any) -> None:
        box = self.ids.choices
        for code, label in self.options:
            button = FSButton(text=label, kind="secondary")
            button.code = code
            button.bind(on_release=self._picked)
            box.add_widget(button)

    def _picked(self, button: FSButton) -> None:
        note = self.ids.note.text.strip() if self.with_note else ""
        self.dismiss()
        self._on_pick(button.code, note)


class Section(BoxLayout):
    """A vertical group that can be taken out of the layout (`shown: False`): its widgets are removed,
    so nothing hidden can catch a tap meant for what lies beneath."""

    shown = BooleanProperty(True)

    def __init__(self, **kwargs: Any) -> None:
        self._stash: list[Any] = []
        super().__init__(**kwargs)

    def on_shown(self, _instance: Any, shown: bool) -> None:
        if shown and self._stash:
            for widget in reversed(self._stash):
                self.add_widget(widget)
            self._stash = []
        elif not shown and self.children:
            self._stash = list(self.children)
            self.clear_widgets()


class RouteBar(Widget):
    """Route progress as one bar: read (green), skipped (amber), still to read (grey)."""

    read = NumericProperty(0)
    skipped = NumericProperty(0)
    total = NumericProperty(0)


class JobRow(RowButton):
    """One job in a list: priority and number, VIP / SAFETY / HAZARD marks, customer, summary, status."""

    job_id = StringProperty("")
    heading = StringProperty("")
    customer = StringProperty("")
    details = StringProperty("")
    vip = BooleanProperty(False)
    safety = BooleanProperty(False)
    hazard = BooleanProperty(False)

    def on_release(self) -> None:
        App.get_running_app().show("job", job_id=self.job_id)
