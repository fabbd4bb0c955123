"""A DP's bandwidth cap shared by every worker copying to it: the token bucket in Redis itself,
three workers copying to one capped DP node together, and a Redis that does not answer."""
import logging
import os
import socket
import threading
import time

import pytest
import redis as redis_lib
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq import Queue, SimpleWorker
from rq.job import Job as RqJob
from rq.timeouts import TimerDeathPenalty

from portal.core.errors import JobCancelled
from portal.extensions import QUEUE_NAMES, get_redis
from portal.services import bandwidth, copies, dp_management
from portal.services.bandwidth import BURST_SECONDS, RESERVE, SharedThrottle, bucket_key
from tests.factories import write_file
from tests.helpers import copy_one, fresh, poll
from tests.servers import ClosedPort

RATE = 1000  # bytes/s in the bucket's own tests: reservations in seconds are easy to read


def throttle(dp_id=1, limit=RATE, conn=None, cancelled=None):
    return SharedThrottle(dp_id, limit, cancelled or threading.Event(), conn=conn)


def test_reservations_within_the_burst_go_at_once(redis_conn):
    """Is a second of the cap sent at once, and bytes beyond it made to wait until paid for?"""
    bucket = throttle(conn=redis_conn)
    assert bucket.reserve(RATE // 2) <= 0
    assert bucket.reserve(RATE // 2 - 100) <= 0
    wait = bucket.reserve(100 * RATE)  # 100 s of the cap, of which the burst is paid already
    assert 95 < wait <= 100 - BURST_SECONDS + 0.9
    # Kept until paid for, plus the burst and a second: no credit is lost by expiry.
    assert 0 < redis_conn.pttl(bucket_key(1)) <= (wait + 2 * BURST_SECONDS + 1) * 1000 + 1


def test_workers_copying_to_one_dp_share_its_bucket(redis_conn, app):
    """Does a second worker's reservation wait for what the first reserved at the same DP, and
    not for another DP's?"""
    first = throttle(dp_id=7, conn=redis_conn)
    second = throttle(dp_id=7, conn=redis_lib.Redis.from_url(app.config["REDIS_URL"]))
    elsewhere = throttle(dp_id=8, conn=redis_conn)
    assert 45 < first.reserve(50 * RATE) <= 49
    assert 95 < second.reserve(50 * RATE) <= 99
    assert elsewhere.reserve(RATE // 2) <= 0


def test_an_idle_dp_builds_up_one_second_of_credit_at_most(redis_conn):
    """After a long idle time, is only the burst sent at once (3 s of bytes wait 2 s)?"""
    redis_conn.set(bucket_key(3), "1.0")  # last paid up long ago
    wait = throttle(dp_id=3, conn=redis_conn).reserve(3 * RATE)
    assert abs(wait - (3 - BURST_SECONDS)) < 0.01


def test_a_cancel_ends_the_wait(redis_conn):
    """Does a copy cancelled while it waits for the cap stop waiting (JobCancelled)?"""
    cancelled = threading.Event()
    bucket = throttle(dp_id=4, conn=redis_conn, cancelled=cancelled)
    bucket.take(RATE // 2)  # within the burst: no wait
    threading.Timer(0.2, cancelled.set).start()
    with pytest.raises(JobCancelled):
        bucket.take(3600 * RATE)  # an hour of the cap, unless cancelled


def test_no_cap_asks_nothing_of_redis(app):
    """Does a DP without a cap send at once, without a Redis connection for the bucket?"""
    bucket = SharedThrottle(5, None, threading.Event())
    assert bucket.conn is None
    bucket.take(10 ** 12)


def test_a_redis_that_refuses_falls_back_to_the_copys_own_cap(redis_conn, caplog):
    """With Redis refusing connections, does the copy keep the cap by itself (bytes beyond the
    cap wait), say so once in the log, and share the bucket again once Redis answers?"""
    closed = ClosedPort()
    down = redis_lib.Redis(port=closed.port, socket_connect_timeout=1, socket_timeout=1,
                           retry=Retry(NoBackoff(), 0))
    try:
        bucket = throttle(dp_id=6, conn=down)
        with caplog.at_level(logging.WARNING, logger="portal.services.bandwidth"):
            first = bucket.reserve(5 * RATE)
            second = bucket.reserve(5 * RATE)
        assert 4 < first <= 5 and 9 < second <= 10
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "does not answer (ConnectionError)" in warnings[0]
        assert bucket.local is not None
        # Redis answers again (here: the bucket asks the real one) once RETRY_AFTER has passed.
        bucket.script = redis_conn.register_script(RESERVE)
        bucket.retry_at = 0
        assert bucket.reserve(RATE // 2) <= 0
        assert bucket.local is None and redis_conn.exists(bucket_key(6))
    finally:
        closed.close()


def test_a_redis_that_never_answers_costs_a_timeout_not_a_hang(app, monkeypatch):
    """With Redis accepting connections but never answering, does a reservation give up after
    the bucket's timeout and fall back, rather than hang the copy?"""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    monkeypatch.setattr(bandwidth, "REDIS_TIMEOUT", 0.3)
    monkeypatch.setitem(app.config, "REDIS_URL", f"redis://127.0.0.1:{silent.getsockname()[1]}")
    app.extensions.pop("depot_bandwidth_redis", None)
    try:
        bucket = SharedThrottle(9, RATE, threading.Event())
        assert 1 < bucket.reserve(2 * RATE) <= 2  # the copy's own limiter: no burst
        assert bucket.local is not None
    finally:
        app.extensions.pop("depot_bandwidth_redis", None)
        silent.close()


def test_a_copy_goes_on_with_redis_down_for_the_bucket(central, admin, rescan, seattle, node,
                                                        work, monkeypatch, caplog):
    """Does a capped copy succeed, with the warning in the log, when the bucket's Redis refuses
    (the queue's Redis still answering)?"""
    closed = ClosedPort()
    down = redis_lib.Redis(port=closed.port, socket_connect_timeout=1,
                           retry=Retry(NoBackoff(), 0))
    monkeypatch.setattr(bandwidth, "bucket_redis", lambda app=None: down)
    try:
        data = os.urandom(100_000)
        write_file(central.root, "Images/Small.wim", data)
        rescan(central)
        dp_management.update_dp(admin, seattle, {"bandwidth_limit": 10_000_000})
        with caplog.at_level(logging.WARNING, logger="portal.services.bandwidth"):
            job = copy_one(admin, work, "Images/Small.wim", seattle)
    finally:
        closed.close()
    assert job.state == "succeeded", job.error
    with open(node.file("Images/Small.wim"), "rb") as fh:
        assert fh.read() == data
    assert any("keeps the cap by itself" in r.getMessage() for r in caplog.records)


# --- three workers, one capped DP ------------------------------------------------------------

CAP = 200_000  # bytes/s
SIZE = 300_000  # each file: three take about 3.5 s at the cap (less the burst)


@pytest.fixture
def config_overrides():
    return {"DEPOT_COPY_CHUNK": 16 * 1024}


class ThreadWorker(SimpleWorker):
    """RQ's SimpleWorker on a thread of this process: no signal handlers (only the main thread
    may set them), job timeouts by a timer instead of SIGALRM, no command listener."""

    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self):
        pass

    def subscribe(self):
        pass


def test_three_workers_together_stay_within_the_dps_cap(app, central, admin, rescan, seattle,
                                                         received):
    """Three workers, each copying a file to the same capped DP node at once: do the bytes that
    arrive stay within the cap (plus the burst, with slack for a busy machine) the whole time,
    and do all three copies finish?"""
    keys = [f"Images/Branch-{n}.wim" for n in range(3)]
    for key in keys:
        write_file(central.root, key, os.urandom(SIZE))
    rescan(central)
    dp_management.update_dp(admin, seattle, {"bandwidth_limit": CAP})
    jobs = copies.request_copies(admin, keys, [seattle.id])
    received["bytes"] = 0  # the rescan's traffic is no upload
    conn = get_redis()

    def run_one():
        with app.app_context():
            ThreadWorker([Queue(n, connection=conn) for n in QUEUE_NAMES],
                         connection=conn).work(burst=True, max_jobs=1)

    threads = [threading.Thread(target=run_one, name=f"worker-{n}") for n in range(3)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    samples = []  # (seconds since the start, bytes arrived by then)

    def finished():
        # The bytes are read first, the clock after: each sample's bound is its latest.
        samples.append((received["bytes"], time.monotonic() - started))
        return not any(t.is_alive() for t in threads)

    poll(finished, timeout=120, interval=0.1, message="the three copies to end")
    for arrived, elapsed in samples:
        assert arrived <= 1.5 * CAP * (elapsed + BURST_SECONDS), (arrived, elapsed)
    assert samples[-1][0] == 3 * SIZE  # and it progressed: everything arrived
    done = [fresh(job.id) for job in jobs]
    assert [job.state for job in done] == ["succeeded"] * 3, [job.error for job in done]
    workers = {RqJob.fetch(job.rq_job_id, connection=conn).worker_name for job in done}
    assert len(workers) == 3  # one copy a worker, all at once
