"""Translations: gettext catalogues under locale/<language>/LC_MESSAGES/fieldsync.mo, switched live.

kv rules write `text: tr._("Sync now")`. Kivy's rule compiler binds a rule to the last attribute of each
name it reads, here `_` on `tr`; `Translator` answers that bind with a bind to its `language`
StringProperty, so setting `tr.language` re-evaluates every such rule and every visible label is
re-labelled at once. Python code calls `tr._(...)` when it builds text and rebuilds it on a language
change (the app refreshes its screens).

English is the source language: its catalogue holds the msgids with empty translations (gettext then
shows the msgid), so wording can change without touching code. Code-list labels
(sync_protocol.codes) are msgids too.
"""

from __future__ import annotations

import gettext
from pathlib import Path
from typing import Any

from kivy.event import EventDispatcher
from kivy.properties import OptionProperty

DOMAIN = "fieldsync"
LOCALE_DIR = Path(__file__).with_name("locale")
LANGUAGES = {"en": "English", "zh_CN": "中文"}


class Translator(EventDispatcher):
    language = OptionProperty("en", options=list(LANGUAGES))

    def __init__(self, locale_dir: Path = LOCALE_DIR, **kwargs: Any) -> None:
        self._catalogues = {
            code: gettext.translation(DOMAIN, str(locale_dir), languages=[code], fallback=True) for code in LANGUAGES
        }
        super().__init__(**kwargs)

    def _(self, text: str) -> str:
        """`text` in the current language."""
        return self._catalogues[self.language].gettext(text)

    # kv binds `tr._(...)` to the attribute `_`: follow the language instead.
    def fbind(self, name: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        return super().fbind("language" if name == "_" else name, func, *args, **kwargs)

    def funbind(self, name: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        return super().funbind("language" if name == "_" else name, func, *args, **kwargs)

    def unbind_uid(self, name: str, uid: int) -> Any:
        return super().unbind_uid("language" if name == "_" else name, uid)


tr = Translator()
