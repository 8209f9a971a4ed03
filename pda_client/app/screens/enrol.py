"""Enrolment: the server's address and the one-time code the office issued. A new user gets a data
folder of their own; 'enrol again' renews the identity of a user already here (their work stays)."""

from __future__ import annotations

import contextlib
from typing import Any

from kivy.properties import BooleanProperty, StringProperty

from pda_client.errors import HandheldError

from .. import labels
from ..i18n import tr
from ..main import default_server
from . import AppScreen

ENROL_ERRORS = {
    "network": labels.N_("Cannot reach the server. Check the address and the connection."),
    "reenrol": labels.N_("The server did not accept the code. Ask the office for a new one."),
    "invalid_input": labels.N_("The server address starts with https:// (or http:// on a test network)."),
    "already_enrolled": labels.N_("This user is already on the handheld: pick them in the user list."),
}


class EnrolScreen(AppScreen):
    again_user = StringProperty("")
    again_name = StringProperty("")
    message = StringProperty("")
    failed = BooleanProperty(False)
    busy = BooleanProperty(False)

    def refresh(self) -> None:
        if not self.ids.server.text:
            status = self.handheld.status() if self.handheld is not None else {}
            self.ids.server.text = status.get("server_url") or default_server()
        if not self.busy:
            self.message, self.failed = "", False

    def submit(self) -> None:
        server, code = self.ids.server.text.strip(), self.ids.code.text.strip()
        if not server or not code:
            self.message, self.failed = tr._("Enter the server address and the code from the office."), True
            return
        self.busy, self.failed = True, False
        self.message = tr._("Enrolling...")
        self.app.enrol(server, code, self._done, again_user=self.again_user or None)

    def _done(self, user: dict[str, Any] | None, error: Exception | None) -> None:
        self.busy = False
        if error is not None or user is None:
            code = getattr(error, "code", "")
            self.failed = True
            self.message = tr._(ENROL_ERRORS[code]) if code in ENROL_ERRORS else str(
                error.message if isinstance(error, HandheldError) else error
            )
            if self.again_user and self.app.handheld is None:
                with contextlib.suppress(HandheldError):  # reopen: the enrolment failed, the data is as it was
                    self.app.switch_user(self.again_user)
                self.app.show("enrol")  # and stay here, with the message
            return
        self.ids.code.text = ""
        self.app.switch_user(self.again_user or user["id"])
