"""The people who use one shared handheld: each enrolled user has a data folder of their own,
<data root>/<user id>/ (the core's handheld.db), so one crew member never sees or sends another's work.
Folders are named by the server's user id, which the enrolment answer carries (with the display name and
role); a new enrolment is made in a scratch folder and moved into place once the server said who it is.

Also the app's two settings (language, last user), in <data root>/app.json. No Kivy here."""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pda_client import Handheld
from pda_client.errors import HandheldError

SETTINGS_FILE = "app.json"
SCRATCH_PREFIX = ".enrolling-"
SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


class AlreadyEnrolled(HandheldError):
    code = "already_enrolled"


@dataclass(frozen=True)
class Account:
    user_id: str
    name: str
    role: str
    pending: int
    folder: Path
    problem: str = ""  # why this user's data cannot be opened


class Accounts:
    def __init__(self, root: Path, handheld_factory: Callable[[Path], Handheld] = Handheld) -> None:
        self.root = Path(root)
        self.open = handheld_factory

    def folder(self, user_id: str) -> Path:
        if not SAFE_ID.match(user_id):
            raise HandheldError(f"Unexpected user id from the server: {user_id!r}")
        return self.root / user_id

    def list(self) -> list[Account]:
        """Enrolled users on this handheld, by name."""
        accounts = []
        if not self.root.is_dir():
            return accounts
        for folder in sorted(self.root.iterdir()):
            if folder.name.startswith(".") or not (folder / "handheld.db").is_file():
                continue
            try:
                handheld = self.open(folder)
            except HandheldError as exc:  # e.g. written by a newer app version: listed, left untouched
                accounts.append(Account(folder.name, folder.name, "", 0, folder, problem=exc.message))
                continue
            try:
                status = handheld.status()
            finally:
                handheld.close()
            user = status["user"] or {}
            if status["enrolled"] or status["pending_changes"]:
                accounts.append(
                    Account(folder.name, user.get("name") or folder.name, user.get("role", ""),
                            status["pending_changes"], folder)
                )
        return sorted(accounts, key=lambda a: a.name.lower())

    def enrol_new(self, server_url: str, code: str, device_name: str) -> dict[str, Any]:
        """Enrol a user not yet on this handheld; returns the server's user (id, name, role)."""
        scratch = self.root / f"{SCRATCH_PREFIX}{uuid.uuid4().hex[:12]}"
        try:
            handheld = self.open(scratch)
            try:
                user = handheld.enroll(server_url, code, device_name)
            finally:
                handheld.close()
            target = self.folder(user["id"])
            if target.exists():
                raise AlreadyEnrolled(
                    f"{user['name']} is already on this handheld: pick them in the list "
                    "(or use 'Enrol again' there if the office revoked this handheld)."
                )
            scratch.rename(target)
            return user
        finally:
            if scratch.exists():
                shutil.rmtree(scratch, ignore_errors=True)

    def enrol_again(self, user_id: str, server_url: str, code: str, device_name: str) -> dict[str, Any]:
        """A new enrolment for a user already here, in their own folder: everything they recorded stays
        and is sent with the new identity (the core's enrol keeps the outbox)."""
        handheld = self.open(self.folder(user_id))
        try:
            return handheld.enroll(server_url, code, device_name)
        finally:
            handheld.close()

    # --- settings ------------------------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        try:
            return json.loads((self.root / SETTINGS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def save_settings(self, **values: Any) -> None:
        settings = {**self.settings(), **values}
        self.root.mkdir(parents=True, exist_ok=True)
        temporary = self.root / f"{SETTINGS_FILE}.tmp"
        temporary.write_text(json.dumps(settings, ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(temporary, self.root / SETTINGS_FILE)
