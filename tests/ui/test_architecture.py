"""The app's shape: no SQL and no HTTP in it (only the core's public API), one kv file per screen next
to its module, loaded by paths relative to the module, and screens built only when first shown."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from pda_client.app import main
from tests.ui.conftest import install

APP = Path(main.__file__).parent
FORBIDDEN_MODULES = ("sqlite3", "sqlite_utils", "sqlalchemy", "requests", "urllib", "http", "socket", "server")
CORE_INTERNALS = ("pda_client.store", "pda_client.sync", "pda_client.transport", "pda_client.outbox",
                  "pda_client.migrations", "pda_client.jobs", "pda_client.readings")
SQL = re.compile(r"\b(SELECT\s.+\sFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+TABLE)\b", re.I)


def app_sources() -> list[Path]:
    return sorted(p for p in APP.rglob("*") if p.suffix in (".py", ".kv"))


def imported(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_the_app_holds_no_sql_and_no_http():
    for path in app_sources():
        text = path.read_text(encoding="utf-8")
        assert not SQL.search(text), f"SQL in {path.name}"
        if path.suffix == ".kv":
            assert ".store" not in text and "requests" not in text, path.name
            continue
        tree = ast.parse(text)
        for module in imported(tree):
            assert not module.startswith(FORBIDDEN_MODULES), f"{path.name} imports {module}"
            assert not module.startswith(CORE_INTERNALS), f"{path.name} imports {module}: use Handheld"
        attributes = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
        assert not attributes & {"store", "db", "execute"}, f"{path.name} reaches below the core's API"


def test_the_check_above_would_see_sql_and_http():
    tree = ast.parse("import requests\nfrom pda_client.store import LocalStore\nhh.store.db.execute('x')")
    assert {"requests", "pda_client.store"} <= imported(tree)
    assert SQL.search("rows = db.execute('SELECT id FROM meters')")


def test_one_kv_file_per_screen_next_to_its_module():
    files = main.kv_files()
    assert files[0] == APP / "widgets.kv"
    for (module, _cls), kv in zip(main.SCREENS.values(), files[1:], strict=True):
        assert kv.is_file() and kv.parent == APP / "screens" and kv.stem == module.rsplit(".", 1)[1]
    for path in APP.rglob("*.py"):
        assert "load_file(\"" not in path.read_text() and "load_file('" not in path.read_text(), path


def test_screens_are_built_when_first_shown(run_app, reader, data_root):
    install(reader, data_root)
    ui = run_app(data_root)
    assert ui.app.root.screen_names == ["home"]
    ui.tap("Route list")
    assert ui.app.root.screen_names == ["home", "route"]
    ui.tap("Back", exact=False)
    ui.tap("Route list")
    assert ui.app.root.screen_names == ["home", "route"], "built once"
