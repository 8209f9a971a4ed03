"""The app's gettext catalogues: extract, update, compile and check, with the standard library only.

    python -m pda_client.app.catalogs update    # add new msgids to every .po (translations kept), drop unused
    python -m pda_client.app.catalogs compile   # write each .mo from its .po
    python -m pda_client.app.catalogs check     # exit 1 if a catalogue is stale, incomplete or not compiled

Messages are the string literals in `tr._("...")` calls and `N_("...")` markers in the app's .py and .kv
files, plus the labels of sync_protocol's code lists. The .mo writer follows CPython's Tools/i18n/msgfmt.py
(same layout, little-endian, no hash table), so the committed .mo is a pure function of its .po: the test
suite compiles each .po in memory and compares the bytes.
"""

from __future__ import annotations

import argparse
import array
import ast
import re
import struct
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent
ROOT = APP_DIR.parents[1]
LOCALE_DIR = APP_DIR / "locale"
DOMAIN = "fieldsync"
LANGUAGES = ("en", "zh_CN")  # kept equal to i18n.LANGUAGES (which needs Kivy; this module does not)
MESSAGE_CALL = re.compile(r"""(?:\btr\._|\bN_)\(\s*("(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')\s*\)""")
HEADER = (
    "Project-Id-Version: fieldsync-handheld\n"
    "Language: {language}\n"
    "MIME-Version: 1.0\n"
    "Content-Type: text/plain; charset=UTF-8\n"
    "Content-Transfer-Encoding: 8bit\n"
)


@dataclass
class Entry:
    msgid: str
    msgstr: str = ""
    references: list[str] = field(default_factory=list)
    fuzzy: bool = False


def code_list_labels() -> list[tuple[str, str]]:
    """(label, reference) for every code-list label the app shows."""
    from sync_protocol import codes

    labels = []
    for name in (
        "READING_TYPES",
        "SKIP_CODES",
        "TROUBLE_CODES",
        "COMMENT_CODES",
        "HAZARD_CODES",
        "JOB_TYPES",
        "RESOLUTION_CODES",
        "CUSTOMER_SEGMENTS",
        "PRIORITIES",
    ):
        labels += [(label, f"sync_protocol/codes.py:{name}") for label in getattr(codes, name).values()]
    return labels


def extract(app_dir: Path = APP_DIR) -> dict[str, list[str]]:
    """msgid -> where it is used, in a stable order (sources by path, then code lists)."""
    found: dict[str, list[str]] = {}
    sources = sorted(p for p in app_dir.rglob("*") if p.suffix in (".py", ".kv") and p.name != "catalogs.py")
    for path in sources:
        text = path.read_text(encoding="utf-8")
        for match in MESSAGE_CALL.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            reference = f"{path.relative_to(ROOT).as_posix()}:{line}"
            found.setdefault(ast.literal_eval(match.group(1)), []).append(reference)
    for label, reference in code_list_labels():
        found.setdefault(label, []).append(reference)
    return found


# --- .po files -----------------------------------------------------------------------------------------


def _unquote(text: str) -> str:
    text = text.strip()
    if not (text.startswith('"') and text.endswith('"')):
        raise ValueError(f"not a quoted string: {text}")
    return ast.literal_eval(text)


