"""Fixed-window rate limits in Redis: one counter per caller and minute, gone with the minute."""
import logging
import time

from redis.exceptions import RedisError

from portal.core.errors import RateLimited
from portal.extensions import get_redis

log = logging.getLogger(__name__)
WINDOW = 60


def check_rate(who: str, per_minute: int) -> None:
    """Count one call of `who` in this minute; RateLimited (with the seconds until the next
    minute) beyond `per_minute`. Redis unreachable: the call goes through (logged), since
    refusing every agent would be worse than counting none."""
    now = time.time()
    window = int(now // WINDOW)
    key = f"depot:agent-rate:{who}:{window}"
    try:
        pipe = get_redis().pipeline()
        pipe.incr(key)
        pipe.expire(key, WINDOW + 5)
        count = pipe.execute()[0]
    except (RedisError, OSError, ValueError) as exc:
        # ValueError: redis-py has been seen failing a fresh connection with "I/O operation on
        # closed file" rather than a RedisError; fail open all the same.
        log.warning("agent rate limit not checked (Redis: %s)", exc)
        return
    if count > per_minute:
        wait = max(1, int((window + 1) * WINDOW - now + 0.999))
        raise RateLimited(f"more than {per_minute} calls a minute; try again in {wait} s", wait)
