# ruff: noqa: N999 - the file name is gunicorn's convention, not a module to import
"""gunicorn settings for production: `gunicorn -c server/gunicorn.conf.py` from the project root.

Every worker builds its own app (preload_app = False), so no database connection, pool or clock is
shared across a fork; the processes keep no state between requests, so more workers, or more hosts
behind a load balancer, need no code change. Environment variables (docs/operations.md):

FIELDSYNC_BIND        address(es) to listen on, comma-separated (default 127.0.0.1:8000)
FIELDSYNC_WORKERS     worker processes (default 2 x CPU cores + 1)
FIELDSYNC_THREADS     threads per worker (default 4 on PostgreSQL, 1 on SQLite; more than 1 selects gthread workers)
FIELDSYNC_TIMEOUT     seconds a request may run before its worker is restarted (default 60)
FIELDSYNC_MAX_REQUESTS  requests a worker serves before it is replaced (default 2000, 0 = never)
FIELDSYNC_ACCESS_LOG  access log file, "-" for stdout (default), "" for none
FIELDSYNC_LOG_LEVEL   error log level (default info)
FIELDSYNC_FORWARDED_ALLOW_IPS  proxies trusted to set X-Forwarded-Proto (default 127.0.0.1,::1)
FIELDSYNC_PIDFILE     write the master's pid here (for `kill -HUP`, a graceful reload)
"""

import multiprocessing
import os


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


wsgi_app = "server.wsgi:app"
bind = [address.strip() for address in os.environ.get("FIELDSYNC_BIND", "127.0.0.1:8000").split(",")]
workers = _int("FIELDSYNC_WORKERS", multiprocessing.cpu_count() * 2 + 1)
# On PostgreSQL a worker's threads overlap their database round trips: with 200 handhelds syncing at once
# (bench fleet), gthread workers sustained 1.5-2.4x the syncs/s of single-threaded ones in 6 of 8 runs
# (8 threads no more than 4); they cost CPU (the GIL), so an idle host with a local database may do better
# with 1. SQLite takes one writer at a time: threads there mostly queue on its write lock, nearer its
# busy timeout.
# docs/operations.md §10.
threads = _int("FIELDSYNC_THREADS", 4 if os.environ.get("DATABASE_URL", "").startswith("postgresql") else 1)
preload_app = False

# A push of a full batch on a slow disk, or a pull page of a large route, takes well under this.
timeout = _int("FIELDSYNC_TIMEOUT", 60)
graceful_timeout = 30  # on SIGTERM, requests in flight get this long to finish
keepalive = 5

# Replace workers now and then (bounded memory growth); the jitter keeps them from restarting together.
max_requests = _int("FIELDSYNC_MAX_REQUESTS", 2000)
max_requests_jitter = max(max_requests // 10, 1) if max_requests else 0

accesslog = os.environ.get("FIELDSYNC_ACCESS_LOG", "-") or None
# %(M)s: request duration in ms. Authorization headers and bodies are never logged.
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(a)s" %(M)sms'
errorlog = "-"
loglevel = os.environ.get("FIELDSYNC_LOG_LEVEL", "info")
forwarded_allow_ips = os.environ.get("FIELDSYNC_FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
pidfile = os.environ.get("FIELDSYNC_PIDFILE") or None

# Worker heartbeat files in memory, not on a disk that may stall (containers mount /tmp on overlayfs).
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# gunicorn 24+ opens a control socket at one fixed path per user (~/.gunicorn/gunicorn.ctl): two
# instances on a host would fight over it, and nothing here uses it.
control_socket_disable = True
