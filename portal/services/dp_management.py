"""Adding, changing and forgetting distribution points, and watching their health."""
import logging
import re
from concurrent.futures import ThreadPoolExecutor, as_completed
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.core.errors import Conflict, DepotError, NeedsAuth
from portal.core.names import clean_name
from portal.extensions import db
from portal.models import DeviceGroup, DistributionPoint, utcnow
from portal.services import audit, jobs, notifications, secrets
from portal.services.actors import Actor
from portal.services.backends import open_storage, probe_storage
from portal.services.permissions import require

MIN_KEY_LENGTH = 16
log = logging.getLogger(__name__)
HOURS_RE = re.compile(r"^([01]?\d|2[0-3])-([01]?\d|2[0-3])$")


def _clean(value, field: str, max_length: int = 100) -> str:
    try:
        return clean_name(value, field, max_length)
    except ValueError as exc:
        raise DepotError(str(exc)) from None


def clean_url(value) -> str:
    """An http(s) base URL of a DP node, without a trailing slash."""
    url = _clean(value, "url", 500).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DepotError("url must look like https://dp.seattle.example.com:8081")
    if parts.query or parts.fragment:
        raise DepotError("url must not have a query or a fragment")
    return url


def clean_key(value) -> str:
    if not isinstance(value, str) or len(value.strip()) < MIN_KEY_LENGTH:
        raise DepotError(f"key must be the node's DEPOT_DP_KEY ({MIN_KEY_LENGTH} characters or more)")
    return value.strip()


def clean_hours(value) -> str | None:
    """Allowed copy hours as 'HH-HH' (local time of the server; '22-6' wraps midnight), or None."""
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not HOURS_RE.match(value.strip()):
        raise DepotError("allowed hours must look like 22-6 (from 22:00 to 06:00)")
    start, end = (int(h) for h in value.strip().split("-"))
    if start == end:
        raise DepotError("allowed hours must not start and end at the same hour")
    return f"{start:02d}-{end:02d}"


def clean_bandwidth(value) -> int | None:
    """A copy bandwidth cap in bytes per second, or None for no cap."""
    if value in (None, "", 0):
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 64 * 1024:
        raise DepotError("bandwidth limit must be a whole number of bytes per second, 65536 or more")
    return value


def test_connection(url, key, name: str | None = None) -> dict:
    """Ask the node at `url` for its health with `key`; its answer, or an error saying why not."""
    with probe_storage("local", None, url=clean_url(url), secret=clean_key(key),
                       name=name) as backend:
        return backend.check()


def add_local(actor: Actor, name, url, key, site=None) -> DistributionPoint:
    """Add a DP node after a successful connection test; its first rescan is queued at once."""
    require(actor.user, "manage_dps")
    name, url, key = _clean(name, "name"), clean_url(url), clean_key(key)
    site = _clean(site, "site") if site not in (None, "") else ""
    if db.session.scalars(select(DistributionPoint).where(DistributionPoint.name == name)).first():
        raise Conflict(f"a distribution point named {name} already exists")
    health = test_connection(url, key, name)
    dp = DistributionPoint(name=name, kind="local", site=site, url=url, secret=secrets.encrypt(key),
                           status="online", free_bytes=health.get("free_bytes"),
                           total_bytes=health.get("total_bytes"), checked_at=utcnow())
    db.session.add(dp)
    db.session.flush()
    audit.record(actor, "dp.create", target=name, kind="local", url=url, site=site)
    db.session.commit()
    jobs.start_job("rescan", actor, dp_id=dp.id, dedup_key=f"rescan:{dp.id}")
    return dp


