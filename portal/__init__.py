"""Depot: distribute deployment assets from a central server to distribution points."""
import logging
import os
import secrets

from portal.core.version import __version__ as __version__

# Nothing else at import time: `portal` is also the package of the lean DP node and the agent,
# which must not load the console's stack (Flask-SQLAlchemy, RQ, Authlib ...) by importing it.


def create_app(config_class=None):
    """Build the Flask app: settings, extensions, blueprints, error handlers and CLI commands."""
    from flask import Flask

    from portal.config import BASE_DIR, Config
    from portal.core.log_redaction import redact_logger
    from portal.extensions import csrf, db, htmx, login_manager, migrate

    config_class = config_class or Config
    app = Flask(__name__, instance_path=os.path.abspath(config_class.INSTANCE_DIR))
    app.config.from_object(config_class)
    _private_instance(app)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _instance_secret(app.instance_path)
    if not app.config.get("DEPOT_CENTRAL_DP_KEY"):  # shared with central's DP node
        app.config["DEPOT_CENTRAL_DP_KEY"] = _instance_secret(app.instance_path, "central_dp_key")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    redact_logger("werkzeug")  # `flask run`'s request lines hold whole links

    db.init_app(app)
    migrate.init_app(app, db, directory=str(BASE_DIR / "migrations"))
    login_manager.init_app(app)
    csrf.init_app(app)
    htmx.init_app(app)

    from portal import cli, web
    from portal.blueprints import register_blueprints
    from portal.blueprints.agent_api import fast

    fast.init_app(app)  # before web.init_app: ProxyFix goes around the agent API's fast path
    web.init_app(app)
    # Before the blueprints' rules are bound: an <int:id> past what the database's integer
    # columns hold is no route (404), not a driver overflow (500).
    app.url_map.converters["int"] = database_int()
    register_blueprints(app)
    cli.init_app(app)
    return app


def database_int():
    """Flask's int converter for ids: digits past the largest 32-bit id are no row's, so the
    answer is a 404 (JSON under /api/, the console's page elsewhere) for every method routed
    there.

    Werkzeug's own `max` is not enough: its refusal (ValidationError) comes after the method was
    matched, and counts the rules of the same path seen on the way (the GET beside a PATCH) as
    the methods allowed, so PATCH /api/v1/users/2**63 answered 405."""
    from werkzeug.exceptions import NotFound
    from werkzeug.routing import IntegerConverter

    from portal.core.numbers import MAX_ID

    class DatabaseInt(IntegerConverter):
        def __init__(self, map, *args, **kwargs):
            kwargs.setdefault("max", MAX_ID)
            super().__init__(map, *args, **kwargs)

        def to_python(self, value: str):
            digits = value.lstrip("0")
            # A length check first: int() refuses past 4,300 digits (a ValueError, a 405 again).
            if self.max is not None and (len(digits) > len(str(self.max))
                                         or int(digits or "0") > self.max):
                raise NotFound()
            return super().to_python(value)

    return DatabaseInt


def _private_instance(app) -> None:
    """The instance folder and the SQLite database (with its -wal and -shm) readable by Depot's
    own user only, from the first start on (portal.core.private_files)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from portal.core import private_files

    private_files.private_dir(app.instance_path)
    private_files.restrict_tree(app.instance_path)
    try:
        url = make_url(app.config.get("SQLALCHEMY_DATABASE_URI") or "")
    except ArgumentError:
        return  # SQLAlchemy says what is wrong with it when it connects
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:" \
            and url.query.get("mode") != "memory":
        # Flask-SQLAlchemy takes a relative SQLite path as relative to the instance folder.
        private_files.private_sqlite(os.path.join(app.instance_path, url.database))


def _instance_secret(instance_path: str, name: str = "secret_key") -> str:
    """A secret kept in instance/ (SECRET_KEY, central's DP key) so it survives restarts and
    every process shares it."""
    path = os.path.join(instance_path, name)
    try:
        with open(path) as fh:
            return fh.read().strip()
    except FileNotFoundError:
        key = secrets.token_hex(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key)
        return key
