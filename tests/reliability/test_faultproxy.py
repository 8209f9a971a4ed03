"""The fault proxy against a tiny real HTTP server on loopback, driven by `requests` as the handhelds drive it."""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from tests.reliability.faultproxy import FAULT_KINDS, FaultProxy


class _Handler(BaseHTTPRequestHandler):
    """POST: counts it and echoes the body (same bytes, same Content-Encoding) with its length in a header.
    GET: a small JSON answer with the POST count."""

    protocol_version = "HTTP/1.1"
    server: _Upstream

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.server.lock:
            self.server.posts += 1
        headers = {"X-Received-Length": str(len(body))}
        if self.headers.get("Content-Encoding"):
            headers["Content-Encoding"] = self.headers["Content-Encoding"]
        self._answer(body, headers)

    def do_GET(self) -> None:
        self._answer(json.dumps({"posts": self.server.posts}).encode(), {})

    def _answer(self, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        if self.server.say_close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Upstream(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, say_close: bool = True) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.posts = 0
        self.say_close = say_close  # like gunicorn's sync workers

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.server_address[1])


def _serve(server: _Upstream) -> Iterator[_Upstream]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def upstream() -> Iterator[_Upstream]:
    yield from _serve(_Upstream())


@pytest.fixture
def other_upstream() -> Iterator[_Upstream]:
    yield from _serve(_Upstream())


@pytest.fixture
def keepalive_upstream() -> Iterator[_Upstream]:
    yield from _serve(_Upstream(say_close=False))


@pytest.fixture
def proxy_for(request: pytest.FixtureRequest) -> Iterator:
    """proxy_for(upstream, **kwargs): a started proxy, stopped after the test."""
    proxies: list[FaultProxy] = []

    def make(server: _Upstream | tuple[str, int], *, seed: int = 1, **kwargs: object) -> FaultProxy:
        address = server.address if isinstance(server, _Upstream) else server
        proxy = FaultProxy(address, seed=seed, **kwargs).start()  # type: ignore[arg-type]
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.stop()


PAYLOAD = {"changes": [{"job": f"J-{i}", "field": "note", "value": "x" * (i % 50)} for i in range(4000)]}
GZIPPED = gzip.compress(json.dumps(PAYLOAD).encode())


def _post(url: str, data: bytes = b'{"hello":"world"}', **kwargs: object) -> requests.Response:
    return requests.post(url + "/api/v1/sync/push", data=data, timeout=5, **kwargs)  # type: ignore[arg-type]


def _post_outcome(url: str) -> str:
    """'ok' when the echo came back whole; otherwise what went wrong."""
    try:
        response = _post(url)
    except requests.RequestException as exc:
        return type(exc).__name__
    return "ok" if response.content == b'{"hello":"world"}' else "wrong body"


def test_without_faults_answers_pass_through_byte_exact(upstream, proxy_for):
    proxy = proxy_for(upstream)
    with requests.Session() as session:
        for _ in range(3):
            response = session.post(
                proxy.url + "/push", data=GZIPPED, headers={"Content-Encoding": "gzip"}, timeout=5, stream=True
            )
            raw = response.raw.read(decode_content=False)
            response.close()
            assert response.status_code == 200
            assert raw == GZIPPED
            assert response.headers["X-Received-Length"] == str(len(GZIPPED))
        assert session.get(proxy.url + "/status", timeout=5).json() == {"posts": 3}
    assert upstream.posts == 3
    assert proxy.requests == 4
    assert proxy.counts == dict.fromkeys(FAULT_KINDS, 0)
    assert proxy.decisions == [None] * 4


def test_client_keepalive_carries_several_requests_on_one_connection(keepalive_upstream, proxy_for):
    proxy = proxy_for(keepalive_upstream)
    with requests.Session() as session:
        for _ in range(3):
            assert session.post(proxy.url + "/push", data=GZIPPED, timeout=5).content == GZIPPED
    assert keepalive_upstream.posts == 3
    assert proxy.connections == 1


def test_chunked_request_body_is_forwarded_verbatim(upstream, proxy_for):
    proxy = proxy_for(upstream)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(
            b"POST /push HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n"
        )
        answer = _read_all(sock)
    # http.server does not decode chunked bodies: it sees no Content-Length and reads nothing, but it answered
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert upstream.posts == 1


def test_malformed_request_gets_400(upstream, proxy_for):
    proxy = proxy_for(upstream)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(b"POST /push HTTP/1.1\r\nContent-Length: nope\r\n\r\n")
        assert _read_all(sock).startswith(b"HTTP/1.1 400 ")
    assert upstream.posts == 0


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_drop_before_never_reaches_the_server(upstream, proxy_for):
    proxy = proxy_for(upstream, rates={"drop_before": 1.0})
    with pytest.raises(requests.ConnectionError):
        _post(proxy.url)
    assert upstream.posts == 0
    assert proxy.counts["drop_before"] == 1
    assert proxy.requests == 1