def parse_po(text: str) -> dict[str, Entry]:
    """msgid -> Entry (the header has msgid ""). Plurals and contexts are not used by this app."""
    entries: dict[str, Entry] = {}
    current: Entry | None = None
    section = None
    references: list[str] = []
    fuzzy = False

    def finish() -> None:
        nonlocal current
        if current is not None:
            entries[current.msgid] = current
        current = None

    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if section == "msgstr":
                finish()
                section = None
            if line.startswith("#:"):
                references += line[2:].split()
            elif line.startswith("#,") and "fuzzy" in line:
                fuzzy = True
            continue
        keyword, _, rest = line.partition(" ")
        if keyword == "msgid":
            finish()
            current = Entry(_unquote(rest), references=references, fuzzy=fuzzy)
            references, fuzzy, section = [], False, "msgid"
        elif keyword == "msgstr" and current is not None:
            current.msgstr, section = _unquote(rest), "msgstr"
        elif line.startswith('"') and current is not None and section == "msgid":
            current.msgid += _unquote(line)
        elif line.startswith('"') and current is not None and section == "msgstr":
            current.msgstr += _unquote(line)
        else:
            raise ValueError(f"line {number}: cannot read {raw!r} (plural forms and contexts are not supported)")
    finish()
    return entries


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t")
    lines = escaped.split("\n")
    if len(lines) == 1:
        return f'"{escaped}"'
    parts = [line + "\\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
    return '""\n' + "\n".join(f'"{part}"' for part in parts)


def render_po(language: str, entries: Iterable[Entry]) -> str:
    title = "English (the source language: an empty msgstr shows the msgid)" if language == "en" else language
    out = [
        f"# FieldSync handheld app: {title}.",
        "# Generated by `python -m pda_client.app.catalogs update`; edit msgstr lines only.",
        'msgid ""',
        f"msgstr {_quote(HEADER.format(language=language))}",
        "",
    ]
    for entry in entries:
        out += [f"#: {' '.join(entry.references[:3])}"] if entry.references else []
        out += ["#, fuzzy"] if entry.fuzzy else []
        out += [f"msgid {_quote(entry.msgid)}", f"msgstr {_quote(entry.msgstr)}", ""]
    return "\n".join(out)


# --- .mo files ------------------------------------------------------------------------------------------


def compile_mo(entries: dict[str, Entry]) -> bytes:
    """GNU .mo bytes, as CPython's msgfmt.py writes them: translated, non-fuzzy entries plus the header."""
    messages = {
        entry.msgid.encode(): entry.msgstr.encode()
        for entry in entries.values()
        if entry.msgstr and not entry.fuzzy
    }
    keys = sorted(messages)
    ids = strs = b""
    offsets = []
    for key in keys:
        offsets.append((len(ids), len(key), len(strs), len(messages[key])))
        ids += key + b"\0"
        strs += messages[key] + b"\0"
    keystart = 7 * 4 + 16 * len(keys)
    valuestart = keystart + len(ids)
    key_offsets: list[int] = []
    value_offsets: list[int] = []
    for id_offset, id_length, str_offset, str_length in offsets:
        key_offsets += [id_length, id_offset + keystart]
        value_offsets += [str_length, str_offset + valuestart]
    table = array.array("i", key_offsets + value_offsets)
    if sys.byteorder != "little":
        table.byteswap()
    header = struct.pack("<Iiiiiii", 0x950412DE, 0, len(keys), 7 * 4, 7 * 4 + len(keys) * 8, 0, 0)
    return header + table.tobytes() + ids + strs


def po_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def mo_path(language: str) -> Path:
    return po_path(language).with_suffix(".mo")


def load(language: str) -> dict[str, Entry]:
    path = po_path(language)
    return parse_po(path.read_text(encoding="utf-8")) if path.exists() else {}


# --- commands -------------------------------------------------------------------------------------------


def update() -> None:
    found = extract()
    for language in LANGUAGES:
        existing = load(language)
        entries = []
        for msgid, references in found.items():
            old = existing.get(msgid)
            entries.append(Entry(msgid, old.msgstr if old else "", references, old.fuzzy if old else False))
        path = po_path(language)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_po(language, entries), encoding="utf-8")


def compile_all() -> None:
    for language in LANGUAGES:
        mo_path(language).write_bytes(compile_mo(load(language)))


def problems() -> list[str]:
    """Everything that makes the catalogues disagree with the code or with each other (empty: all good)."""
    found = extract()
    issues = []
    for language in LANGUAGES:
        entries = load(language)
        if not entries:
            issues.append(f"{po_path(language)} is missing")
            continue
        ids = set(entries) - {""}
        for msgid in sorted(set(found) - ids):
            issues.append(f"{language}: not in the catalogue: {msgid!r} (run `update`)")
        for msgid in sorted(ids - set(found)):
            issues.append(f"{language}: no longer used: {msgid!r} (run `update`)")
        if language != "en":
            for msgid in sorted(i for i in ids & set(found) if not entries[i].msgstr or entries[i].fuzzy):
                issues.append(f"{language}: not translated: {msgid!r}")
        for msgid in sorted(ids):
            missing = set(re.findall(r"\{\w*\}", msgid)) - set(re.findall(r"\{\w*\}", entries[msgid].msgstr))
            if entries[msgid].msgstr and missing:
                issues.append(f"{language}: translation of {msgid!r} lacks {', '.join(sorted(missing))}")
        mo = mo_path(language)
        if not mo.exists() or mo.read_bytes() != compile_mo(entries):
            issues.append(f"{mo} is not compiled from its .po (run `compile`)")
    return issues


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pda_client.app.catalogs", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["update", "compile", "check"])
    args = parser.parse_args(argv)
    if args.command == "update":
        update()
    elif args.command == "compile":
        compile_all()
    issues = problems() if args.command == "check" else []
    for issue in issues:
        print(issue)
    return 1 if issues else 0


if __name__ == "__main__":
    sys.exit(main())
