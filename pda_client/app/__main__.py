"""`python -m pda_client.app`: start the handheld app (data under the app's user data folder, or
$FIELDSYNC_APP_DATA)."""

import os

os.environ.setdefault("KIVY_NO_ARGS", "1")  # the app takes no command-line options; Kivy must not parse them

from . import configure_window

configure_window()

from .main import FieldSyncApp  # noqa: E402

FieldSyncApp().run()
