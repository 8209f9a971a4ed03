"""Colours and sizes of the handheld app, chosen for gloves and sunlight: dark text on a light ground,
solid colour behind every piece of white text, touch targets of at least 48 dp (56 dp for actions).

Every text/background pair the screens use is listed in CONTRAST_PAIRS; a test holds each one to the
WCAG "AAA" contrast ratio of 7:1.
"""

from __future__ import annotations

RGBA = tuple[float, float, float, float]


def rgb(hex_colour: str) -> RGBA:
    value = hex_colour.lstrip("#")
    return (int(value[0:2], 16) / 255, int(value[2:4], 16) / 255, int(value[4:6], 16) / 255, 1.0)


BG = rgb("#FAFAF7")  # screen background: warm white, no glare-blue
SURFACE = rgb("#ECECE6")  # cards, list rows
TEXT = rgb("#111111")
MUTED = rgb("#3A3A3A")  # secondary text: still 10:1 on BG
WHITE = rgb("#FFFFFF")
PRIMARY = rgb("#0B3D91")  # buttons: white on dark blue
PRIMARY_DOWN = rgb("#072A66")
SECONDARY = rgb("#D5D9E0")  # quieter buttons: dark text on light grey-blue
SECONDARY_DOWN = rgb("#B7BDC8")
ONLINE = rgb("#0B5D1E")  # dark green
OFFLINE = rgb("#4A4A4A")
SYNCING = PRIMARY
DANGER = rgb("#8E0B0B")  # hazards, errors: white on dark red
ERROR_TEXT = rgb("#8E0B0B")  # error words on the light ground
WARN = rgb("#FFD54A")  # out-of-range prompt: black on amber
VIP = rgb("#5B1670")  # purple badge
SAFETY = rgb("#8A3000")  # dark orange badge
READ = rgb("#0B5D1E")
SKIPPED = rgb("#7A4B00")
REMAINING = rgb("#3A3A3A")
DISPLAY_BG = rgb("#FFFFFF")

# Sizes in dp / sp (converted by kv's dp() and sp()).
TOUCH_MIN = 48  # the smallest target anything tappable may have
BUTTON_H = 56
KEY_H = 64  # keypad keys
ROW_H = 88  # list rows
TEXT_SP = 19
SMALL_SP = 16
TITLE_SP = 23
KEY_SP = 30
DISPLAY_SP = 40

# (foreground, background) pairs actually used together on screen.
CONTRAST_PAIRS: dict[str, tuple[RGBA, RGBA]] = {
    "text on background": (TEXT, BG),
    "muted text on background": (MUTED, BG),
    "text on surface": (TEXT, SURFACE),
    "muted text on surface": (MUTED, SURFACE),
    "error text on background": (ERROR_TEXT, BG),
    "white on primary button": (WHITE, PRIMARY),
    "white on pressed primary button": (WHITE, PRIMARY_DOWN),
    "text on secondary button": (TEXT, SECONDARY),
    "text on pressed secondary button": (TEXT, SECONDARY_DOWN),
    "white on online": (WHITE, ONLINE),
    "white on offline": (WHITE, OFFLINE),
    "white on danger": (WHITE, DANGER),
    "text on warning": (TEXT, WARN),
    "white on VIP badge": (WHITE, VIP),
    "white on safety badge": (WHITE, SAFETY),
    "white on read": (WHITE, READ),
    "white on skipped": (WHITE, SKIPPED),
    "white on remaining": (WHITE, REMAINING),
    "text on display": (TEXT, DISPLAY_BG),
}


def relative_luminance(colour: RGBA) -> float:
    def channel(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in colour[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(foreground: RGBA, background: RGBA) -> float:
    """WCAG 2 contrast ratio, 1 to 21."""
    light, dark = sorted((relative_luminance(foreground), relative_luminance(background)), reverse=True)
    return (light + 0.05) / (dark + 0.05)
