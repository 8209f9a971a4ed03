"""A CJK-capable default font. Kivy draws with one font file per label and does not fall back through
fontconfig, so with its bundled Roboto every Chinese character is a box. The app looks for a font that
covers Simplified Chinese and Latin and registers it under Kivy's default font name, so every label,
button and text field (which all default to that name) can show both languages."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

ENV_VAR = "FIELDSYNC_CJK_FONT"
# Debian/Ubuntu packages (fonts-wqy-microhei is what .ci/system-deps installs), then Android's own.
KNOWN_PATHS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJKsc-Regular.otf",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/system/fonts/NotoSansCJK-Regular.ttc",
    "/system/fonts/NotoSansSC-Regular.otf",
    "/system/fonts/DroidSansFallback.ttf",
)


def find_cjk_font(candidates: Iterable[str] | None = None) -> Path | None:
    """The first existing font file: $FIELDSYNC_CJK_FONT, then the known system paths."""
    paths = [os.environ.get(ENV_VAR, "")] if candidates is None else []
    paths += list(KNOWN_PATHS if candidates is None else candidates)
    for path in paths:
        if path and Path(path).is_file():
            return Path(path)
    return None


def register_default_font(candidates: Iterable[str] | None = None) -> Path | None:
    """Make the CJK font Kivy's default font; returns its path, or None (Chinese will show as boxes)."""
    from kivy.core.text import DEFAULT_FONT, LabelBase

    path = find_cjk_font(candidates)
    if path is None:
        log.warning(
            "no CJK font found (set %s, or install fonts-wqy-microhei): Chinese text will show as boxes", ENV_VAR
        )
        return None
    LabelBase.register(DEFAULT_FONT, str(path))
    return path
