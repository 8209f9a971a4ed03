"""Code-list labels (sync_protocol.codes) reach Chinese pages translated: they are shown through gettext
at display time, so the server's catalogue must hold every one of them."""

from __future__ import annotations

import gettext
from pathlib import Path

import pytest

from sync_protocol import codes

TRANSLATIONS = Path(__file__).resolve().parents[2] / "server" / "translations"
TABLES = (
    "READING_TYPES",
    "SKIP_CODES",
    "TROUBLE_CODES",
    "COMMENT_CODES",
    "HAZARD_CODES",
    "JOB_TYPES",
    "RESOLUTION_CODES",
    "CUSTOMER_SEGMENTS",
    "PRIORITIES",
)


@pytest.mark.parametrize("table", TABLES)
def test_every_code_label_has_a_chinese_translation(table):
    chinese = gettext.translation("messages", str(TRANSLATIONS), languages=["zh"])
    untranslated = [label for label in getattr(codes, table).values() if chinese.gettext(label) == label]
    assert not untranslated, f"{table}: add these to server/translations/zh (messages.po, then compile): {untranslated}"
