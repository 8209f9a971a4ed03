"""FieldSync server: the sync API for handhelds and the service centre's API and pages.

`create_app(config)` builds an app (the Flask application-factory pattern): SQLite in the instance
folder unless DATABASE_URL names another database.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy.orm import Session
from werkzeug.middleware.proxy_fix import ProxyFix

from .config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def _secret_key(app: Flask) -> str:
    """A per-instance random key kept in the instance folder, so sessions survive restarts.

    Created atomically and private from the start: gunicorn workers booting together on a fresh
    instance all end up with the one key that was linked into place first."""
    path = Path(app.instance_path) / "secret_key"
    if not path.exists():
        fd, temp = tempfile.mkstemp(dir=app.instance_path, prefix=".secret_key.")  # mode 0600
        try:
            with os.fdopen(fd, "w") as file:
                file.write(secrets.token_hex(32))
            os.link(temp, path)  # never replaces a key another process created meanwhile
        except FileExistsError:
            pass
        finally:
            os.unlink(temp)
    return path.read_text().strip()


def create_app(config: Mapping[str, Any] | None = None, instance_path: str | None = None) -> Flask:
    app = Flask(
        __name__,
        instance_relative_config=True,
        static_folder=None,  # the pages' blueprint serves /static
        instance_path=instance_path or os.environ.get("FIELDSYNC_INSTANCE_PATH") or None,
    )
    app.config.from_object(Config)
    if config:
        app.config.from_mapping(config)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    if not app.config.get("SQLALCHEMY_DATABASE_URI"):
        app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{Path(app.instance_path) / 'fieldsync.db'}"
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _secret_key(app)

    from . import cli, errors, http
    from .auth import bp as auth_bp
    from .database import configure_engine
    from .extensions import babel, csrf, db, login_manager, migrate
    from .health import bp as health_bp
    from .openapi import bp as openapi_bp
    from .services import changefeed
    from .staff import bp as staff_bp
    from .sync import bp as sync_bp
    from .web import bp as web_bp
    from .web.auth import select_locale

    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS))
    with app.app_context():
        configure_engine(db.engine)
    changefeed.install(Session)
    login_manager.init_app(app)
    login_manager.login_view = "web.login"
    login_manager.session_protection = "strong"
    csrf.init_app(app)  # checked by the pages' blueprint only: the APIs take bearer tokens, not cookies
    babel.init_app(app, locale_selector=select_locale)
    http.init_http(app)
    errors.register_error_handlers(app)
    for blueprint in (health_bp, auth_bp, sync_bp, openapi_bp, staff_bp, web_bp):
        app.register_blueprint(blueprint)
    cli.register(app)
    if app.config["TRUSTED_PROXIES"]:
        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
    return app
