"""The WSGI entry point for production servers: gunicorn serves `server.wsgi:app`
(`gunicorn -c server/gunicorn.conf.py`, see docs/operations.md). Configuration comes from the
environment (server/config.py); each worker process builds its own app."""

from . import create_app

app = create_app()