def test_drop_after_loses_the_answer_but_the_server_did_the_work(upstream, proxy_for):
    proxy = proxy_for(upstream, rates={"drop_after": 1.0})
    with pytest.raises(requests.ConnectionError):
        _post(proxy.url)
    assert upstream.posts == 1
    assert proxy.counts["drop_after"] == 1


def test_truncate_never_hands_the_client_the_whole_answer(upstream, proxy_for):
    proxy = proxy_for(upstream, rates={"truncate": 1.0})
    outcomes = [_post_outcome(proxy.url) for _ in range(40)]
    assert "ok" not in outcomes
    assert upstream.posts == 40
    assert proxy.counts["truncate"] == 40


def test_duplicate_delivers_the_same_request_twice(upstream, proxy_for):
    proxy = proxy_for(upstream, rates={"duplicate": 1.0})
    response = _post(proxy.url, data=GZIPPED, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 200
    assert response.json() == PAYLOAD
    assert upstream.posts == 2
    assert proxy.counts["duplicate"] == 1


def test_reset_is_a_client_error(upstream, proxy_for):
    proxy = proxy_for(upstream, rates={"reset": 1.0})
    with pytest.raises(requests.ConnectionError):
        _post(proxy.url)
    assert upstream.posts == 1
    assert proxy.counts["reset"] == 1


def test_delay_still_answers_correctly(upstream, proxy_for):
    proxy = proxy_for(upstream, rates={"delay": 1.0}, max_delay_s=0.05)
    assert _post(proxy.url).json() == {"hello": "world"}
    assert proxy.counts["delay"] == 1
    assert upstream.posts == 1


MIXED = {"drop_before": 0.1, "drop_after": 0.1, "delay": 0.1, "truncate": 0.1, "duplicate": 0.1, "reset": 0.1}


def test_same_seed_gives_same_fault_decisions(upstream, proxy_for):
    runs = []
    for seed in (7, 7, 8):
        proxy = proxy_for(upstream, seed=seed, rates=MIXED, max_delay_s=0.01)
        for _ in range(30):
            _post_outcome(proxy.url)
        runs.append(proxy.decisions)
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    assert len(set(runs[0])) > 3  # several kinds, and some requests without a fault


def test_faults_are_counted_per_kind(upstream, proxy_for):
    proxy = proxy_for(upstream, seed=3, rates=MIXED, max_delay_s=0.01)
    outcomes = [_post_outcome(proxy.url) for _ in range(30)]
    assert sum(proxy.counts.values()) == sum(kind is not None for kind in proxy.decisions)
    assert outcomes.count("ok") == sum(kind in (None, "delay", "duplicate") for kind in proxy.decisions)
    for kind in FAULT_KINDS:
        assert proxy.counts[kind] == proxy.decisions.count(kind)


def test_clean_suppresses_faults_and_restores_the_rates(upstream, proxy_for):
    proxy = proxy_for(upstream, rates={"drop_before": 1.0})
    with proxy.clean():
        assert [_post_outcome(proxy.url) for _ in range(3)] == ["ok"] * 3
        assert proxy.rates["drop_before"] == 0
    assert proxy.rates["drop_before"] == 1.0
    assert _post_outcome(proxy.url) == "ConnectionError"
    assert proxy.counts["drop_before"] == 1


def test_set_upstream_moves_to_a_new_server(upstream, other_upstream, proxy_for):
    proxy = proxy_for(upstream)
    assert _post_outcome(proxy.url) == "ok"
    proxy.set_upstream(other_upstream.address)
    assert _post_outcome(proxy.url) == "ok"
    assert (upstream.posts, other_upstream.posts) == (1, 1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_upstream_is_a_client_error_not_a_fault(proxy_for):
    proxy = proxy_for(("127.0.0.1", _free_port()), rates={"duplicate": 1.0})
    with pytest.raises(requests.ConnectionError):
        _post(proxy.url)
    assert proxy.upstream_failures == 1
    assert proxy.counts == dict.fromkeys(FAULT_KINDS, 0)


@pytest.mark.parametrize(
    "rates",
    [{"jitter": 0.1}, {"drop_before": 0.6, "reset": 0.5}, {"delay": -0.1}, {"delay": float("nan")}],
)
def test_bad_rates_are_refused(rates):
    with pytest.raises(ValueError):
        FaultProxy(("127.0.0.1", 1), seed=0, rates=rates)


def test_stop_closes_open_connections_promptly_and_is_idempotent(upstream):
    with FaultProxy(upstream.address, seed=0, rates={"delay": 1.0}, max_delay_s=30).start() as proxy:
        idle = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        waiting = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        waiting.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # sits in a long delay
        while proxy.requests < 1:
            time.sleep(0.01)
        started = time.monotonic()
        proxy.stop()
        assert time.monotonic() - started < 1.5
        with idle, waiting:
            assert idle.recv(1) == b""
            assert waiting.recv(1) == b""
        with pytest.raises(requests.ConnectionError):
            requests.get(proxy.url, timeout=2)
    proxy.stop()
    assert upstream.posts == 0
