"""The two small public methods the app needed from the client core: `Handheld.server_reachable()`
(the app's only look at the network outside a sync) and `Readings.expected_range()` (the range shown
before entry, which must agree with the check `record` makes)."""

from __future__ import annotations

import functools
import shutil
import threading

import pytest

from pda_client import Handheld
from pda_client.transport import Transport
from sync_protocol.readings import CheckResult


@pytest.fixture
def handheld(reader, tmp_path):
    shutil.copytree(reader.folder, tmp_path / "hh")
    hh = Handheld(tmp_path / "hh")
    yield hh
    hh.close()


@pytest.mark.e2e
def test_server_reachable_asks_the_health_endpoint(handheld, tmp_path):
    assert handheld.server_reachable() is True
    nowhere = Handheld(tmp_path / "hh", transport_factory=lambda _url, **kw: Transport("http://127.0.0.1:9", **kw))
    try:
        assert nowhere.server_reachable(timeout_s=1) is False
    finally:
        nowhere.close()
    blank = Handheld(tmp_path / "not-enrolled")
    try:
        assert blank.server_reachable() is False
    finally:
        blank.close()


def test_expected_range_agrees_with_the_check(handheld):
    route = handheld.readings.routes()[0]
    meters = [m for m in handheld.readings.walk(route["id"]) if m["last_value"] is not None][:25]
    assert meters
    for meter in meters:
        expected = handheld.readings.expected_range(meter["id"])
        limit = 10 ** meter["dials"]
        check = functools.partial(handheld.readings.check, meter["id"])
        assert check(expected["low"]).result is CheckResult.IN_RANGE
        assert check(expected["high"]).result is CheckResult.IN_RANGE
        if expected["low"] != meter["last_value"]:
            assert check((expected["low"] - 1) % limit).result is CheckResult.LOW
        assert check((expected["high"] + 1) % limit).result is CheckResult.HIGH


def test_one_handheld_can_be_read_on_one_thread_while_another_writes(handheld):
    """The app syncs on a worker thread while the screen reads and records through the same Handheld:
    neither may break the other's transaction (the store serialises reads as well as writes)."""
    route = handheld.readings.routes()[0]
    meters = [m["id"] for m in handheld.readings.walk(route["id"])][:120]
    errors: list[BaseException] = []

    def record_all() -> None:
        try:
            for meter in meters:
                handheld.readings.skip(meter, "dog")
        except BaseException as exc:  # reported below, with the reader's
            errors.append(exc)

    writer = threading.Thread(target=record_all)
    writer.start()
    reads = 0
    while writer.is_alive():
        try:
            handheld.status()
            handheld.jobs.list()
        except Exception as exc:
            errors.append(exc)
            break
        reads += 1
    writer.join()
    assert errors == []
    assert reads > 0
    assert handheld.readings.progress(route["id"])["skipped"] == len(meters) == len(handheld.outbox())
