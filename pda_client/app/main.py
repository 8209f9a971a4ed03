"""The FieldSync handheld app: app-wide state as Kivy properties, navigation between lazily created
screens, and the background work (sync, reachability probe, enrolment) that must never run on the UI
thread. Screens call the client core (`self.handheld`, a `pda_client.Handheld`) and nothing below it;
every action the core performs is committed before it returns, so closing or killing the app loses
nothing.

Threads: sync, probe and enrolment each run on a daemon worker thread that touches only the core (which
is thread-safe); results come back to the UI thread with `Clock.schedule_once`.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import platform
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from kivy.app import App
from kivy.clock import Clock
from kivy.core.window import Window
from kivy.lang import Builder
from kivy.properties import BooleanProperty, NumericProperty, ObjectProperty, OptionProperty, StringProperty
from kivy.uix.screenmanager import NoTransition, ScreenManager

from pda_client import Handheld
from pda_client.core import AUTO_SYNC_S, PROBE_S
from pda_client.errors import HandheldError, NetworkError, NotFound

from . import labels, theme, widgets
from .accounts import Accounts
from .fonts import register_default_font
from .i18n import LANGUAGES, tr

log = logging.getLogger(__name__)



def default_server() -> str:
    """The address the enrol screen suggests: $FIELDSYNC_SERVER, else the demo server of `make run`."""
    return os.environ.get("FIELDSYNC_SERVER", "http://127.0.0.1:5000")


# name -> (module, class). A screen is imported and built the first time it is shown.
SCREENS: dict[str, tuple[str, str]] = {
    "users": ("pda_client.app.screens.users", "UsersScreen"),
    "enrol": ("pda_client.app.screens.enrol", "EnrolScreen"),
    "home": ("pda_client.app.screens.home", "HomeScreen"),
    "jobs": ("pda_client.app.screens.jobs", "JobListScreen"),
    "job": ("pda_client.app.screens.job", "JobScreen"),
    "route": ("pda_client.app.screens.route", "RouteScreen"),
    "reading": ("pda_client.app.screens.reading", "ReadingScreen"),
    "sync": ("pda_client.app.screens.sync", "SyncScreen"),
}


def kv_files() -> list[Path]:
    """The shared widget rules, then one kv file per screen, each next to its Python module."""
    files = [Path(widgets.__file__).with_suffix(".kv")]  # importing widgets registered its classes
    for module, _cls in SCREENS.values():
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin, module
        files.append(Path(spec.origin).with_suffix(".kv"))
    return files


class FieldSyncApp(App):
    title = "FieldSync"

    connection = OptionProperty("offline", options=["offline", "online", "syncing"])
    reachable = BooleanProperty(False)  # the last probe or sync reached the server
    syncing = BooleanProperty(False)
    pending = NumericProperty(0)  # changes in the outbox
    last_sync = StringProperty("")  # in words: "today 10:42", "never"
    last_error = StringProperty("")  # in words; "" when the last sync worked
    language = OptionProperty("en", options=list(LANGUAGES))
    user_id = StringProperty("")
    user_name = StringProperty("")
    user_role = StringProperty("")
    sync_fraction = NumericProperty(0.0)  # 0..1 for the progress bar
    sync_stage = StringProperty("")  # what the sync is doing, in words
    sync_result = StringProperty("")  # what the last sync did, in words
    handheld = ObjectProperty(None, allownone=True)
    can_go_back = BooleanProperty(False)
    cjk_font = StringProperty("")  # the font file registered as default ("" when none was found)

    def __init__(
        self,
        data_root: str | Path | None = None,
        *,
        auto_sync_s: float | None = AUTO_SYNC_S,
        probe_s: float | None = PROBE_S,
        sync_on_reconnect: bool = True,
        transport_factory: Callable[..., Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        root = data_root or os.environ.get("FIELDSYNC_APP_DATA") or self.user_data_dir
        self.transport_factory = transport_factory
        self.accounts = Accounts(Path(root), self.open_handheld)
        self.auto_sync_s = auto_sync_s
        self.probe_s = probe_s  # None: no automatic probes (tests call probe() themselves)
        self.sync_on_reconnect = sync_on_reconnect
        self.last_report: Any = None
        self._stage: tuple[str, int, int] | None = None  # the last progress report (stage, done, total)
        self._outcome: tuple[Any, Exception | None] = (None, None)
        self.device_name = f"{platform.node() or 'handheld'}"[:60]
        self._history: list[str] = []
        self._cancel = threading.Event()
        self._workers: list[threading.Thread] = []
        self._progress: tuple[str, int, int] | None = None
        self._progress_lock = threading.Lock()
        self._probing = False
        self._timers: list[Any] = []
        self._refresh_status = Clock.create_trigger(self.refresh_status)

    def open_handheld(self, folder: Path) -> Handheld:
        """The core over one user's data folder (tests pass a transport with short retries)."""
        if self.transport_factory is None:
            return Handheld(folder)
        return Handheld(folder, transport_factory=self.transport_factory)

    # --- building ------------------------------------------------------------------------------------

    def build(self) -> ScreenManager:
        self.cjk_font = str(register_default_font() or "")
        for path in kv_files():
            Builder.unload_file(str(path))
            Builder.load_file(str(path))
        Window.clearcolor = theme.BG
        Window.bind(on_keyboard=self._on_keyboard)
        settings = self.accounts.settings()
        if settings.get("language") in LANGUAGES:
            self.language = settings["language"]
        tr.language = self.language
        self.root = ScreenManager(transition=NoTransition())
        if self.auto_sync_s:
            self._timers.append(Clock.schedule_interval(lambda _dt: self.sync_now("auto"), self.auto_sync_s))
        if self.probe_s:
            self._timers.append(Clock.schedule_interval(lambda _dt: self.probe(), self.probe_s))
        accounts = self.accounts.list()
        last = settings.get("user")
        if any(a.user_id == last and not a.problem for a in accounts):
            self.switch_user(last)
        elif accounts:
            self.show("users", reset=True)
        else:
            self.show("enrol", reset=True)
        return self.root

    def on_pause(self) -> bool:
        return True  # Android: keep running in the background (everything is committed anyway)

    def on_resume(self) -> None:
        self.probe()

    def on_stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._cancel.set()
        for worker in self._workers:  # a sync stops at its next step; none of it needs the wait
            worker.join(timeout=3)
        if self.handheld is not None and not any(w.is_alive() for w in self._workers):
            self.handheld.close()
        Window.unbind(on_keyboard=self._on_keyboard)

    # --- navigation -------------------------------------------------------------------------------------

    def screen(self, name: str) -> Any:
        """The screen called `name`, built on first use."""
        if not self.root.has_screen(name):
            module, cls = SCREENS[name]
            self.root.add_widget(getattr(importlib.import_module(module), cls)(name=name))
        return self.root.get_screen(name)

    def show(self, name: str, reset: bool = False, **params: Any) -> Any:
        screen = self.screen(name)
        screen.open(**params)
        current = self.root.current if self.root.screen_names and self.root.current_screen else None
        if reset:
            self._history = []
        elif current and current != name:
            if name in self._history:  # going back to a screen already on the way: no loops
                self._history = self._history[: self._history.index(name)]
            else:
                self._history.append(current)
        self.can_go_back = bool(self._history)
        if current == name:
            screen.refresh()
        else:
            self.root.current = name
        return screen

    def back(self) -> bool:
        if not self._history:
            return False
        name = self._history.pop()
        self.can_go_back = bool(self._history)
        self.screen(name)
        self.root.current = name
        return True

    def _on_keyboard(self, _window: Any, key: int, *_args: Any) -> bool:
        if key == 27:  # Android's back button (Escape on a desktop)
            return self.back()
        return False

    # --- app-wide state ---------------------------------------------------------------------------------

    def on_language(self, _instance: Any, language: str) -> None:
        tr.language = language  # re-labels every kv text bound to tr._(...)
        self.accounts.save_settings(language=language)
        self.refresh_status()
        self._describe_sync()
        self.refresh_screen()  # texts built in Python; other screens rebuild on entry

    def toggle_language(self) -> None:
        self.language = "zh_CN" if self.language == "en" else "en"

    def on_reachable(self, *_args: Any) -> None:
        self._update_connection()

    def on_syncing(self, *_args: Any) -> None:
        self._update_connection()

    def on_handheld(self, _instance: Any, handheld: Handheld | None) -> None:
        self.reachable = False  # unknown until the probe or a sync says otherwise
        self.refresh_status()
        if handheld is not None and self.probe_s:
            self.probe()

    def _update_connection(self) -> None:
        self.connection = "syncing" if self.syncing else ("online" if self.reachable else "offline")

    def refresh_status(self, *_args: Any) -> dict[str, Any] | None:
        """Pending count, last sync and last error from the core."""
        if self.handheld is None:
            self.pending, self.last_sync, self.last_error = 0, "", ""
            return None
        status = self.handheld.status()
        user = status["user"] or {}
        self.user_name, self.user_role = user.get("name", ""), user.get("role", "")
        self.pending = status["pending_changes"]
        self.last_sync = labels.when(status["last_success_at"])
        error = status["last_error"]
        self.last_error = labels.error(error.get("code"), error.get("message")) if error else ""
        return status

    def changed(self) -> None:
        """A screen recorded something: update the pending count (batched to once per frame)."""
        self._refresh_status()

    # --- users ---------------------------------------------------------------------------------------------

    def switch_user(self, user_id: str) -> bool:
        """Open `user_id`'s own data folder and go to their home screen (not while a sync runs).
        Raises HandheldError when their data cannot be opened (the previous user stays open)."""
        if self.syncing:
            return False
        handheld = self.open_handheld(self.accounts.folder(user_id))
        if self.handheld is not None:
            self.handheld.close()
        self.user_id = user_id
        self.handheld = handheld
        self.accounts.save_settings(user=user_id)
        self.last_report, self._stage, self._outcome = None, None, (None, None)
        self._describe_sync()
        self.show("home", reset=True)
        return True

    def enrol(
        self,
        server_url: str,
        code: str,
        on_done: Callable[[dict[str, Any] | None, Exception | None], None],
        again_user: str | None = None,
    ) -> None:
        """Enrol (a new user, or `again_user` in place) on a worker thread; `on_done(user, error)` on the
        UI thread."""
        if again_user and again_user == self.user_id and self.handheld is not None:
            if self.syncing:
                on_done(None, HandheldError(tr._("Wait for the sync to finish.")))
                return
            self.handheld.close()  # reopened below, with the new identity
            self.handheld = None

        def work() -> tuple[dict[str, Any] | None, Exception | None]:
            if again_user:
                return self.accounts.enrol_again(again_user, server_url, code, self.device_name), None
            return self.accounts.enrol_new(server_url, code, self.device_name), None

        self._in_background(work, on_done)

    def _in_background(self, work: Callable[[], tuple[Any, Any]], on_done: Callable[[Any, Any], None]) -> None:
        def run() -> None:
            try:
                result = work()
            except HandheldError as exc:
                result = (None, exc)
            except Exception as exc:  # a bug: report it on screen rather than leave a spinner forever
                log.exception("background work failed")
                result = (None, exc)
            Clock.schedule_once(lambda _dt: on_done(*result))

        self._start_worker(run, "fieldsync-enrol")

    def _start_worker(self, target: Callable[[], None], name: str) -> None:
        self._workers = [w for w in self._workers if w.is_alive()]
        worker = threading.Thread(target=target, name=name, daemon=True)
        self._workers.append(worker)
        worker.start()

    # --- sync ------------------------------------------------------------------------------------------------

    def sync_now(self, reason: str = "manual") -> bool:
        """Start a sync on a worker thread; False when one is running or nobody is enrolled."""
        handheld = self.handheld
        if handheld is None or self.syncing or not handheld.enrolled:
            return False
        log.info("sync (%s)", reason)
        self.syncing = True
        self.sync_fraction = 0.0
        self._stage, self._outcome = None, (None, None)
        self._describe_sync()
        self._cancel = threading.Event()
        self._start_worker(partial(self._sync_worker, handheld, self._cancel), "fieldsync-sync")
        return True

    def cancel_sync(self) -> None:
        self._cancel.set()

    def _sync_worker(self, handheld: Handheld, cancel: threading.Event) -> None:
        report: Any = None
        error: Exception | None = None
        try:
            report = handheld.sync(progress=self._progress_from_worker, cancel=cancel)
        except HandheldError as exc:
            error = exc
        except Exception as exc:  # a bug: report it rather than stay "syncing" for ever
            log.exception("sync failed")
            error = exc
        Clock.schedule_once(lambda _dt: self._sync_finished(handheld, report, error))

    def _progress_from_worker(self, stage: str, done: int, total: int) -> None:
        with self._progress_lock:
            first = self._progress is None
            self._progress = (stage, done, total)
        if first:  # one hand-over per frame however fast the pages come
            Clock.schedule_once(self._show_progress)

    def _show_progress(self, *_args: Any) -> None:
        with self._progress_lock:
            progress, self._progress = self._progress, None
        if progress is None or not self.syncing:
            return
        self._stage = progress
        stage, done, total = progress
        if stage == "push":
            fraction = 0.1 + 0.4 * (done / total if total else 1)
        elif stage == "pull":
            fraction = 0.5 + 0.45 * (1 - 1 / (1 + done / 200))  # total unknown: approach the end
        else:
            fraction = {"hello": 0.05, "done": 1.0}.get(stage, self.sync_fraction)
        self.sync_fraction = max(self.sync_fraction, fraction)
        self._describe_sync()

    def _describe_sync(self) -> None:
        """The sync's stage and outcome in words, in the current language."""
        stage, done, total = self._stage or ("", 0, 0)
        words = tr._(labels.STAGES[stage]) if stage in labels.STAGES else stage
        if stage == "push":
            self.sync_stage = f"{words}: {done}/{total}" if total else tr._("Nothing to send")
        elif stage == "pull":
            self.sync_stage = tr._("Receiving updates: {count} records").format(count=done)
        elif stage == "stopped":
            self.sync_stage = tr._("Stopped")
        else:
            self.sync_stage = words or (tr._("Starting") if self.syncing else "")
        report, error = self._outcome
        if report is not None:
            words = tr._("Changes sent: {pushed} ({applied} applied, {conflicts} conflicts, {rejected} refused).")
            self.sync_result = (words + " " + tr._("Updates received: {pulled}.")).format(
                pushed=report.pushed, applied=report.applied, conflicts=report.conflicts,
                rejected=report.rejected, pulled=report.pulled,
            )
        elif error is not None:
            self.sync_result = labels.error(getattr(error, "code", None), getattr(error, "message", str(error)))
        else:
            self.sync_result = ""

    def _sync_finished(self, handheld: Handheld, report: Any, error: Exception | None) -> None:
        self._show_progress()
        self.syncing = False
        if handheld is not self.handheld:
            return
        self.last_report = report
        self._outcome = (report, error)
        if report is not None:
            self.reachable = True
            self.sync_fraction = 1.0
            self._stage = ("done", 1, 1)
        else:
            if isinstance(error, NetworkError):
                self.reachable = False
            self._stage = ("stopped", 0, 0)
        self._describe_sync()
        self.refresh_status()
        self.refresh_screen()

    def refresh_screen(self) -> None:
        """Rebuild the current screen; if what it showed has left this handheld (a job the office gave to
        someone else, a route reassigned), go home instead."""
        screen = self.root.current_screen if self.root is not None else None
        if screen is None:
            return
        try:
            screen.refresh()
        except NotFound:
            self.show("home", reset=True)

    # --- reachability -------------------------------------------------------------------------------------------

    def probe(self) -> None:
        """Ask the server's health endpoint on a worker thread; a sync starts when it answers again."""
        handheld = self.handheld
        if handheld is None or self._probing or self.syncing or not handheld.enrolled:
            return
        self._probing = True

        def run() -> None:
            try:
                reachable = handheld.server_reachable()
            except Exception:  # the user switched and this handheld was closed under the probe
                log.info("probe abandoned", exc_info=True)
                reachable = False
            Clock.schedule_once(lambda _dt: self._probe_done(handheld, reachable))

        self._start_worker(run, "fieldsync-probe")

    def _probe_done(self, handheld: Handheld, reachable: bool) -> None:
        self._probing = False
        if handheld is not self.handheld or self.syncing:
            return
        came_back = reachable and not self.reachable
        self.reachable = reachable
        if came_back and self.sync_on_reconnect:
            self.sync_now("server reachable")


def run() -> None:
    FieldSyncApp().run()
