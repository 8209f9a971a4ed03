"""The handheld's Kivy app (`python -m pda_client.app`): screens over the client core's public API
(`pda_client.Handheld`), no SQL and no HTTP of its own. Importing this package does not import Kivy."""

from __future__ import annotations

PORTRAIT = (480, 800)


def configure_window(size: tuple[int, int] = PORTRAIT) -> None:
    """Desktop and tests: a portrait phone-sized window (call before Kivy creates its window).
    On Android the window is the screen and this does nothing."""
    from kivy.config import Config
    from kivy.utils import platform

    if platform in ("android", "ios"):
        return
    Config.set("graphics", "width", str(size[0]))
    Config.set("graphics", "height", str(size[1]))
    Config.set("input", "mouse", "mouse,disable_multitouch")