def update_dp(actor: Actor, dp: DistributionPoint, changes: dict) -> DistributionPoint:
    """Change a DP's name, site, URL, key, maintenance flag, bandwidth cap or allowed hours."""
    require(actor.user, "manage_dps")
    allowed = {"name", "site", "disabled", "bandwidth_limit", "allowed_hours"}
    if dp.is_central:
        allowed = {"name", "site"}
    elif dp.kind == "local":
        allowed |= {"url", "key"}
    elif dp.provider == "s3":
        allowed |= {"access_key_id", "secret_access_key"}  # keys can be replaced, never read
    unknown = set(changes) - allowed
    if unknown:
        raise DepotError(f"cannot change {', '.join(sorted(unknown))} of {dp.name}")
    values = {}
    if "name" in changes:
        values["name"] = _clean(changes["name"], "name")
        other = db.session.scalars(select(DistributionPoint).where(
            DistributionPoint.name == values["name"], DistributionPoint.id != dp.id)).first()
        if other:
            raise Conflict(f"a distribution point named {values['name']} already exists")
    if "site" in changes:
        values["site"] = _clean(changes["site"], "site") if changes["site"] else ""
    if "disabled" in changes:
        if not isinstance(changes["disabled"], bool):
            raise DepotError("disabled must be true or false")
        values["disabled"] = changes["disabled"]
    if "bandwidth_limit" in changes:
        values["bandwidth_limit"] = clean_bandwidth(changes["bandwidth_limit"])
    if "allowed_hours" in changes:
        values["allowed_hours"] = clean_hours(changes["allowed_hours"])
    if "url" in changes or "key" in changes:
        url = clean_url(changes.get("url", dp.url))
        if url != dp.url and "key" not in changes:
            # The stored key is only ever sent to the URL it was entered for.
            raise DepotError("a new URL needs the node's key entered again")
        key = clean_key(changes["key"]) if "key" in changes else secrets.decrypt(dp.secret)
        test_connection(url, key, dp.name)
        values["url"], values["secret"] = url, secrets.encrypt(key)
    if "access_key_id" in changes or "secret_access_key" in changes:
        from portal.services.cloud_dps import replace_s3_keys

        values["secret"] = replace_s3_keys(dp, changes)
    for field, value in values.items():
        setattr(dp, field, value)
    audit.record(actor, "dp.update", target=dp.name,
                 fields=sorted("key" if f == "secret" else f for f in values))
    db.session.commit()
    return dp


def delete_dp(actor: Actor, dp: DistributionPoint) -> None:
    """Forget a DP (its files stay where they are); never the central one."""
    require(actor.user, "manage_dps")
    if dp.is_central:
        raise Conflict("the central distribution point cannot be deleted")
    audit.record(actor, "dp.delete", target=dp.name, kind=dp.kind, url=dp.url)
    # Groups name their fallbacks in a JSON list, which no foreign key cleans up.
    for group in db.session.scalars(select(DeviceGroup)).all():
        if dp.id in (group.fallback_dp_ids or []):
            group.fallback_dp_ids = [i for i in group.fallback_dp_ids if i != dp.id]
    db.session.delete(dp)
    db.session.commit()


def check_health() -> dict[int, str]:
    """Ask every enabled DP (nodes and cloud accounts) whether it answers, DEPOT_HEALTH_THREADS at
    a time; a change of status (online, offline, needs-auth) is notified. {dp id: status}."""
    # The checks run on threads and touch no session: each reads a detached copy of its DP (a
    # session of its own, closed before the pool starts) and returns what it found. This thread
    # writes each result as it arrives, as one check at a time did, so SQLite sees one writer.
    with Session(db.engine, expire_on_commit=False) as snapshot:
        dps = snapshot.scalars(select(DistributionPoint).where(
            DistributionPoint.kind != "central", DistributionPoint.disabled.is_(False))).all()
    if not dps:
        return {}
    config = current_app.config
    app = current_app._get_current_object()
    timeout = config["DEPOT_HEALTH_TIMEOUT"]
    threads = max(1, min(config["DEPOT_HEALTH_THREADS"], len(dps)))
    outcome = {}
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="health") as pool:
        futures = {pool.submit(_check_one, app, dp, timeout): dp for dp in dps}
        for future in as_completed(futures):
            checked = futures[future]
            try:
                status, reason, space = future.result()
            except Exception as exc:  # noqa: BLE001 - the thread itself failed (no app context?)
                log.exception("health check of %s failed", checked.name)
                status, reason, space = "offline", f"the check failed: {type(exc).__name__}", None
            dp = db.session.get(DistributionPoint, checked.id)
            if dp is None:  # forgotten while it was being checked
                continue
            if space is not None:
                dp.free_bytes, dp.total_bytes = space
            notifications.set_dp_status(dp, status, reason)
            dp.checked_at = utcnow()
            db.session.commit()
            outcome[dp.id] = status
    return outcome


def _check_one(app, dp: DistributionPoint, timeout: float) -> tuple[str, str | None, tuple | None]:
    """One DP's health, on a pool thread: (status, reason, (free, total) bytes or None). Never
    raises: a check that fails in a new way is that DP offline, not the others unchecked."""
    try:
        with app.app_context(), open_storage(dp) as backend:
            if dp.kind == "local":
                health = backend.check(timeout=timeout)
                space = (health.get("free_bytes"), health.get("total_bytes"))
            else:
                backend.ping()
                space = None
        return "online", None, space
    except NeedsAuth as exc:
        return "needs-auth", exc.message, None
    except DepotError as exc:
        return "offline", exc.message, None
    except Exception as exc:  # noqa: BLE001 - a provider's library failing in a new way
        log.exception("health check of %s failed", dp.name)
        return "offline", f"the check failed: {type(exc).__name__}", None
