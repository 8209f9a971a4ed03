"""Scenarios that need an interpreter of their own, run by the tests as
`python -m tests.ui.in_own_process SCENARIO DATA_ROOT [ARG]`:

- `big WIDTHxHEIGHT`: the app in a window of that size (Kivy fixes the window's size when it creates it,
  once per process; KIVY_METRICS_DENSITY may scale dp as on a real phone), touring the reader's screens
  with the touch-target checks of test_field_ready and saving screenshots;
- `kill DIGITS`: type a reading on the keypad, save it, and die by SIGKILL: no on_stop, no close.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

from pda_client.app import configure_window
from tests.ui import conftest


def main(scenario: str, data_root: Path, argument: str) -> None:
    if scenario == "big":
        width, height = (int(n) for n in argument.split("x"))
        configure_window((width, height))
    from kivy.core.window import Window

    from tests.ui.driver import start_app

    ui = start_app(data_root)
    if scenario == "big":
        from tests.ui.test_field_ready import tour_reader

        assert tuple(Window.size) == (width, height), Window.size
        name = f"{argument}-density-{os.environ.get('KIVY_METRICS_DENSITY', '1')}"
        ui.screenshot(f"home-{name}")
        print("checked", tour_reader(ui, name), flush=True)
        ui.stop()
    elif scenario == "kill":
        ui.tap("Read next meter")
        ui.keypad(argument)
        ui.tap("Save")
        print("saved", ui.app.pending, flush=True)
        shutil.rmtree(conftest._KIVY_HOME, ignore_errors=True)  # atexit will not run
        os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), sys.argv[3])
