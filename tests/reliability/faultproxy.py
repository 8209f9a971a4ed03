"""A fault-injecting HTTP proxy on loopback, between simulated handhelds and a real server.

Why: the field network loses requests before the server sees them, loses answers after the server has
committed, cuts answers short, resets connections and delivers the same request twice. The fleet
simulation points handhelds at this proxy to prove that sync converges anyway.

Theory of operation:
- One fault at most per HTTP request (not per TCP connection), chosen from a `random.Random(seed)` behind a
  lock. Every decision takes exactly two draws (which fault, and a fraction that sizes a delay or a cut),
  so a seed fixes the sequence of decisions whatever the thread timing; `decisions` records it.
- Each request is read whole from the client (headers to CRLFCRLF, then the body by Content-Length, or by
  chunked framing, which is forwarded verbatim), then sent on a fresh upstream connection with
  `Connection: close`. The answer is read until the upstream closes (or its Content-Length is complete)
  and passed on byte for byte.
- The client connection stays open for its next request only when the answer allows it (HTTP/1.1, no
  `Connection: close`, complete by Content-Length); gunicorn's sync workers say `Connection: close`, so
  behind them every request gets its own connection. Any fault closes the client connection.
- An unreachable upstream (a server restarting) closes the client connection and counts in
  `upstream_failures`, never in `counts`: it is the network's doing, not an injected fault.
- Pure standard library; every socket has a timeout, threads are daemons and `stop()` does not hang.
"""

from __future__ import annotations

import math
import random
import socket
import struct
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from types import TracebackType

FAULT_KINDS = ("drop_before", "drop_after", "delay", "truncate", "duplicate", "reset")

IO_TIMEOUT_S = 60.0  # a stuck peer frees its thread after this long
CONNECT_TIMEOUT_S = 5.0
ACCEPT_POLL_S = 0.1  # how soon the accept loop notices stop()
STOP_JOIN_S = 2.0
MAX_HEAD_BYTES = 64 * 1024
MAX_LINE_BYTES = 8 * 1024
HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-connection"}
BAD_REQUEST = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
)


class _BadRequest(Exception):
    """The client sent something this proxy cannot frame; answered with 400."""


class _ClientGone(Exception):
    """The client closed the connection in the middle of a request."""


