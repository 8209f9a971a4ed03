"""The server as it runs in production: gunicorn, 3 worker processes, a real socket, requests as the
handheld's HTTP client, and the administration commands an operator types."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from server import create_app
from sync_protocol import PROTOCOL_HEADER, PROTOCOL_VERSION, HLCClock
from tests.e2e.conftest import ENROLL_ATTEMPTS, LiveServer

pytestmark = pytest.mark.e2e
TIMEOUT = 30


@dataclass
class RemoteDevice:
    server: LiveServer
    device_id: str
    token: str
    cursor: str | None = None
    clock: HLCClock = field(default_factory=lambda: HLCClock(f"dev-{uuid.uuid4().hex[:8]}"))

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", PROTOCOL_HEADER: str(PROTOCOL_VERSION)}

    def hello(self) -> requests.Response:
        query = {"protocol_min": PROTOCOL_VERSION, "protocol_max": PROTOCOL_VERSION}
        return requests.get(self.server.api("/sync/hello"), params=query, headers=self.headers, timeout=TIMEOUT)

    def push(self, body: dict[str, Any]) -> requests.Response:
        """POST a push body gzip-encoded, as the handheld sends it."""
        headers = {**self.headers, "Content-Type": "application/json", "Content-Encoding": "gzip"}
        data = gzip.compress(json.dumps(body).encode())
        return requests.post(self.server.api("/sync/push"), data=data, headers=headers, timeout=TIMEOUT)

    def pull(self) -> requests.Response:
        query = {"cursor": self.cursor} if self.cursor else {}
        headers = {**self.headers, "Accept-Encoding": "gzip"}
        return requests.get(self.server.api("/sync/pull"), params=query, headers=headers, timeout=TIMEOUT)

    def pull_all(self) -> tuple[list[dict[str, Any]], set[str]]:
        """Every page until has_more is false: the records and the Content-Encodings seen."""
        records: list[dict[str, Any]] = []
        encodings: set[str] = set()
        while True:
            response = self.pull()
            assert response.status_code == 200, response.text
            encodings.add(response.headers.get("Content-Encoding", "identity"))
            body = response.json()
            records.extend(body["records"])
            self.cursor = body["cursor"]
            if not body["has_more"]:
                return records, encodings

    def reading(self, meter: dict[str, Any]) -> dict[str, Any]:
        data = meter["data"]
        value = ((data["last_value"] or 0) + 7) % 10 ** data["dials"]
        read_at = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        return {
            "change_id": uuid.uuid4().hex,
            "entity": "meter_reading",
            "entity_id": f"MR-{uuid.uuid4().hex[:12]}",
            "hlc": str(self.clock.now()),
            "data": {"meter_id": meter["id"], "value": value, "read_at": read_at},
        }


def enrol(server: LiveServer, username: str = "reader1", name: str = "e2e handheld") -> RemoteDevice:
    """An administrator issues a code on the command line; the handheld spends it over HTTP."""
    code = server.flask("enroll-code", username).strip().splitlines()[-1]
    response = requests.post(
        server.api("/devices/enroll"), json={"code": code, "device_name": name}, timeout=TIMEOUT
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return RemoteDevice(server, body["device_id"], body["token"])


def _batch(changes: list[dict[str, Any]]) -> dict[str, Any]:
    return {"protocol": PROTOCOL_VERSION, "batch_id": uuid.uuid4().hex, "changes": changes}


def _meters(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted((r for r in records if r["entity"] == "meter"), key=lambda r: r["data"]["route_seq"])


def test_health_needs_no_authentication(live_server):
    response = requests.get(live_server.api("/health"), timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.json()["status"] == "ok" and response.json()["database"] == "ok"


def _protected_endpoints(tmp_path: Path) -> list[tuple[str, str]]:
    """Every API route of the app except health and enrolment, with each of its methods."""
    app = create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", "SECRET_KEY": "x"}, instance_path=str(tmp_path))
    public = {"/api/v1/health", "/api/v1/devices/enroll"}
    return sorted(
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/") and rule.rule not in public
        for method in rule.methods - {"HEAD", "OPTIONS"}
    )


def test_every_other_api_endpoint_needs_a_device_token(live_server, tmp_path):
    endpoints = _protected_endpoints(tmp_path)
    assert {("GET", "/api/v1/sync/hello"), ("POST", "/api/v1/sync/push"), ("GET", "/api/v1/sync/pull")} <= set(
        endpoints
    )
    for method, path in endpoints:
        for headers in ({}, {"Authorization": "Bearer fs1.not-a-token"}, {"Authorization": "Basic eDp5"}):
            response = requests.request(
                method, live_server.url + path, json={} if method == "POST" else None, headers=headers,
                timeout=TIMEOUT,
            )
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.json()["error"]["code"] == "unauthorized"


def test_enrol_hello_push_and_pull_with_gzip(live_server):
    device = enrol(live_server)
    hello = device.hello()
    assert hello.status_code == 200, hello.text
    assert hello.json()["protocol"] == PROTOCOL_VERSION
    assert hello.json()["device"]["id"] == device.device_id

    records, encodings = device.pull_all()
    meters = _meters(records)
    assert len(meters) > 100 and "gzip" in encodings, "a route's snapshot is large: it comes gzipped"
    change = device.reading(meters[0])
    response = device.push(_batch([change]))
    assert response.status_code == 200, response.text
    assert [r["status"] for r in response.json()["results"]] == ["applied"]
    pulled, _ = device.pull_all()
    assert pulled == []  # its own change stored as sent is not echoed back
    spare = enrol(live_server, name="spare handheld")  # the same reader's second handheld
    records, _ = spare.pull_all()
    assert ("meter_reading", change["entity_id"]) in {(r["entity"], r["id"]) for r in records}


THREADS = 8
BATCHES = 4
DELIVERIES = 3  # each thread sends its batch this many times: a lost response, retried
CHANGES_PER_BATCH = 5


def test_concurrent_duplicate_pushes_apply_each_change_once(live_server):
    """8 threads push 4 batches (each batch from 2 threads, 3 times each) at 3 workers at once: every
    delivery gets the same answer, and each change has exactly one effect."""
    device = enrol(live_server, name="busy handheld")
    records, _ = device.pull_all()
    meters = _meters(records)
    batches = [
        _batch([device.reading(meters[b * CHANGES_PER_BATCH + i]) for i in range(CHANGES_PER_BATCH)])
        for b in range(BATCHES)
    ]
    answers: dict[int, list[list[dict[str, Any]]]] = {b: [] for b in range(BATCHES)}
    failures: list[str] = []
    start = threading.Barrier(THREADS)
    lock = threading.Lock()

    def deliver(batch_index: int) -> None:
        start.wait()
        for _ in range(DELIVERIES):
            response = device.push(batches[batch_index])
            with lock:
                if response.status_code == 200:
                    answers[batch_index].append(response.json()["results"])
                else:
                    failures.append(f"{response.status_code} {response.text}")

    threads = [threading.Thread(target=deliver, args=(t % BATCHES,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures
    for b, deliveries in answers.items():
        assert len(deliveries) == THREADS // BATCHES * DELIVERIES
        assert all(d == deliveries[0] for d in deliveries), "every delivery gets the same results"
        assert [r["status"] for r in deliveries[0]] == ["applied"] * CHANGES_PER_BATCH
        assert [r["change_id"] for r in deliveries[0]] == [c["change_id"] for c in batches[b]["changes"]]

    reading_ids = [c["entity_id"] for batch in batches for c in batch["changes"]]
    change_ids = [c["change_id"] for batch in batches for c in batch["changes"]]
    engine = sa.create_engine(live_server.database_url)
    try:
        with engine.connect() as conn:

            def count(table: str, column: str, ids: list[str]) -> int:
                statement = sa.text(f"SELECT COUNT(*) FROM {table} WHERE {column} IN :ids").bindparams(
                    sa.bindparam("ids", expanding=True)
                )
                return conn.execute(statement, {"ids": ids}).scalar_one()

            assert count("meter_readings", "id", reading_ids) == len(reading_ids)
            assert count("change_receipts", "change_id", change_ids) == len(change_ids)
            assert count("change_log", "entity_id", reading_ids) == len(reading_ids), "one feed entry each"
    finally:
        engine.dispose()
    pulled, _ = device.pull_all()
    assert pulled == [], "its own changes are not echoed back"
    spare = enrol(live_server, name="spare handheld")  # the same reader's second handheld
    records, _ = spare.pull_all()
    readings = [r["id"] for r in records if r["entity"] == "meter_reading" and r["id"] in set(reading_ids)]
    assert sorted(readings) == sorted(reading_ids), "each reading pulled once"


def test_revoked_device_is_refused_on_its_next_request(live_server):
    device = enrol(live_server, name="lost handheld")
    assert device.hello().status_code == 200
    assert "lost handheld" in live_server.flask("list-devices")
    assert live_server.flask("revoke-device", device.device_id).strip() == f"revoked {device.device_id}"
    for response in (device.hello(), device.pull(), device.push(_batch([]))):
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == "unauthorized"


def test_enrolment_limit_counts_the_client_behind_the_load_balancer(live_server):
    """Behind a load balancer (FIELDSYNC_TRUSTED_PROXIES=1) the per-address enrolment limit applies to
    the client address the balancer forwards, not to the balancer: one guessing client is stopped,
    the handhelds enrolling beside it are not."""
    url = live_server.api("/devices/enroll")
    guess = {"code": "AAAA-BBBB-CCCC", "device_name": "guesser"}

    def attempt(client: str) -> requests.Response:
        return requests.post(url, json=guess, headers={"X-Forwarded-For": client}, timeout=TIMEOUT)

    statuses = [attempt("203.0.113.7").status_code for _ in range(ENROLL_ATTEMPTS + 1)]
    assert statuses == [401] * ENROLL_ATTEMPTS + [429], statuses
    assert attempt("203.0.113.8").status_code == 401, "another client is not limited"


def test_workers_booting_together_share_one_generated_secret_key(tmp_path, monkeypatch):
    """Without FIELDSYNC_SECRET_KEY each instance generates one; gunicorn workers (preload_app off) create
    their apps at the same moment, so one may find no key file, and create its own, just after another
    worker created the first. The key that was there first must stay: every worker signs alike."""
    config = {"SECRET_KEY": None, "SQLALCHEMY_DATABASE_URI": "sqlite://"}
    first = create_app(config, instance_path=str(tmp_path)).config["SECRET_KEY"]
    key_file = tmp_path / "secret_key"
    assert len(first) == 64 and key_file.stat().st_mode & 0o077 == 0, "a private, random key"

    exists = Path.exists
    monkeypatch.setattr(Path, "exists", lambda path, *a, **k: path.name != "secret_key" and exists(path, *a, **k))
    second = create_app(config, instance_path=str(tmp_path)).config["SECRET_KEY"]
    assert second == first
    assert [p.name for p in tmp_path.iterdir() if "secret" in p.name] == ["secret_key"], "no temp file left"
