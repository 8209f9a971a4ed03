"""A tiny scripted sync server on 127.0.0.1 (http.server in a thread).

Tests queue replies per path, or set a handler for a path; a path with neither gets a sensible default
(hello succeeds, push applies every change, pull returns an empty last page). Every request is recorded with its
decoded body. Success bodies are checked against sync_protocol's response schemas, so a scripted
answer is always one the real server could give.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import threading
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from sync_protocol import ERRORS, PROTOCOL_VERSION
from sync_protocol.schemas import HelloResponseSchema, PullResponseSchema, PushResponseSchema

from .scope import SERVER_NODE, USER, iso, stamp

HELLO = "/api/v1/sync/hello"
PUSH = "/api/v1/sync/push"
PULL = "/api/v1/sync/pull"


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    gzip: bool = False
    cut: bool = False  # the link dies inside the headers: the client sees a status line and nothing else


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    raw: bytes  # the body as sent on the wire
    body: Any  # the body decoded (gunzipped, JSON), or None

    @property
    def change_ids(self) -> list[str]:
        return [c["change_id"] for c in self.body["changes"]]


Script = Reply | Callable[[Seen], Reply]


class Loopback:
    def __init__(self, clock: Callable[[], int]) -> None:
        self.clock = clock
        self.seen: list[Seen] = []
        self.queues: dict[str, deque[Script]] = defaultdict(deque)
        self.handlers: dict[str, Callable[[Seen], Reply]] = {}  # per path, when nothing is queued
        self.errors: list[Exception] = []
        self.max_batch_changes = 500
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        loopback = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                loopback._handle(self)

            def do_POST(self) -> None:
                loopback._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop listening (idempotent): afterwards the port refuses connections."""
        if self._httpd is None or self._thread is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
        self._thread = None

    @property
    def url(self) -> str:
        assert self._httpd is not None
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # --- scripting --------------------------------------------------------------------------------

    def script(self, path: str, *replies: Script) -> None:
        self.queues[path].extend(replies)

    def requests_to(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]

    def now_iso(self) -> str:
        return iso_ms(self.clock())

    def hello(self) -> Reply:
        body = {
            "protocol": PROTOCOL_VERSION,
            "supported": {"oldest": 1, "newest": PROTOCOL_VERSION},
            "server_time": self.now_iso(),
            "server_hlc": str_stamp(self.clock()),
            "epoch": "epoch-1",
            "device": {"id": "D-test-1", "name": "handheld"},
            "user": dict(USER),
            "scope": {"jobs": 2, "routes": 1, "meters": 4},
            "limits": {"max_batch_changes": self.max_batch_changes, "max_body_bytes": 1 << 20, "page_bytes": 1 << 16},
        }
        HelloResponseSchema().load(body)
        return Reply(200, body)

    def results(self, seen: Seen, status: str = "applied", **per_change: dict[str, Any]) -> Reply:
        """The push answer: every change gets `status` (or what `per_change[change_id]` says)."""
        results = []
        for index, change in enumerate(seen.body["changes"]):
            result = {
                "change_id": change["change_id"],
                "status": status,
                "error": None,
                "conflicts": [],
                "hlc": str_stamp(self.clock(), index),
                "flags": [],
            }
            result.update(per_change.get(change["change_id"], {}))
            results.append(result)
        body = {
            "protocol": PROTOCOL_VERSION,
            "batch_id": seen.body["batch_id"],
            "server_time": self.now_iso(),
            "results": results,
        }
        PushResponseSchema().load(body)
        return Reply(200, body)

    def page(self, records: list[dict[str, Any]], cursor: str, has_more: bool = False, gzip: bool = False) -> Reply:
        body = {
            "protocol": PROTOCOL_VERSION,
            "cursor": cursor,
            "has_more": has_more,
            "server_time": self.now_iso(),
            "records": records,
        }
        PullResponseSchema().load(body)
        return Reply(200, body, gzip=gzip)

    @staticmethod
    def error(code: str, message: str | None = None, status: int | None = None, **headers: str) -> Reply:
        kind = ERRORS[code]
        body = {"error": {"code": code, "message": message or kind.message, "fields": {}}}
        return Reply(status or kind.status, body, headers)

    def _default(self, seen: Seen) -> Reply:
        if seen.path in self.handlers:
            return self.handlers[seen.path](seen)
        if seen.path == HELLO:
            return self.hello()
        if seen.path == PUSH:
            return self.results(seen)
        if seen.path == PULL:
            return self.page([], "c-end")
        return self.error("not_found")

    # --- serving ----------------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in handler.headers.items()}
        decoded = gzip.decompress(raw) if headers.get("content-encoding") == "gzip" else raw
        seen = Seen(
            handler.command,
            parts.path,
            dict(parse_qsl(parts.query)),
            headers,
            raw,
            json.loads(decoded) if decoded else None,
        )
        self.seen.append(seen)
        queue = self.queues[parts.path]
        script = queue.popleft() if queue else self._default
        try:
            reply = script(seen) if callable(script) else script
        except Exception as exc:  # a broken script must fail the test, not look like a flaky server
            self.errors.append(exc)
            reply = self.error("internal_error", f"test script failed: {exc!r}")
        if reply.cut:
            handler.wfile.write(f"HTTP/1.1 {reply.status} OK\r\nContent-Type: application/json\r\n".encode())
            handler.close_connection = True
            return
        payload = b"" if reply.body is None else json.dumps(reply.body).encode()
        if reply.gzip:
            payload = gzip.compress(payload)
        handler.send_response(reply.status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        if reply.gzip:
            handler.send_header("Content-Encoding", "gzip")
        for name, value in reply.headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(payload)


def iso_ms(ms: int) -> str:
    return iso(dt.datetime.fromtimestamp(ms / 1000, dt.UTC))


def str_stamp(ms: int, counter: int = 0) -> str:
    return stamp(dt.datetime.fromtimestamp(ms / 1000, dt.UTC), counter, SERVER_NODE)
