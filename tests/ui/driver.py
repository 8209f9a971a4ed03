"""Driving the real app as a person would: taps at a widget's place on the window (touch down, touch
up), characters typed into the focused field, frames advanced by the event loop. The driver counts taps,
reads what the screen shows, and saves screenshots under tests/output/screenshots/."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kivy.base import EventLoop
from kivy.core.window import Window
from kivy.tests.common import UnitTestTouch
from kivy.uix.label import Label
from kivy.uix.modalview import ModalView
from kivy.uix.scrollview import ScrollView
from kivy.uix.textinput import TextInput
from kivy.uix.widget import Widget

from pda_client.app.main import FieldSyncApp
from tests.ui.conftest import FAST_RETRIES

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "tests" / "output" / "screenshots"
DOC_SCREENSHOTS = ROOT / "docs" / "screenshots"
WAIT_S = 90  # generous: a loaded CI machine is slow, and tests assert outcomes, never times


def walk(widget: Widget) -> Iterator[Widget]:
    yield widget
    for child in widget.children:
        yield from walk(child)


def visible(widget: Widget) -> bool:
    """Drawn and not hidden: no zero size and no zero opacity up the tree (it may be scrolled away)."""
    node: Any = widget
    while node is not None and node is not Window:
        if getattr(node, "opacity", 1) == 0 or node.width <= 0 or node.height <= 0:
            return False
        node = node.parent
    return True


def on_view(widget: Widget) -> bool:
    """Its centre is on the window and inside every scroll view around it (a finger can reach it)."""
    x, y = widget.to_window(*widget.center)
    if not (0 <= x <= Window.width and 0 <= y <= Window.height):
        return False
    node: Any = widget.parent
    while node is not None and node is not Window:
        if isinstance(node, ScrollView):
            left, bottom = node.to_window(node.x, node.y)
            if not (left <= x <= left + node.width and bottom <= y <= bottom + node.height):
                return False
        node = node.parent
    return True


def scroll_into_view(widget: Widget) -> None:
    node: Any = widget.parent
    while node is not None and node is not Window:
        if isinstance(node, ScrollView):
            node.scroll_to(widget, padding=20, animate=False)
        node = node.parent


class Driver:
    def __init__(self, app: FieldSyncApp) -> None:
        self.app = app
        self.taps = 0

    # --- time ------------------------------------------------------------------------------------------

    def frames(self, count: int = 3) -> None:
        for _ in range(count):
            EventLoop.idle()

    def wait_until(self, condition: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            EventLoop.idle()
            result = condition()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"never happened: {what}; the screen shows {self.texts()!r}")
            time.sleep(0.01)

    def wait_for_sync(self) -> None:
        self.frames(2)
        self.wait_until(lambda: not self.app.syncing, "the sync finished")
        self.frames(3)

    # --- what is on screen -------------------------------------------------------------------------------

    @property
    def screen(self) -> Any:
        return self.app.root.current_screen

    def roots(self) -> list[Widget]:
        """The current screen, and any popup above it (popups get the touches first)."""
        popups = [w for w in Window.children if isinstance(w, ModalView)]
        return popups or [self.screen]

    def widgets(self) -> Iterator[Widget]:
        for root in self.roots():
            yield from (w for w in walk(root) if visible(w))

    def texts(self) -> list[str]:
        return [w.text for w in self.widgets() if isinstance(w, Label | TextInput) and w.text]

    def shows(self, fragment: str) -> bool:
        return any(fragment in text for text in self.texts())

    def find(self, text: str, exact: bool = True) -> Widget:
        """The visible widget showing `text` that reacts to a tap: a button, else the row a label sits in."""

        def matches(widget: Widget) -> bool:
            words = getattr(widget, "text", None)
            return isinstance(words, str) and (words == text if exact else text in words)

        widgets = list(self.widgets())
        for widget in widgets:
            if hasattr(widget, "trigger_action") and matches(widget):
                return widget
        for widget in widgets:
            if isinstance(widget, Label) and matches(widget):
                node: Any = widget.parent
                while node is not None and node is not Window and not hasattr(node, "trigger_action"):
                    node = node.parent
                if node is not None and node is not Window:
                    return node
        raise AssertionError(f"nothing to tap shows {text!r}; the screen shows {self.texts()!r}")

    # --- acting -------------------------------------------------------------------------------------------

    def tap(self, target: Widget | str, exact: bool = True) -> None:
        self.frames(2)  # let the layout settle first: a person taps what is drawn, not where it was
        widget = self.find(target, exact) if isinstance(target, str) else target
        assert visible(widget), f"{widget} is not visible"
        if not on_view(widget):  # as a person scrolls down to it
            scroll_into_view(widget)
            self.frames(2)
        assert on_view(widget), f"{widget} cannot be reached"
        x, y = widget.to_window(*widget.center)
        touch = UnitTestTouch(x, y)
        touch.touch_down()
        self.frames(1)
        touch.touch_up()
        self.taps += 1
        self.frames(3)

    def type(self, text: str, into: TextInput | None = None) -> None:
        """Tap the field (when given) and type `text` one character at a time, as a keyboard does."""
        if into is not None:
            self.tap(into)
            assert into.focus, "the field did not take the focus"
        for char in text:
            Window.dispatch("on_textinput", char)
        self.frames(2)

    def show(self, name: str, **params: Any) -> None:
        """Go straight to a screen (as a shortcut the app itself would take) and let it lay out."""
        self.app.show(name, **params)
        self.frames()

    def keypad(self, digits: str) -> None:
        """Tap the reading screen's keys."""
        keys = {key.text: key for key in self.screen.ids.keypad.children}
        for digit in digits:
            self.tap(keys[digit])

    # --- pictures --------------------------------------------------------------------------------------------

    def screenshot(self, name: str, publish: bool = False) -> Path:
        """Save the window as tests/output/screenshots/<name>.png (and docs/screenshots/ with
        FIELDSYNC_PUBLISH_SCREENSHOTS=1, for the ones the docs show)."""
        self.frames(3)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        written = Path(Window.screenshot(name=str(SCREENSHOTS / f".{name}.png")))
        target = SCREENSHOTS / f"{name}.png"
        written.replace(target)
        if publish and os.environ.get("FIELDSYNC_PUBLISH_SCREENSHOTS") == "1":
            DOC_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(target, DOC_SCREENSHOTS / target.name)
        return target

    def stop(self) -> None:
        for popup in [w for w in Window.children if isinstance(w, ModalView)]:
            popup.dismiss(animation=False)  # the window outlives the app: leave it clean for the next test
        self.app._cancel.set()
        self.wait_until(lambda: not any(w.is_alive() for w in self.app._workers), "background work ended")
        self.app._stop()
        self.frames(1)


def start_app(data_root: Path, **options: Any) -> Driver:
    options = {"auto_sync_s": None, "probe_s": None, "transport_factory": FAST_RETRIES, **options}
    app = FieldSyncApp(data_root, **options)
    app._run_prepare()
    driver = Driver(app)
    driver.frames(5)
    return driver
