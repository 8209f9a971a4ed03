"""The real app, rendering through a real GL context with no screen: Kivy's bundled SDL2 with its
offscreen video driver over Mesa (llvmpipe), so screenshots are what a handheld would show.

Kivy reads its environment once, at its first import: everything below is set before any module of
this package imports Kivy. One window serves the whole session (480 x 800, portrait); each test builds
the app (`App._run_prepare`), drives it with real touches and typed characters, and stops it.

Servers: one real gunicorn server (demo data) for the session, with a meter reader and a lineman
enrolled and synced once through the core; tests start the app over copies of those data folders.
Tests that need a server of their own (the full flow, reconnection) start one."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

_KIVY_HOME = tempfile.mkdtemp(prefix="fieldsync-kivy-home-")
atexit.register(shutil.rmtree, _KIVY_HOME, ignore_errors=True)
os.environ.update(
    KIVY_NO_ARGS="1",  # else Kivy parses pytest's command line
    KIVY_NO_CONSOLELOG="1",
    KIVY_NO_FILELOG="1",
    KIVY_LOG_MODE="PYTHON",  # leave the root logger (and every other suite's logging) alone
    KIVY_HOME=_KIVY_HOME,  # no ~/.kivy config from the developer's machine
    SDL_VIDEODRIVER=os.environ.get("FIELDSYNC_UI_VIDEODRIVER", "offscreen"),
)

import datetime as dt  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from pda_client import Handheld  # noqa: E402
from pda_client.app import configure_window  # noqa: E402
from pda_client.transport import Transport  # noqa: E402
from tests.e2e.conftest import LiveServer, start_server  # noqa: E402

configure_window()
from kivy.config import Config  # noqa: E402

Config.set("graphics", "maxfps", "0")  # frames as fast as the machine draws them: no 60 fps sleeps

FAST_RETRIES = functools.partial(Transport, attempts=2, backoff_s=0.01, max_backoff_s=0.05)


@dataclass(frozen=True)
class Template:
    """An enrolled, synced handheld data folder to copy into a test's data root."""

    folder: Path
    user_id: str
    name: str


def server_rows(live: LiveServer, sql: str, **params: object) -> list[dict]:
    engine = sa.create_engine(live.database_url)
    try:
        with engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(sa.text(sql), params)]
    finally:
        engine.dispose()


@contextmanager
def service_centre(live: LiveServer, tmp_path: Path) -> Iterator[None]:
    """The office acting on the server's database through the server's own services (as its staff
    pages will); committed at the end."""
    from server import create_app
    from server.extensions import db

    app = create_app({"SQLALCHEMY_DATABASE_URI": live.database_url}, instance_path=str(tmp_path / "office"))
    with app.app_context():
        try:
            yield
            db.session.commit()
        finally:
            db.session.remove()
            db.engine.dispose()


def user_id(username: str) -> str:
    from server.extensions import db
    from server.models import User

    return db.session.execute(sa.select(User.id).where(User.username == username)).scalar_one()


PREMISES = {  # which demo premise a test job is for
    "hazard": "p.hazards NOT IN ('[]', '') ORDER BY c.vip DESC, p.id",
    "safety": "c.segment = 'safety' ORDER BY p.id",
    "vip": "c.vip = 1 AND c.segment <> 'safety' AND p.hazards IN ('[]', '') ORDER BY p.id",
    "standard": "c.vip = 0 AND c.segment = 'standard' AND p.hazards IN ('[]', '') ORDER BY p.id",
}


def new_job(
    live: LiveServer, tmp_path: Path, username: str, summary: str, *, premise: str = "standard", priority: int = 2
) -> str:
    """A job created and assigned by the office, at a demo premise of the kind asked for (PREMISES)."""
    from server.extensions import db
    from server.services import office

    with service_centre(live, tmp_path):
        premise_id, customer_id = db.session.execute(
            sa.text(
                "SELECT p.id, p.customer_id FROM premises p JOIN customers c ON c.id = p.customer_id "
                f"WHERE {PREMISES[premise]} LIMIT 1"
            )
        ).one()
        job = office.create_job(
            customer_id=customer_id,
            premise_id=premise_id,
            job_type="line_repair",
            summary=summary,
            priority=priority,
            assigned_to=user_id(username),
            scheduled_start=dt.datetime.now(dt.UTC),
        )
        return job.id


def enrolled_template(live: LiveServer, folder: Path, username: str) -> Template:
    handheld = Handheld(folder, transport_factory=FAST_RETRIES)
    try:
        user = handheld.enroll(live.url, live.flask("enroll-code", username).strip(), f"ui-{username}")
        handheld.sync()
    finally:
        handheld.close()
    return Template(folder, user["id"], user["name"])


def install(template: Template, data_root: Path, *, language: str = "en") -> Path:
    """Put a copy of the template's data where the app keeps that user's data; make them the last user."""
    target = data_root / template.user_id
    shutil.copytree(template.folder, target)
    (data_root / "app.json").write_text(json.dumps({"user": template.user_id, "language": language}))
    return target


@pytest.fixture(scope="session")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with start_server(tmp_path_factory.mktemp("ui-server"), "sqlite") as live:
        yield live


@pytest.fixture(scope="session")
def lineman_jobs(ui_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Jobs the office gave lineman1 besides the demo's: one per kind of premise, most urgent first."""
    office = tmp_path_factory.mktemp("office")
    return {
        "hazard": new_job(ui_server, office, "lineman1", "Pole fire, line down", premise="hazard", priority=1),
        "safety": new_job(ui_server, office, "lineman1", "Supply alarm at the hospital", premise="safety"),
        "vip": new_job(ui_server, office, "lineman1", "Planned-outage notice", premise="vip", priority=3),
        "standard": new_job(ui_server, office, "lineman1", "Voltage flicker complaint", priority=4),
    }


@pytest.fixture(scope="session")
def hazard_job(lineman_jobs: dict[str, str]) -> str:
    return lineman_jobs["hazard"]


@pytest.fixture(scope="session")
def reader(ui_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Template:
    return enrolled_template(ui_server, tmp_path_factory.mktemp("reader1"), "reader1")


@pytest.fixture(scope="session")
def lineman(ui_server: LiveServer, lineman_jobs: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Template:
    return enrolled_template(ui_server, tmp_path_factory.mktemp("lineman1"), "lineman1")


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "app-data"
    root.mkdir()
    return root


@pytest.fixture
def run_app():
    """Start the app (`run_app(data_root, **options)`); it is stopped after the test."""
    from tests.ui.driver import Driver, start_app

    drivers: list[Driver] = []

    def start(data_root: Path, **options: object) -> Driver:
        driver = start_app(data_root, **options)
        drivers.append(driver)
        return driver

    yield start
    for driver in drivers:
        driver.stop()
