"""HTTP to the server (requests): JSON with gzip both ways, timeouts, retries with exponential backoff
and jitter on network errors, 5xx and 429. Protocol errors come back as HandheldErrors with the server's
message; nothing here touches the local store."""

from __future__ import annotations

import gzip
import json
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
import requests

from sync_protocol import PROTOCOL_HEADER, PROTOCOL_VERSION

from .errors import AuthError, Cancelled, HandheldError, NetworkError, ServerRefused, UpgradeRequired

GZIP_ABOVE = 1024
RETRY_STATUSES = {429, 500, 502, 503, 504}


class ResyncRequired(HandheldError):
    code = "resync_required"


class PayloadTooLarge(HandheldError):
    code = "payload_too_large"


class Transport:
    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        attempts: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        timeout: tuple[float, float] = (5.0, 60.0),
        sleep: Callable[[float], None] = time.sleep,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout = timeout
        self.sleep = sleep
        self.session = session or requests.Session()
        self.protocol = PROTOCOL_VERSION
        self.bytes_sent = 0
        self.bytes_received = 0

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> dict[str, Any]:
        """Send one request, retrying transient failures; returns the JSON body or raises HandheldError."""
        headers = {
            "Accept": "application/json",
            "Accept-Encoding": "gzip",
            PROTOCOL_HEADER: str(self.protocol),
        }
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
            if len(data) > GZIP_ABOVE:
                data = gzip.compress(data, compresslevel=6)
                headers["Content-Encoding"] = "gzip"
        url = self.base_url + path
        last_error = "no attempt"
        for attempt in range(1, self.attempts + 1):
            if cancelled():
                raise Cancelled("Sync cancelled; nothing was lost.")
            try:
                response = self.session.request(
                    method, url, data=data, params=params, headers=headers, timeout=self.timeout
                )
            except requests.RequestException as exc:
                last_error = f"cannot reach the server ({type(exc).__name__})"
            else:
                self.bytes_sent += len(data or b"")
                self.bytes_received += len(response.content)
                body = _json_body(response)  # parsed once: a pull page is half a megabyte
                if response.ok and not isinstance(body, dict):
                    # a link that dies inside the headers leaves "200" and nothing else: an answer cut off,
                    # not an answer (every request is safe to repeat: pushes are idempotent by change id)
                    last_error = "the server's answer was cut off"
                elif response.status_code not in RETRY_STATUSES:
                    return self._answer(response, body)
                else:
                    last_error = f"the server answered {response.status_code}"
                retry_after = response.headers.get("Retry-After")
                if retry_after and retry_after.isdigit() and attempt < self.attempts:
                    self.sleep(min(float(retry_after), self.max_backoff_s))
                    continue
            if attempt < self.attempts:
                delay = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
                self.sleep(random.uniform(0, delay))  # full jitter: a fleet does not retry in step
        raise NetworkError(f"Sync failed: {last_error}. Your work is kept on the handheld; try again later.")

    @staticmethod
    def _answer(response: requests.Response, body: Any) -> dict[str, Any]:
        if response.ok:
            return body  # a JSON object (request() checked)
        error = body.get("error") if isinstance(body, dict) else None
        code = (error or {}).get("code", "")
        message = (error or {}).get("message") or f"The server answered {response.status_code}."
        fields = (error or {}).get("fields") or {}
        if code == "invalid_enrollment_code":
            raise AuthError(f"{message} Ask the office for a new code.", fields)
        if response.status_code == 401:
            raise AuthError(f"{message} Enrol this handheld again (ask the office for a new code).", fields)
        if response.status_code == 426 or code == "upgrade_required":
            raise UpgradeRequired(message, fields)
        if code == "resync_required":
            raise ResyncRequired(message, fields)
        if response.status_code == 413:
            raise PayloadTooLarge(message, fields)
        raise ServerRefused(f"{message} ({code or response.status_code})", fields)


def _json_body(response: requests.Response) -> Any:
    """The body as JSON, or None when it is not strict JSON (RFC 8259, as the protocol says). msgspec
    parses a pull page several times faster than the json module."""
    try:
        return msgspec.json.decode(response.content)
    except ValueError:  # msgspec's DecodeError and ValidationError (a number out of range) are ValueErrors
        return None
