# ruff: noqa: RUF001 - Chinese text uses full-width punctuation on purpose
"""Two languages from the start: gettext catalogues that match the code and their compiled form, a
language switch that re-labels the visible screen at once (code-list labels included), and a CJK font
registered as Kivy's default so that Chinese shows as glyphs, not boxes."""

from __future__ import annotations

import gettext
import io
import json
from pathlib import Path

import pytest
from kivy.core.text import DEFAULT_FONT, LabelBase
from kivy.core.text import Label as CoreLabel

from pda_client.app import catalogs, fonts
from sync_protocol import codes
from tests.ui.conftest import install
from tests.ui.helpers import out_of_range_value, remaining

CHINESE = "抄表读数同步离线"  # eight different characters


def test_catalogues_match_the_code_and_the_mo_files_are_compiled_from_the_po():
    assert catalogs.problems() == []


def test_the_check_notices_a_stale_catalogue(monkeypatch, tmp_path):
    for language in catalogs.LANGUAGES:
        folder = tmp_path / language / "LC_MESSAGES"
        folder.mkdir(parents=True)
        entries = catalogs.load(language)
        entries.pop("Sync now")
        (folder / "fieldsync.po").write_text(catalogs.render_po(language, [e for k, e in entries.items() if k]))
        (folder / "fieldsync.mo").write_bytes(catalogs.mo_path(language).read_bytes())
    monkeypatch.setattr(catalogs, "LOCALE_DIR", tmp_path)
    issues = catalogs.problems()
    assert any("not in the catalogue: 'Sync now'" in issue for issue in issues)
    assert any("is not compiled from its .po" in issue for issue in issues)


def test_compiled_catalogue_reads_back_through_gettext():
    entries = catalogs.load("zh_CN")
    translation = gettext.GNUTranslations(io.BytesIO(catalogs.compile_mo(entries)))
    assert translation.gettext("Sync now") == "立即同步"
    assert translation.gettext(codes.SKIP_CODES["dog"]) == "有狗"
    assert translation.info()["content-type"] == "text/plain; charset=UTF-8"
    untranslated = {msgid for msgid, entry in entries.items() if msgid and not entry.msgstr}
    assert untranslated == set()


def test_every_code_list_label_has_a_chinese_translation():
    entries = catalogs.load("zh_CN")
    for table in (codes.SKIP_CODES, codes.COMMENT_CODES, codes.READING_TYPES, codes.TROUBLE_CODES,
                  codes.RESOLUTION_CODES, codes.HAZARD_CODES, codes.JOB_TYPES, codes.PRIORITIES):
        for label in table.values():
            assert entries[label].msgstr, label


@pytest.fixture
def reader_ui(run_app, reader, data_root):
    install(reader, data_root)
    return run_app(data_root)


def test_language_switch_relabels_the_visible_screen_at_once_and_is_remembered(reader_ui, run_app, data_root):
    ui = reader_ui
    total = ui.app.handheld.readings.routes()[0]["progress"]["total"]
    assert ui.shows("Sync now") and ui.shows(f"0 read · 0 skipped · {total} to read")
    ui.tap("中文")
    assert ui.app.root.current == "home", "re-labelled in place"
    for words in ("立即同步", "待发送的更改：0", "离线：工作已保存在手持机上", f"已抄 0 · 跳过 0 · 待抄 {total}",
                  "今日抄表路线", "抄下一块表", "切换用户", "English", "离线"):
        assert ui.shows(words), words
    for words in ("Sync now", "Read next meter", "Switch user", "Today's route", "Offline"):
        assert not ui.shows(words), words
    assert ui.shows("上次同步：今天 ")
    ui.screenshot("home-zh")
    assert json.loads((data_root / "app.json").read_text())["language"] == "zh_CN"

    ui.stop()
    again = run_app(data_root)
    assert again.app.language == "zh_CN" and again.shows("立即同步")
    again.tap("English")
    assert again.shows("Sync now") and not again.shows("立即同步")


def test_code_lists_and_prompts_in_chinese(reader_ui):
    ui = reader_ui
    ui.tap("中文")
    handheld = ui.app.handheld
    first, second = remaining(handheld)[:2]
    ui.tap("抄下一块表")
    odd = out_of_range_value(handheld, first["id"])
    ui.keypad(f"{odd:0{first['dials']}d}")
    ui.tap("保存")
    assert ui.shows("请再次输入以确认，或选择说明。")
    ui.screenshot("reading-out-of-range-zh", publish=True)
    ui.tap("说明...")
    assert ui.shows("已与客户确认用量高")
    ui.tap("取消")
    ui.keypad(f"{odd:0{first['dials']}d}")
    ui.tap("保存")
    assert ui.shows(f"已保存 {first['number']}：{odd}（已核实读数（两次输入））")
    ui.tap("跳过...")
    assert ui.shows(f"电表 {second['number']} 为何无法抄读？")
    assert not any(ui.shows(label) for label in codes.SKIP_CODES.values()), "no English code label left"
    ui.tap("有狗")
    assert handheld.readings.current_reading(second["id"])["skip_code"] == "dog"


def is_chinese(text: str) -> bool:
    return any("\u4e00" <= char <= "\u9fff" for char in text)


def glyphs(text: str, font: str) -> list[bytes]:
    """Each character of `text` drawn alone, as RGBA bytes."""
    drawn = []
    for char in text:
        label = CoreLabel(text=char, font_size=48, font_name=font)
        label.refresh()
        drawn.append(bytes(label.texture.pixels))
    return drawn


def test_chinese_renders_as_distinct_glyphs_not_boxes(reader_ui):
    ui = reader_ui
    registered = LabelBase._fonts[DEFAULT_FONT][0]
    assert ui.app.cjk_font and Path(registered) == Path(ui.app.cjk_font), "the CJK font is the default font"

    with_app_font = glyphs(CHINESE, DEFAULT_FONT)
    assert len(set(with_app_font)) == len(CHINESE), "every character has its own shape"
    assert all(any(pixel for pixel in g[3::4]) for g in with_app_font), "and is drawn"

    import kivy

    roboto = str(Path(kivy.__file__).parent / "data" / "fonts" / "Roboto-Regular.ttf")
    boxes = glyphs(CHINESE, roboto)
    assert len(set(boxes)) == 1, "the same test sees Roboto's missing glyphs as one repeated box"

    ui.tap("中文")
    labels = [w for w in ui.widgets() if isinstance(getattr(w, "text", None), str) and is_chinese(w.text)]
    assert labels and all(w.font_name == DEFAULT_FONT for w in labels), "Chinese labels use the registered font"


def test_font_lookup_takes_the_environment_first_then_known_paths(monkeypatch, tmp_path):
    chosen = tmp_path / "my-cjk.ttf"
    chosen.write_bytes(b"font")
    monkeypatch.setenv(fonts.ENV_VAR, str(chosen))
    assert fonts.find_cjk_font() == chosen
    monkeypatch.setenv(fonts.ENV_VAR, str(tmp_path / "missing.ttf"))
    found = fonts.find_cjk_font()
    assert found is not None and str(found) in fonts.KNOWN_PATHS, ".ci/system-deps installs fonts-wqy-microhei"
    assert fonts.find_cjk_font([str(tmp_path / "nothing.ttc")]) is None
