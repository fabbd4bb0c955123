"""Last-seen times of quiet heartbeats, kept in Redis by the agent API's fast path
(`agent_cache.SEEN`: device id -> Unix time), written to the database in batches.

The `flush_agent_seen` job runs this every DEPOT_AGENT_SEEN_FLUSH seconds, so the console's
"last seen" is at most that (plus the job's own run) behind. The hash is renamed away first, so
heartbeats arriving meanwhile go to a fresh one; a time only moves a device's last_seen_at
forward (a heartbeat written at once since is newer). If the database refuses, the times go
back into the hash for the next run (newer ones that arrived meanwhile win). Pages that show
devices read the pending times too (`with_pending_seen`: one HMGET a page).
"""
import logging
import uuid
from datetime import datetime, timezone

from redis.exceptions import ResponseError
from sqlalchemy import bindparam, or_, update
from sqlalchemy.orm.attributes import set_committed_value

from portal.extensions import db, get_redis
from portal.models import Device
from portal.services.agent_cache import REDIS_ERRORS, SEEN

log = logging.getLogger(__name__)
BATCH = 1000
KEEP_TAKEN = 3600  # a run that died between taking and writing: its leftovers expire


def _when(value: bytes) -> datetime:
    return datetime.fromtimestamp(float(value), timezone.utc).replace(tzinfo=None)


def flush_seen() -> int:
    """Write the pending last-seen times to the devices; how many devices were updated."""
    redis = get_redis()
    taken = f"{SEEN}:flushing:{uuid.uuid4().hex}"
    try:
        redis.rename(SEEN, taken)
    except ResponseError:  # "no such key": no quiet heartbeat since the last run
        return 0
    redis.expire(taken, KEEP_TAKEN)
    pending = redis.hgetall(taken)
    rows = []
    for device_id, when in pending.items():
        try:
            rows.append({"b_id": int(device_id), "b_seen": _when(when)})
        except (ValueError, OverflowError, OSError):
            log.warning("pending last-seen %r of device %r is not a time; dropped", when, device_id)
    table = Device.__table__
    statement = (update(table)
                 .where(table.c.id == bindparam("b_id"),
                        or_(table.c.last_seen_at.is_(None), table.c.last_seen_at < bindparam("b_seen")))
                 .values(last_seen_at=bindparam("b_seen")))
    updated = 0
    try:
        for start in range(0, len(rows), BATCH):
            result = db.session.execute(statement, rows[start:start + BATCH])
            updated += max(result.rowcount, 0)
        db.session.commit()
    except Exception:
        db.session.rollback()
        pipe = redis.pipeline(transaction=False)
        for device_id, when in pending.items():
            pipe.hsetnx(SEEN, device_id, when)
        pipe.delete(taken)
        pipe.execute()
        raise
    redis.delete(taken)
    return updated


def with_pending_seen(devices: list[Device]) -> list[Device]:
    """Show these devices' last seen as the quiet heartbeats waiting for the flush have it
    (newer than the database's), without marking the rows changed; the database's when Redis
    does not answer."""
    if not devices:
        return devices
    try:
        pending = get_redis().hmget(SEEN, [str(d.id) for d in devices])
    except REDIS_ERRORS as exc:
        log.warning("pending last-seen times not read (Redis: %s)", exc)
        return devices
    for device, when in zip(devices, pending):
        if when is None:
            continue
        try:
            seen = _when(when)
        except (ValueError, OverflowError, OSError):
            continue
        if device.last_seen_at is None or seen > device.last_seen_at:
            set_committed_value(device, "last_seen_at", seen)
    return devices
