"""What the agent API keeps in Redis so that a quiet agent costs next to nothing (the fast path in
`portal.blueprints.agent_api.fast` reads it; the slow path, the Flask routes, writes it):

- the token cache: `depot:agent:token:<sha256 of the device token>` -> the device's id, for
  DEPOT_AGENT_TOKEN_TTL seconds; "-" (a tombstone, as long) once the token stops working (the
  device was forgotten, enrolled again, its token changed), so a cached token dies at once and a
  request that looked the device up just before cannot put it back (it only adds, SET NX);
- the work marker: `depot:agent:idle:<device id>` holds the device's work version of the moment a
  /work poll found nothing (DEPOT_AGENT_IDLE_TTL seconds); `depot:agent:work:<device id>` is
  that version, set to a new random value after every commit that created or changed one of the
  device's deployments. A marker equal to the version: no work, without asking the database.
  The version is read before the database is asked, and bumped after the change is committed,
  so a deployment committed in between leaves the marker behind the version (the slow path);
- the facts digest: `depot:agent:facts:<device id>`, the SHA-256 of the last heartbeat body
  written to the database with the address it came from; the same again is a quiet heartbeat;
- last seen: `depot:agent:seen`, a hash device id -> Unix time of its last quiet heartbeat,
  written to the database every DEPOT_AGENT_SEEN_FLUSH seconds (`agent_flush`).

Version bumps and tombstones follow the ORM: any Deployment row added or changed in a session
bumps its device's version, any Device deleted or given a new token hash tombstones the old one,
on commit (`install_session_hooks`); a token that moves to another device (a claim approved) is
re-pointed instead (`token_moved_on_commit`). Bulk UPDATEs of deployments say which devices they
touched (`work_changed_on_commit`). Both happen whether DEPOT_AGENT_LEAN is on or not, so switching it
back on never meets a stale marker. Redis failing is logged: reads fall back to the database; a
bump or tombstone that could not be written is logged as an error (the marker or cache entry
then lives until its TTL).
"""
import hashlib
import logging
import secrets

from flask import current_app, has_app_context
from redis.exceptions import RedisError
from sqlalchemy import event, inspect
from sqlalchemy.orm import Session

from portal.extensions import get_redis

log = logging.getLogger(__name__)

PREFIX = "depot:agent:"
SEEN = PREFIX + "seen"
TOMBSTONE = "-"
NO_VERSION = "-"  # what a device without a version key compares as
REDIS_ERRORS = (RedisError, OSError, ValueError)  # ValueError: see blueprints/agent_api/limits.py
_PENDING = "depot_agent_cache"  # session.info key: what to write to Redis on commit


def token_key(token_hash: str) -> str:
    return f"{PREFIX}token:{token_hash}"


def idle_key(device_id) -> str:
    return f"{PREFIX}idle:{device_id}"


def work_key(device_id) -> str:
    return f"{PREFIX}work:{device_id}"


def facts_key(device_id) -> str:
    return f"{PREFIX}facts:{device_id}"


def lean(config=None) -> bool:
    """Whether the lean agent path is on (DEPOT_AGENT_LEAN)."""
    config = config if config is not None else current_app.config
    return bool(config.get("DEPOT_AGENT_LEAN"))


def facts_digest(body: bytes, remote_ip: str | None) -> str:
    """What makes a heartbeat quiet: its exact body from the same address as last time."""
    return hashlib.sha256((remote_ip or "").encode() + b"\n" + body).hexdigest()


# --- the slow path writes what the fast path reads ---------------------------------------

def cache_device(token_hash: str, device_id: int) -> None:
    """Remember which device a token belongs to, unless it is cached (or tombstoned) already."""
    try:
        get_redis().set(token_key(token_hash), str(device_id), nx=True,
                        ex=current_app.config["DEPOT_AGENT_TOKEN_TTL"])
    except REDIS_ERRORS as exc:
        log.warning("device token not cached (Redis: %s)", exc)


def remember_facts(device_id: int, digest: str) -> None:
    """The heartbeat with this digest was written to the database: the same again is quiet."""
    try:
        get_redis().set(facts_key(device_id), digest,
                        ex=current_app.config["DEPOT_AGENT_TOKEN_TTL"])
    except REDIS_ERRORS as exc:
        log.warning("heartbeat facts not remembered (Redis: %s)", exc)


def work_version(device_id: int) -> str | None:
    """The device's work version now (NO_VERSION if none), or None when Redis does not answer
    (then no marker is set)."""
    try:
        value = get_redis().get(work_key(device_id))
    except REDIS_ERRORS as exc:
        log.warning("work version not read (Redis: %s)", exc)
        return None
    return value.decode() if value is not None else NO_VERSION


def mark_idle(device_id: int, version: str | None) -> None:
    """A /work poll found nothing for the device while its work version was `version`."""
    if version is None:
        return
    try:
        get_redis().set(idle_key(device_id), version,
                        ex=current_app.config["DEPOT_AGENT_IDLE_TTL"])
    except REDIS_ERRORS as exc:
        log.warning("idle marker not set (Redis: %s)", exc)


