"""Errors of the handheld, each with a message a person in the field can act on."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class HandheldError(Exception):
    """Base class; `message` is shown to the user as it is."""

    code = "error"

    def __init__(self, message: str, fields: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = dict(fields or {})


class InvalidInput(HandheldError):
    code = "invalid_input"


class NotFound(HandheldError):
    code = "not_found"


class NotAllowed(HandheldError):
    code = "not_allowed"


class NotEnrolled(HandheldError):
    code = "not_enrolled"


class DatabaseTooNew(HandheldError, RuntimeError):
    """The local database was written by a newer app version: it is left untouched."""

    code = "database_too_new"


class NeedsConfirmation(HandheldError):
    """A value outside the expected range: enter it again (or pick a remark) to confirm."""

    code = "needs_confirmation"

    def __init__(self, message: str, band: Any) -> None:
        super().__init__(message)
        self.band = band


class SyncError(HandheldError):
    """Sync stopped; nothing recorded on the device was lost."""

    code = "sync_error"


class NetworkError(SyncError):
    code = "network"


class AuthError(SyncError):
    code = "reenrol"


class UpgradeRequired(SyncError):
    code = "upgrade_required"


class ServerRefused(SyncError):
    code = "server_refused"


class Cancelled(SyncError):
    code = "cancelled"
