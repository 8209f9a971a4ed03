"""Configuration read from the environment; TestConfig beside it for the test suite."""

from __future__ import annotations

import os
from pathlib import Path


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


class Config:
    # SQLite in the instance folder unless DATABASE_URL names another database (PostgreSQL in production).
    SQLALCHEMY_DATABASE_URI: str | None = os.environ.get("DATABASE_URL")
    # Signs session cookies; a random per-instance key is generated when unset (see create_app).
    SECRET_KEY: str | None = os.environ.get("FIELDSYNC_SECRET_KEY")
    # Requests larger than this (after gzip decoding too) are refused with 413.
    MAX_CONTENT_LENGTH = _int("FIELDSYNC_MAX_BODY_BYTES", 4 * 1024 * 1024)
    MAX_DECODED_BODY_BYTES = _int("FIELDSYNC_MAX_DECODED_BODY_BYTES", 16 * 1024 * 1024)
    # A pull page stops growing at this many bytes of JSON, or this many records.
    PULL_PAGE_BYTES = _int("FIELDSYNC_PULL_PAGE_BYTES", 512 * 1024)
    PULL_PAGE_RECORDS = _int("FIELDSYNC_PULL_PAGE_RECORDS", 2000)
    # How far ahead of the server a device stamp may be before it is clamped and flagged.
    MAX_CLOCK_SKEW_MS = _int("FIELDSYNC_MAX_CLOCK_SKEW_MS", 5 * 60 * 1000)
    # Change-log rows (tombstones included) are kept this long: longer than any supported offline period.
    CHANGE_RETENTION_DAYS = _int("FIELDSYNC_CHANGE_RETENTION_DAYS", 60)
    ENROLL_CODE_TTL_HOURS = _int("FIELDSYNC_ENROLL_CODE_TTL_HOURS", 72)
    # Enrolment attempts per client address per window (brute-forcing codes); 429 beyond.
    ENROLL_ATTEMPTS_PER_WINDOW = _int("FIELDSYNC_ENROLL_ATTEMPTS", 10)
    ENROLL_WINDOW_SECONDS = _int("FIELDSYNC_ENROLL_WINDOW_SECONDS", 600)
    # Proxies (load balancers) in front of the server that append X-Forwarded-For / X-Forwarded-Proto.
    # 0 trusts none. Behind one, set 1: the client address (enrolment limit, logs) is then the one the
    # balancer saw, not the balancer's own, and every client would otherwise share one limit.
    TRUSTED_PROXIES = _int("FIELDSYNC_TRUSTED_PROXIES", 0)
    # Hi/lo factors per meter class: {"residential": [0.5, 2.0], ...}; defaults in sync_protocol.readings.
    READING_FACTORS: dict[str, tuple[float, float]] | None = None
    SQLALCHEMY_ENGINE_OPTIONS: dict = {"pool_pre_ping": True}
    # Service-centre sessions: cookies only over HTTPS in production (FIELDSYNC_SECURE_COOKIES=1).
    SESSION_COOKIE_SECURE = os.environ.get("FIELDSYNC_SECURE_COOKIES", "0") == "1"
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_HTTPONLY = True
    PERMANENT_SESSION_LIFETIME = 12 * 3600
    # Sign-in attempts per window: per client address (guessing, and spraying many user names from one
    # address), and per user name whatever the address (one account guessed at from many addresses). The
    # second lets anyone hold an account's sign-in shut for a window by failing on purpose: the price of
    # not letting a botnet guess a password without limit; the window keeps such a lock-out short.
    LOGIN_ATTEMPTS_PER_WINDOW = _int("FIELDSYNC_LOGIN_ATTEMPTS", 20)
    LOGIN_ATTEMPTS_PER_USER_WINDOW = _int("FIELDSYNC_LOGIN_ATTEMPTS_PER_USER", 10)
    LOGIN_WINDOW_SECONDS = _int("FIELDSYNC_LOGIN_WINDOW_SECONDS", 600)
    WTF_CSRF_TIME_LIMIT = None  # tokens live as long as the session
    WTF_CSRF_CHECK_DEFAULT = False  # the pages' blueprint checks its own forms (server/web)
    BABEL_DEFAULT_LOCALE = "en"
    BABEL_TRANSLATION_DIRECTORIES = str(Path(__file__).parent / "translations")
    JSON_SORT_KEYS = False
    # Customer ABC analysis (docs/analysis.md). "count": DESIGN's rule, the first third of the customers by
    # count are A, then B until the cumulative volume reaches 95 %; "cumulative": the textbook rule, A until
    # 80 %, B until 95 %. Shares are exact decimals or fractions ("1/3", "0.95"). Pages and the staff API may
    # ask for other thresholds per request; these are the defaults.
    ABC_VARIANT = os.environ.get("FIELDSYNC_ABC_VARIANT", "count")
    ABC_A_COUNT_SHARE = os.environ.get("FIELDSYNC_ABC_A_COUNT_SHARE", "1/3")
    ABC_A_CUMULATIVE_SHARE = os.environ.get("FIELDSYNC_ABC_A_CUMULATIVE_SHARE", "0.80")
    ABC_B_CUMULATIVE_SHARE = os.environ.get("FIELDSYNC_ABC_B_CUMULATIVE_SHARE", "0.95")


class TestConfig(Config):
    TESTING = True
    SECRET_KEY = "test-secret-key"
    SQLALCHEMY_DATABASE_URI = None  # each test passes its own
