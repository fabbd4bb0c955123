"""Scale-out, tried: the processes of a site (docs/scale-out.md) on one machine, on PostgreSQL and
Redis: two console processes, three workers (`portal.jobs.worker.Worker`), one `rq cron` and five
DP nodes. 200 copies are queued through both consoles' API, one worker is killed with SIGKILL
while it copies, and every copy must end `succeeded`, none run twice, none be lost.

Also here, on the same PostgreSQL: two rebuilds of one DP's assets at once (two copies to it
ending together) do not collide on `uq_assets_dp_key`.

Each module run creates a database of its own (`depot_scaleout_<random>`) on the PostgreSQL at
127.0.0.1:5432 (user postgres; DEPOT_TEST_PG_SERVER to point elsewhere) and drops it after; the
tests are skipped when no PostgreSQL answers there. The whole-site test takes 20-60 s on
two cores, so it runs in the suite on PostgreSQL (CI's second run) and where DEPOT_TEST_SCALE_OUT
is set, not in every `make test` on SQLite.
"""
import io
import json
import os
import secrets
import threading
from collections import Counter

import pytest
import requests
from flask_migrate import upgrade
from rq.worker import Worker as RQWorker
from sqlalchemy import create_engine, func, make_url, select, text
from sqlalchemy.exc import OperationalError

from portal import create_app
from portal.config import BASE_DIR, TestConfig
from portal.dpnode import create_node_app
from portal.dpnode.config import NodeConfig
from portal.extensions import db, get_redis
from portal.models import Asset, DistributionPoint, InventoryFile, Job
from portal.services import distribution_points, dp_management
from portal.services.actors import Actor
from portal.services.assets import rebuild_assets
from tests import factories
from tests.helpers import poll, run_worker, wait_for
from tests.node_fixtures import KEY
from tests.processes import CronProcess, WorkerProcess, kill_hard
from tests.servers import Gunicorn, serve_in_process

