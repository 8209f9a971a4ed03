"""FieldSync server: the sync API for handhelds and the service centre's API and pages.

`create_app(config)` builds an app (the Flask application-factory pattern): SQLite in the instance
folder unless DATABASE_URL names another database.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy.orm import Session

from .config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def _secret_key(app: Flask) -> str:
    """A per-instance random key kept in the instance folder, so sessions survive restarts."""
    path = Path(app.instance_path) / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def create_app(config: Mapping[str, Any] | None = None, instance_path: str | None = None) -> Flask:
    app = Flask(
        __name__,
        instance_relative_config=True,
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
    from .extensions import db, migrate
    from .health import bp as health_bp
    from .openapi import bp as openapi_bp
    from .services import changefeed
    from .sync import bp as sync_bp
    from .web import bp as web_bp

    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS))
    with app.app_context():
        configure_engine(db.engine)
    changefeed.install(Session)
    http.init_http(app)
    errors.register_error_handlers(app)
    for blueprint in (health_bp, auth_bp, sync_bp, openapi_bp, web_bp):
        app.register_blueprint(blueprint)
    cli.register(app)
    return app
