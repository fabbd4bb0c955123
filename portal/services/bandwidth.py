"""Bandwidth caps of copies: one token bucket per DP in Redis, drawn from by every worker copying
to that DP, so N workers together stay within the DP's cap (not N times it).

The bucket is a "theoretical arrival time" (GCRA): one number per DP, the time at which what was
reserved so far has been paid for at the cap's rate. A sender reserves n bytes with one atomic
script (EVALSHA, Redis's own clock, so workers on several hosts agree) and waits what it answers
before sending; an idle DP builds up credit for one second of the cap at most (the burst). A
piece larger than the burst waits until it is paid for, so pieces of any size keep the cap.

If Redis does not answer (within REDIS_TIMEOUT), the copy goes on under a limiter of its own at
the same cap, with a logged warning, and asks Redis again RETRY_AFTER seconds later: a copy never
hangs on the bucket, and each copy still keeps the cap by itself meanwhile.
"""
import logging
import threading
import time

import redis
from flask import current_app
from redis.backoff import NoBackoff
from redis.retry import Retry

from portal.core.errors import JobCancelled
from portal.extensions import redis_url

log = logging.getLogger(__name__)
BURST_SECONDS = 1.0
REDIS_TIMEOUT = 2.0  # seconds a reservation may take before the copy keeps the cap by itself
RETRY_AFTER = 30.0  # seconds before a copy that fell back asks Redis again

# KEYS[1]: the DP's bucket; ARGV: the cap (bytes/s), the burst (s), the bytes to send. Returns
# the microseconds to wait before sending them (zero or less: send now).
RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
tat = tat + n / rate
redis.call('SET', KEYS[1], string.format('%.6f', tat),
           'PX', math.ceil((tat - now + burst) * 1000) + 1000)
return math.floor((tat - now - burst) * 1000000)
"""


def bucket_key(dp_id: int) -> str:
    return f"depot:bandwidth:{dp_id}"


def bucket_redis(app=None) -> redis.Redis:
    """The app's Redis for reservations: short timeouts and no retries, so a Redis that is down
    or hung costs a copy REDIS_TIMEOUT, not redis-py's backoff."""
    app = app or current_app._get_current_object()
    conn = app.extensions.get("depot_bandwidth_redis")
    if conn is None:
        conn = redis.Redis.from_url(redis_url(app), socket_timeout=REDIS_TIMEOUT,
                                    socket_connect_timeout=REDIS_TIMEOUT,
                                    retry=Retry(NoBackoff(), 0))
        app.extensions["depot_bandwidth_redis"] = conn
    return conn


class Throttle:
    """Keeps the bytes sent by the streams of one copy under a cap, in this process alone (what
    a copy falls back to while Redis does not answer); a cancel ends the wait."""

    def __init__(self, limit: int | None, cancelled: threading.Event):
        self.limit, self.sent, self.started = limit, 0, time.monotonic()
        self.cancelled = cancelled
        self.lock = threading.Lock()

    def reserve(self, n: int) -> float:
        """Count `n` bytes about to be sent; seconds to wait first (the streams are ahead)."""
        with self.lock:
            self.sent += n
            return self.sent / self.limit - (time.monotonic() - self.started)

    def take(self, n: int) -> None:
        """Count `n` bytes about to be sent; wait first while the streams are ahead of the cap."""
        if not self.limit:
            return
        ahead = self.reserve(n)
        if ahead > 0 and self.cancelled.wait(ahead):
            raise JobCancelled()


class SharedThrottle(Throttle):
    """The cap of one DP, shared through its bucket in Redis by every worker copying to it."""

    def __init__(self, dp_id: int, limit: int | None, cancelled: threading.Event,
                 conn: redis.Redis | None = None):
        super().__init__(limit, cancelled)
        self.dp_id, self.key = dp_id, bucket_key(dp_id)
        self.conn = conn if conn is not None or not limit else bucket_redis()
        self.script = self.conn.register_script(RESERVE) if self.conn is not None else None
        self.local: Throttle | None = None  # set while Redis does not answer
        self.retry_at = 0.0

    def reserve(self, n: int) -> float:
        with self.lock:
            local = self.local if time.monotonic() < self.retry_at else None
        if local is not None:
            return local.reserve(n)
        try:
            wait = self.script(keys=[self.key], args=[self.limit, BURST_SECONDS, n]) / 1e6
        except redis.RedisError as exc:
            return self._fall_back(exc).reserve(n)
        with self.lock:
            if self.local is not None:
                log.info("copy to DP %s: Redis answers again; the DP's cap is shared again",
                         self.dp_id)
                self.local = None
        return wait

    def _fall_back(self, exc: Exception) -> Throttle:
        """The limiter of this copy alone, for RETRY_AFTER seconds (a new one each time, so the
        time Redis was tried for is no credit)."""
        with self.lock:
            if self.local is None or time.monotonic() >= self.retry_at:
                if self.local is None:
                    log.warning("copy to DP %s: the DP's shared bandwidth cap is in Redis, which "
                                "does not answer (%s); this copy keeps the cap by itself until "
                                "it does", self.dp_id, type(exc).__name__)
                self.local = Throttle(self.limit, self.cancelled)
                self.retry_at = time.monotonic() + RETRY_AFTER
            return self.local