PG_SERVER = os.environ.get("DEPOT_TEST_PG_SERVER",
                           "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
NODES, ASSETS = 5, 40  # 200 copies
HELD = 17  # the asset whose copy to the first node waits at that node until its worker is killed
STALE_SECONDS, RECOVER_INTERVAL = 3, 5


@pytest.fixture(scope="module")
def pg_url():
    """A new, empty PostgreSQL database for this module, dropped at its end."""
    server = make_url(PG_SERVER)
    engine = create_engine(server, isolation_level="AUTOCOMMIT",
                           connect_args={"connect_timeout": 5})
    try:
        engine.connect().close()
    except OperationalError as exc:
        engine.dispose()
        pytest.skip(f"no PostgreSQL answers at {server.render_as_string()} "
                    f"(DEPOT_TEST_PG_SERVER): {str(exc.orig).strip()}")
    name = f"depot_scaleout_{secrets.token_hex(4)}"
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:  # FORCE: a process killed mid-transaction may linger
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@pytest.fixture(scope="module")
def pg_app(pg_url, redis_url, session_dir):
    """The console app on the module's PostgreSQL database, migrated."""
    base = os.path.join(session_dir, f"scale-out-{secrets.token_hex(4)}")
    config = type("ScaleOutConfig", (TestConfig,), dict(
        SQLALCHEMY_DATABASE_URI=pg_url, REDIS_URL=redis_url,
        INSTANCE_DIR=os.path.join(base, "instance"), DEPOT_CENTRAL_ROOT=os.path.join(base, "central"),
        DEPOT_JOB_STALE_SECONDS=STALE_SECONDS))
    app = create_app(config)
    with app.app_context():
        upgrade(directory=str(BASE_DIR / "migrations"))
        db.engine.dispose()
    return app


@pytest.fixture
def app(pg_app, tmp_path):
    """pg_app's context on clean tables and Redis, with a central root of the test's own."""
    pg_app.config["DEPOT_CENTRAL_ROOT"] = str(tmp_path / "central")
    with pg_app.app_context():
        _clean()
        distribution_points.ensure_central()
        yield pg_app
        db.session.remove()
        _clean()
        db.engine.dispose()


def _clean():
    db.session.rollback()
    with db.engine.begin() as conn:
        for table in reversed(db.metadata.sorted_tables):
            conn.execute(table.delete())
    get_redis().flushdb()


def backend_pid_waiting(pid_holder: dict) -> bool:
    """True once the other session's backend waits for a lock (asked in a new transaction each
    time: PostgreSQL keeps one snapshot of pg_stat_activity a transaction)."""
    db.session.rollback()
    return bool(db.session.scalar(text(
        "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = :pid"),
        {"pid": pid_holder.get("pid", -1)}))


def second_rebuild(app, dp_id, then) -> dict:
    """Rebuild the DP's assets in another session while this one holds its transaction open:
    wait until that rebuild waits for a lock, commit here, and return what it did: its backend's
    "pid", then `then()`'s items once it committed, or its "error"."""
    other: dict = {}

    def second():
        with app.app_context():
            other["pid"] = db.session.scalar(text("SELECT pg_backend_pid()"))
            try:
                rebuild_assets(dp_id)
                db.session.commit()
                other.update(then())
            except Exception as exc:  # noqa: BLE001 - the test reports what it was
                db.session.rollback()
                other["error"] = repr(exc)
            finally:
                db.session.remove()

    thread = threading.Thread(target=second)
    thread.start()
    # The second rebuild waits (for the DP's row; without the lock, for the asset's key).
    with app.app_context():
        poll(lambda: backend_pid_waiting(other), timeout=30, message="the second rebuild to wait")
        db.session.remove()
    db.session.commit()
    thread.join(timeout=30)
    return other


def test_two_rebuilds_of_one_dp_at_once(app):
    """Two rebuilds of one DP's assets at once (inventory a rescan wrote, with no asset yet): does
    the second wait for the first and update the asset, instead of failing on uq_assets_dp_key?"""
    dp = DistributionPoint(name="Seattle", kind="local", site="", url="http://127.0.0.1:9")
    db.session.add(dp)
    db.session.flush()
    db.session.add(InventoryFile(dp_id=dp.id, path="Images/a.wim", size=3, mtime_ns=1,
                                 sha256="a" * 64))
    db.session.commit()
    dp_id = dp.id

    rebuild_assets(dp_id)  # this session: inserts the asset, holds its transaction open
    other = second_rebuild(app, dp_id, lambda: {"done": True})
    assert other == {"pid": other["pid"], "done": True}
    db.session.expire_all()
    assets = db.session.scalars(select(Asset).where(Asset.dp_id == dp_id)).all()
    assert [(a.key, a.digest is not None) for a in assets] == [("Images/a.wim", True)]


def test_rebuild_sees_what_the_first_one_committed(app):
    """After waiting, does the second rebuild see the inventory the first committed (a file the
    first added is an asset, a file it removed is not)?"""
    dp = DistributionPoint(name="Boise", kind="local", site="", url="http://127.0.0.1:9")
    db.session.add(dp)
    db.session.flush()
    db.session.add(InventoryFile(dp_id=dp.id, path="Images/old.wim", size=3, mtime_ns=1,
                                 sha256="b" * 64))
    db.session.commit()
    rebuild_assets(dp.id)
    db.session.commit()
    dp_id = dp.id

    db.session.execute(InventoryFile.__table__.delete().where(InventoryFile.dp_id == dp_id))
    db.session.add(InventoryFile(dp_id=dp_id, path="Images/new.wim", size=3, mtime_ns=1,
                                 sha256="c" * 64))
    rebuild_assets(dp_id)  # holds the DP until the commit below
    other = second_rebuild(app, dp_id, lambda: {"keys": sorted(db.session.scalars(
        select(Asset.key).where(Asset.dp_id == dp_id)))})
    assert "error" not in other, other["error"]
    assert other["keys"] == ["Images/new.wim"]


class CountingNode:
    """A DP node served in this process whose upload requests are counted by path; the first
    upload of `held` waits at the node until `release` is set (its worker is killed meanwhile)."""

    def __init__(self, root: str, held: str | None = None):
        config = type("ScaleNodeConfig", (NodeConfig,), dict(
            DEPOT_DP_ROOT=root, DEPOT_DP_KEY=KEY, TESTING=True, DEPOT_DP_RESERVE_BYTES=0))
        self.app, self.root, self.held = create_node_app(config), root, held
        self.created: Counter = Counter()
        self.entered, self.release = threading.Event(), threading.Event()
        inner = self.app.wsgi_app
        self.app.wsgi_app = lambda environ, start: self._count(inner, environ, start)
        self.served = serve_in_process(self.app, "scale-node")
        self.url = self.served.start()

    def _count(self, inner, environ, start_response):
        if environ["REQUEST_METHOD"] == "POST" and environ["PATH_INFO"] == "/dp/v1/uploads":
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
            path = json.loads(body)["path"]
            self.created[path] += 1
            if path == self.held and self.created[path] == 1:
                self.entered.set()
                self.release.wait(timeout=120)
        return inner(environ, start_response)


def key_of(number: int) -> str:
    return f"Images/scale-{number:02d}.wim"


def content_of(number: int) -> bytes:
    return f"image {number} ".encode() * (200 + 37 * number)  # 1.6 to 17 KiB


@pytest.fixture
def site(app, tmp_path):
    """Central with ASSETS images (hashed), NODES DP nodes added as DPs (first rescans done), and
    an API token of an admin: what the processes of the site then work on."""
    admin = Actor(factories.make_user("admin"), via="console")
    central = distribution_points.central_dp()
    for number in range(ASSETS):
        factories.write_file(central.root, key_of(number), content_of(number))
    distribution_points.request_rescan(central, admin)
    nodes, dps = [], []
    for index in range(NODES):
        root = tmp_path / f"node-{index}"
        root.mkdir()
        node = CountingNode(str(root), held=key_of(HELD) if index == 0 else None)
        nodes.append(node)
        dps.append(dp_management.add_local(admin, f"Branch {index}", node.url, KEY, f"Site {index}",
                                           allow_plain_http=True))
    run_worker()  # central's rescan and the nodes' first ones, here
    assert db.session.scalar(select(func.count()).select_from(Asset).where(
        Asset.dp_id == central.id, Asset.digest.is_not(None))) == ASSETS
    token = factories.make_token(admin.user)
    yield nodes, [dp.id for dp in dps], token
    for node in nodes:
        node.release.set()
        node.served.stop()


@pytest.fixture
def site_env(worker_env):
    """The environment of the site's processes: conftest's worker_env (this test's settings, its
    PostgreSQL and Redis) with the recovery sweep this test waits for and no health checks."""
    return {**worker_env, "DEPOT_RECOVER_INTERVAL": str(RECOVER_INTERVAL),
            "DEPOT_HEALTH_INTERVAL": "3600"}  # health: not what this test is about


@pytest.fixture
def processes(site_env, tmp_path):
    """Start processes; all are SIGKILLed at the end of the test."""
    started = []

    def _start(kind, *args):
        started.append(kind(*args))
        return started[-1]
    yield _start
    for proc in reversed(started):
        proc.stop()


def copy_jobs():
    return db.session.scalars(select(Job).where(Job.kind == "copy")).all()


def worker_holding(rq_job_id: str, workers: list) -> WorkerProcess | None:
    """The started worker whose horse runs this RQ job now, if any."""
    by_pid = {worker.proc.pid: worker for worker in workers}
    for registered in RQWorker.all(connection=get_redis()):
        if registered.pid in by_pid and registered.get_current_job_id() == rq_job_id:
            return by_pid[registered.pid]
    return None


@pytest.mark.slow
@pytest.mark.skipif(not (os.environ.get("DEPOT_TEST_DATABASE_URL", "").startswith("postgresql")
                         or os.environ.get("DEPOT_TEST_SCALE_OUT")),
                    reason="11 processes for 20-60 s: runs with the suite on PostgreSQL "
                           "(DEPOT_TEST_DATABASE_URL) or with DEPOT_TEST_SCALE_OUT=1")
def test_two_consoles_three_workers_one_killed(app, site, site_env, processes, tmp_path):
    """200 copies to 5 DP nodes, queued through two console processes and run by three workers,
    one of them SIGKILLed while it copies: does every copy end succeeded, exactly once, with
    the files at the nodes as at central, and is the killed one requeued by the recovery sweep
    of `rq cron`?"""
    nodes, dp_ids, token = site
    workers = [processes(WorkerProcess, site_env, tmp_path / f"worker-{n}.log") for n in range(3)]
    processes(CronProcess, site_env, tmp_path / "cron.log")
    consoles = [processes(Gunicorn, site_env, tmp_path / f"console-{n}.log", str(BASE_DIR))
                for n in range(2)]
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {token}"
    for number in range(ASSETS):  # one asset to every node a request, the consoles in turn
        console = consoles[number % 2]
        response = http.post(f"{console.url}/api/v1/copies", timeout=60,
                             json={"asset_keys": [key_of(number)], "dp_ids": dp_ids})
        assert response.status_code == 202, response.text
        assert len(response.json()["jobs"]) == NODES

    held_node = nodes[0]
    held = db.session.scalars(select(Job).where(
        Job.kind == "copy", Job.dp_id == dp_ids[0], Job.asset_key == key_of(HELD))).one()
    poll(held_node.entered.is_set, timeout=120, message="the held copy to reach its node")
    victim = poll(lambda: worker_holding(held.rq_job_id, workers), timeout=30,
                  message="the worker of the held copy")
    kill_hard(victim.proc)
    held_node.release.set()  # its request now answers a worker that is gone
    db.session.rollback()
    done_at_kill = sum(job.state == "succeeded" for job in copy_jobs())

    def all_finished():
        jobs = copy_jobs()
        return len(jobs) == NODES * ASSETS and all(
            job.state in ("succeeded", "failed", "cancelled") for job in jobs)
    wait_for(all_finished, timeout=240, interval=0.5, message="every copy to finish")

    jobs = copy_jobs()
    assert Counter(job.state for job in jobs) == {"succeeded": NODES * ASSETS}, [
        (job.asset_key, job.dp_id, job.error) for job in jobs if job.state != "succeeded"]
    assert 0 < done_at_kill < NODES * ASSETS  # the kill came mid-way
    # None lost: one job for each asset and DP.
    assert sorted((job.dp_id, job.asset_key) for job in jobs) == sorted(
        (dp_id, key_of(number)) for dp_id in dp_ids for number in range(ASSETS))
    # None ran twice: one attempt each, but the killed one, requeued once by the recovery sweep.
    db.session.refresh(held)
    retried = {job.id: job.attempts for job in jobs if job.attempts != 1}
    assert retried == {held.id: 2}
    assert [w for w in held.warnings if w.startswith("requeued")] == [
        "requeued (attempt 2): its worker stopped answering"]  # job_recovery, from `rq cron`
    assert all(job.retries == 0 for job in jobs)
    # Each node was sent each file once; the held one twice (the killed run, then the requeued one).
    for index, node in enumerate(nodes):
        expected = Counter({key_of(number): 1 for number in range(ASSETS)})
        if index == 0:
            expected[key_of(HELD)] = 2
        assert node.created == expected, index
        for number in range(ASSETS):
            with open(os.path.join(node.root, key_of(number)), "rb") as fh:
                assert fh.read() == content_of(number), (index, number)
        assert db.session.scalar(select(func.count()).select_from(Asset).where(
            Asset.dp_id == dp_ids[index], Asset.status == "current")) == ASSETS
    # The survivors are still working; the killed worker is gone.
    assert [w.proc.poll() is None for w in workers].count(True) == 2