class _Reader:
    """Buffered reads from a socket: up to a delimiter, or an exact number of bytes."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def at_eof(self) -> bool:
        """True when the peer closed with nothing buffered (a clean end between requests)."""
        return not self.buffer and not self._fill()

    def read_until(self, delimiter: bytes, limit: int) -> bytes:
        start = 0
        while (end := self.buffer.find(delimiter, start)) < 0:
            if len(self.buffer) > limit:
                raise _BadRequest("request head too long")
            start = max(0, len(self.buffer) - len(delimiter) + 1)
            if not self._fill():
                raise _ClientGone
        end += len(delimiter)
        data = bytes(self.buffer[:end])
        del self.buffer[:end]
        return data

    def read_exact(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not self._fill():
                raise _ClientGone
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data


def _header_lines(head: bytes) -> list[bytes]:
    """The header lines of a message head (start line and the final blank line left out)."""
    return head[: -len(b"\r\n\r\n")].split(b"\r\n")[1:]


def _headers(head: bytes) -> list[tuple[bytes, bytes]]:
    pairs = []
    for line in _header_lines(head):
        name, sep, value = line.partition(b":")
        if sep:
            pairs.append((name.strip().lower(), value.strip()))
    return pairs


def _tokens(headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [token.strip().lower() for key, value in headers if key == name for token in value.split(b",")]


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    values = {value for key, value in headers if key == b"content-length"}
    if not values:
        return None
    if len(values) > 1 or not all(value.isdigit() for value in values):
        raise _BadRequest("bad Content-Length")
    return int(values.pop())


@dataclass(frozen=True)
class _Request:
    head: bytes  # rewritten for the upstream: Connection: close
    body: bytes  # as received, chunked framing included
    keep_alive: bool  # the client is willing to send another request on this connection

    @property
    def wire(self) -> bytes:
        return self.head + self.body


def _read_request(reader: _Reader) -> _Request | None:
    """The next request on the client connection, or None when the client closed between requests."""
    if reader.at_eof():
        return None
    head = reader.read_until(b"\r\n\r\n", MAX_HEAD_BYTES)
    request_line = head.split(b"\r\n", 1)[0]
    parts = request_line.split()
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        raise _BadRequest("bad request line")
    headers = _headers(head)
    codings = _tokens(headers, b"transfer-encoding")
    if codings:
        if codings[-1] != b"chunked":
            raise _BadRequest("unsupported Transfer-Encoding")
        body = _read_chunked(reader)
    else:
        body = reader.read_exact(_content_length(headers) or 0)
    kept = [line for line in _header_lines(head) if line.partition(b":")[0].strip().lower() not in HOP_BY_HOP]
    rewritten = b"\r\n".join([request_line, *kept, b"Connection: close"]) + b"\r\n\r\n"
    keep_alive = parts[2] == b"HTTP/1.1" and b"close" not in _tokens(headers, b"connection")
    return _Request(rewritten, body, keep_alive)


def _read_chunked(reader: _Reader) -> bytes:
    """A chunked body, framing and trailers included, so it can be forwarded verbatim."""
    raw = bytearray()
    while True:
        size_line = reader.read_until(b"\r\n", MAX_LINE_BYTES)
        raw += size_line
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise _BadRequest("bad chunk size") from None
        if size == 0:
            break
        chunk = reader.read_exact(size + 2)
        if not chunk.endswith(b"\r\n"):
            raise _BadRequest("bad chunk")
        raw += chunk
    while (line := reader.read_until(b"\r\n", MAX_LINE_BYTES)) != b"\r\n":  # trailers
        raw += line
    return bytes(raw + b"\r\n")


def _read_response(sock: socket.socket) -> bytes:
    """Everything the upstream answers, until it closes or its Content-Length is complete.

    A read error (timeout, reset) ends the answer with what arrived so far."""
    data = bytearray()
    expected: int | None = None
    head_seen = False
    while expected is None or len(data) < expected:
        try:
            chunk = sock.recv(65536)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
        if not head_seen and (end := data.find(b"\r\n\r\n")) >= 0:
            head_seen = True
            head = bytes(data[: end + 4])
            headers = _headers(head)
            try:
                length = _content_length(headers)
            except _BadRequest:
                length = None
            if length is not None and not _tokens(headers, b"transfer-encoding") and not head.startswith(b"HTTP/1.1 1"):
                expected = end + 4 + length
    return bytes(data)


def _reusable(request: _Request, response: bytes) -> bool:
    """Whether the client may send its next request on this connection after this answer."""
    end = response.find(b"\r\n\r\n")
    if not request.keep_alive or end < 0 or not response.startswith(b"HTTP/1.1 "):
        return False
    headers = _headers(response[: end + 4])
    if b"close" in _tokens(headers, b"connection") or _tokens(headers, b"transfer-encoding"):
        return False
    try:
        length = _content_length(headers)
    except _BadRequest:
        return False
    return length is not None and len(response) == end + 4 + length


def _validated(rates: Mapping[str, float] | None) -> dict[str, float]:
    rates = dict(rates or {})
    unknown = sorted(set(rates) - set(FAULT_KINDS))
    if unknown:
        raise ValueError(f"unknown fault kind(s) {unknown}; known: {', '.join(FAULT_KINDS)}")
    for kind, rate in rates.items():
        if not (isinstance(rate, int | float) and math.isfinite(rate) and 0 <= rate <= 1):
            raise ValueError(f"rate for {kind} must be a probability in [0, 1], not {rate!r}")
    if sum(rates.values()) > 1 + 1e-9:
        raise ValueError(f"fault rates sum to {sum(rates.values()):.6g}; at most one fault per request, so at most 1")
    return {kind: float(rates.get(kind, 0.0)) for kind in FAULT_KINDS}


class FaultProxy:
    """A loopback HTTP proxy that injects seeded network faults per request (see the module docstring).

    `counts` holds the faults carried out by kind; `requests` the requests read from clients; `decisions`
    the fault chosen for each request in order (None: none); `upstream_failures` the requests whose
    upstream could not be reached or did not answer; `connections` the client connections accepted."""

    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        seed: int,
        rates: Mapping[str, float] | None = None,
        max_delay_s: float = 1.5,
    ) -> None:
        if not (math.isfinite(max_delay_s) and max_delay_s >= 0):
            raise ValueError(f"max_delay_s must be a non-negative number of seconds, not {max_delay_s!r}")
        self._rates = _validated(rates)
        self._upstream = upstream
        self.max_delay_s = max_delay_s
        self.io_timeout_s = IO_TIMEOUT_S
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._port = 0
        self._accept_thread: threading.Thread | None = None
        self._threads: set[threading.Thread] = set()
        self._sockets: set[socket.socket] = set()
        self.counts: dict[str, int] = dict.fromkeys(FAULT_KINDS, 0)
        self.requests = 0
        self.upstream_failures = 0
        self.connections = 0
        self.decisions: list[str | None] = []

    # lifecycle

    def start(self) -> FaultProxy:
        """Listen on 127.0.0.1 on a free port and serve on daemon threads."""
        if self._listener is not None:
            raise RuntimeError("FaultProxy already started")
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(ACCEPT_POLL_S)
        self._listener = listener
        self._port = listener.getsockname()[1]
        self._accept_thread = threading.Thread(target=self._accept_loop, name=f"faultproxy-{self._port}", daemon=True)
        self._accept_thread.start()
        return self

    @property
    def port(self) -> int:
        if self._listener is None:
            raise RuntimeError("FaultProxy not started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Close the listener and every open connection, then wait briefly for the threads; idempotent."""
        with self._lock:
            self._stopping.set()
            sockets = list(self._sockets)
            threads = list(self._threads)
        for sock in sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv; the thread closes it
        deadline = time.monotonic() + STOP_JOIN_S
        if self._accept_thread is not None:
            self._accept_thread.join(max(0.0, deadline - time.monotonic()))
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._listener is not None:
            self._listener.close()

    def __enter__(self) -> FaultProxy:
        return self if self._listener is not None else self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # configuration

    def set_upstream(self, upstream: tuple[str, int]) -> None:
        """Send the following requests to another address, e.g. after a server restart on a new port."""
        with self._lock:
            self._upstream = upstream

    @property
    def rates(self) -> dict[str, float]:
        """The fault probabilities now in force (all zero inside `clean()`)."""
        with self._lock:
            return dict(self._rates)

    @contextmanager
    def clean(self) -> Iterator[None]:
        """No faults for the requests decided inside the block (the final clean sync); the rates come back after."""
        with self._lock:
            saved = self._rates
            self._rates = dict.fromkeys(FAULT_KINDS, 0.0)
        try:
            yield
        finally:
            with self._lock:
                self._rates = saved

    # serving

    def _accept_loop(self) -> None:
        assert self._listener is not None
        try:
            while not self._stopping.is_set():
                try:
                    client, _ = self._listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                with self._lock:
                    if self._stopping.is_set():
                        client.close()
                        return
                    self.connections += 1
                    self._sockets.add(client)
                    thread = threading.Thread(target=self._serve, args=(client,), name="faultproxy-conn", daemon=True)
                    self._threads.add(thread)
                thread.start()
        finally:
            self._listener.close()

    def _serve(self, client: socket.socket) -> None:
        """Answer the requests on one client connection until it closes, a fault closes it, or stop()."""
        try:
            client.settimeout(self.io_timeout_s)
            reader = _Reader(client)
            while not self._stopping.is_set():
                try:
                    request = _read_request(reader)
                except _BadRequest as exc:
                    message = str(exc).encode()
                    client.sendall(BAD_REQUEST % (len(message), message))
                    return
                if request is None or not self._forward(client, request):
                    return
        except (OSError, _ClientGone):
            return
        finally:
            with self._lock:
                self._sockets.discard(client)
                self._threads.discard(threading.current_thread())
            client.close()

    def _decide(self) -> tuple[str | None, float]:
        """The fault for the next request and a fraction in [0, 1) that sizes it; two draws every time."""
        with self._lock:
            self.requests += 1
            roll, fraction = self._rng.random(), self._rng.random()
            kind = None
            edge = 0.0
            for candidate in FAULT_KINDS:
                edge += self._rates[candidate]
                if roll < edge:
                    kind = candidate
                    break
            self.decisions.append(kind)
            return kind, fraction

    def _count(self, kind: str) -> None:
        with self._lock:
            self.counts[kind] += 1

    def _forward(self, client: socket.socket, request: _Request) -> bool:
        """Carry one request through (or not, per the fault); True if the client connection stays open."""
        kind, fraction = self._decide()
        if kind == "drop_before":
            self._count(kind)
            return False
        if kind == "delay":
            self._count(kind)
            if self._stopping.wait(fraction * self.max_delay_s):
                return False
        response = self._exchange(request.wire)
        if kind == "duplicate" and response:
            response = self._exchange(request.wire)
            if response:
                self._count(kind)
        if not response:
            with self._lock:
                self.upstream_failures += 1
            return False
        if kind == "drop_after":
            self._count(kind)
            return False
        if kind == "reset":
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST
            self._count(kind)
            return False
        if kind == "truncate":
            if len(response) > 1:
                client.sendall(response[: min(len(response) - 1, 1 + int(fraction * (len(response) - 1)))])
                self._count(kind)
            return False
        client.sendall(response)
        return _reusable(request, response)

    def _exchange(self, wire: bytes) -> bytes:
        """Send a request on a fresh upstream connection; the answer, or b"" if there was none."""
        with self._lock:
            upstream = self._upstream
        try:
            sock = socket.create_connection(upstream, timeout=CONNECT_TIMEOUT_S)
        except OSError:
            return b""
        with self._lock:
            self._sockets.add(sock)
        try:
            sock.settimeout(self.io_timeout_s)
            with suppress(OSError):  # the server may have answered early (e.g. 413) and closed: read what it said
                sock.sendall(wire)
            return _read_response(sock)
        finally:
            with self._lock:
                self._sockets.discard(sock)
            sock.close()
