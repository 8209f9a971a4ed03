"""sync_protocol is sans-I/O: importing it must not pull in a web framework, an ORM, a UI or HTTP."""

import json
import subprocess
import sys
import textwrap

FORBIDDEN = ("flask", "sqlalchemy", "flask_sqlalchemy", "kivy", "requests")

PROBE = textwrap.dedent(
    """
    import importlib, json, pkgutil, sys
    import sync_protocol
    names = [info.name for info in pkgutil.walk_packages(sync_protocol.__path__, "sync_protocol.")]
    for name in names:
        importlib.import_module(name)
    forbidden = {forbidden!r}
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in forbidden)
    print(json.dumps({{"submodules": names, "forbidden_loaded": loaded}}))
    """
)


def run_probe(preamble: str = "") -> dict:
    """Import sync_protocol and every submodule in a fresh interpreter; report forbidden modules."""
    code = preamble + "\n" + PROBE.format(forbidden=FORBIDDEN)
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    return json.loads(completed.stdout)


def test_importing_sync_protocol_loads_no_framework_orm_ui_or_http_library():
    report = run_probe()
    # The probe really walked the package: an empty walk would prove nothing.
    assert {
        "sync_protocol.errors",
        "sync_protocol.hlc",
        "sync_protocol.lifecycle",
        "sync_protocol.merge",
        "sync_protocol.readings",
        "sync_protocol.schemas",
        "sync_protocol.versions",
    } <= set(report["submodules"])
    assert report["forbidden_loaded"] == []


def test_purity_probe_reports_a_forbidden_module_when_one_is_loaded():
    """The probe can fail: with `requests` imported in the same interpreter it names it."""
    report = run_probe(preamble="import requests")
    assert "requests" in report["forbidden_loaded"]
