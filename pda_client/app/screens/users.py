"""Who is using this handheld: the enrolled users (each with their own data), switch between them, enrol
another one, or enrol one again after the office revoked this handheld."""

from __future__ import annotations

from typing import Any

from kivy.properties import StringProperty
from kivy.uix.boxlayout import BoxLayout

from pda_client.errors import HandheldError

from .. import labels
from ..i18n import tr
from . import AppScreen


class UserRow(BoxLayout):
    user_id = StringProperty("")
    name = StringProperty("")
    details = StringProperty("")


class UsersScreen(AppScreen):
    message = StringProperty("")

    def refresh(self) -> None:
        box = self.ids.users
        box.clear_widgets()
        for account in self.app.accounts.list():
            if account.problem:
                box.add_widget(UserRow(user_id=account.user_id, name=account.name, details=account.problem))
                continue
            details = labels.role(account.role)
            if account.pending:
                details += " · " + tr._("{count} changes not sent").format(count=account.pending)
            if account.user_id == self.app.user_id:
                details += " · " + tr._("using now")
            box.add_widget(UserRow(user_id=account.user_id, name=account.name, details=details))
        self.message = "" if box.children else tr._("Nobody is enrolled on this handheld yet.")

    def choose(self, user_id: str) -> None:
        try:
            switched = self.app.switch_user(user_id)
        except HandheldError as exc:
            self.message = exc.message
            return
        if not switched:
            self.message = tr._("Wait for the sync to finish.")

    def enrol_again(self, row: Any) -> None:
        self.app.show("enrol", again_user=row.user_id, again_name=row.name)

    def add_user(self) -> None:
        self.app.show("enrol", again_user="", again_name="")