# --- changes that must reach the fast path at once ---------------------------------------

def work_changed(device_ids) -> None:
    """Give each device a new work version: its idle marker no longer matches (call after the
    change is committed)."""
    ids = sorted({int(i) for i in device_ids if i is not None})
    if not ids:
        return
    ttl = 2 * current_app.config["DEPOT_AGENT_IDLE_TTL"]  # outlives any marker set before
    try:
        pipe = get_redis().pipeline(transaction=False)
        for device_id in ids:
            pipe.set(work_key(device_id), secrets.token_hex(8), ex=ttl)
        pipe.execute()
    except REDIS_ERRORS as exc:
        log.error("work version of devices %s not bumped (Redis: %s): they may be told there is "
                  "no work for up to DEPOT_AGENT_IDLE_TTL s", ids[:20], exc)


def revoke(token_hashes, device_ids=()) -> None:
    """Tombstone these token hashes and drop what the fast path knows of these devices (call
    after the change is committed)."""
    hashes = sorted({h for h in token_hashes if h})
    ids = sorted({int(i) for i in device_ids if i is not None})
    if not hashes and not ids:
        return
    try:
        pipe = get_redis().pipeline(transaction=False)
        for token_hash in hashes:
            pipe.set(token_key(token_hash), TOMBSTONE,
                     ex=current_app.config["DEPOT_AGENT_TOKEN_TTL"])
        for device_id in ids:
            pipe.delete(idle_key(device_id), facts_key(device_id))
            pipe.hdel(SEEN, str(device_id))
        pipe.execute()
    except REDIS_ERRORS as exc:
        log.error("revoked device tokens not tombstoned (Redis: %s): a cached one may work for "
                  "up to DEPOT_AGENT_TOKEN_TTL s", exc)


def move_token(token_hash: str, device_id: int) -> None:
    """The token now belongs to another device (a claim was approved): point its cache entry at
    that device, overwriting what a request just before may have cached (call after commit)."""
    try:
        get_redis().set(token_key(token_hash), str(device_id),
                        ex=current_app.config["DEPOT_AGENT_TOKEN_TTL"])
    except REDIS_ERRORS as exc:
        log.error("moved device token not re-cached (Redis: %s): it is tombstoned or names "
                  "the old record for up to DEPOT_AGENT_TOKEN_TTL s", exc)
        try:  # at least not left naming the deleted record (then the slow path decides)
            get_redis().delete(token_key(token_hash))
        except REDIS_ERRORS:
            pass


def token_moved_on_commit(session, token_hash: str, device_id: int) -> None:
    """When `session` commits, the token (its hash) keeps working, for `device_id`: it is not
    tombstoned although the record that held it goes (claims merging)."""
    _pending(session)["moved"][token_hash] = device_id


def work_changed_on_commit(session, device_ids) -> None:
    """Bump these devices' work versions when `session` commits (for bulk UPDATEs the ORM does
    not see row by row)."""
    _pending(session)["work"].update(i for i in device_ids if i is not None)


def _pending(session) -> dict:
    return session.info.setdefault(_PENDING, {"work": set(), "tokens": set(), "devices": set(),
                                                 "moved": {}})


# --- the ORM hooks -------------------------------------------------------------------------

def _after_flush(session, _flush_context) -> None:
    from portal.models import Deployment, Device

    pending = None
    for obj in list(session.new) + list(session.dirty) + list(session.deleted):
        if isinstance(obj, Deployment):
            pending = pending or _pending(session)
            pending["work"].add(obj.device_id)
            pending["work"].update(inspect(obj).attrs.device_id.history.deleted or ())
        elif isinstance(obj, Device):
            history = inspect(obj).attrs.token_hash.history
            if obj in session.deleted:
                pending = pending or _pending(session)
                pending["tokens"].update([obj.token_hash, *(history.deleted or ())])
                pending["devices"].add(obj.id)
            elif history.deleted:
                pending = pending or _pending(session)
                pending["tokens"].update(history.deleted)
                pending["devices"].add(obj.id)


def _after_commit(session) -> None:
    pending = session.info.pop(_PENDING, None)
    if not pending or not has_app_context():
        return
    revoke(pending["tokens"] - set(pending["moved"]), pending["devices"])
    for token_hash, device_id in pending["moved"].items():
        move_token(token_hash, device_id)
    work_changed(pending["work"] - pending["devices"])


def _after_soft_rollback(session, previous_transaction) -> None:
    if previous_transaction.parent is None:  # the outermost transaction: nothing will commit
        session.info.pop(_PENDING, None)


def install_session_hooks() -> None:
    """Listen to every ORM session (once): bumps and tombstones follow what is committed."""
    if not event.contains(Session, "after_flush", _after_flush):
        event.listen(Session, "after_flush", _after_flush)
        event.listen(Session, "after_commit", _after_commit)
        event.listen(Session, "after_soft_rollback", _after_soft_rollback)
