"""Adding, changing and forgetting distribution points, and watching their health."""
import logging
import re
from concurrent.futures import ThreadPoolExecutor, as_completed
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.core import tls
from portal.core.errors import Conflict, DepotError, NeedsAuth
from portal.core.names import clean_name
from portal.core.numbers import MAX_BIGINT, whole_number
from portal.extensions import db
from portal.models import DeviceGroup, DistributionPoint, utcnow
from portal.services import audit, jobs, notifications, secrets
from portal.services.actors import Actor
from portal.services.backends import open_storage, probe_storage
from portal.services.permissions import require
from portal.storage import answers
from portal.storage.dpnode import (
    CertificateChanged,
    NodeError,
    NodeFailed,
    PlainHttpRefused,
    check_address,
    read_fingerprint,
)

MIN_KEY_LENGTH = 16
UNEXPECTED = "the check failed in a way Depot did not expect (the server's log says more)"
log = logging.getLogger(__name__)
HOURS_RE = re.compile(r"^([01]?\d|2[0-3])-([01]?\d|2[0-3])$")


def _clean(value, field: str, max_length: int = 100) -> str:
    try:
        return clean_name(value, field, max_length)
    except ValueError as exc:
        raise DepotError(str(exc)) from None


def clean_url(value) -> str:
    """An http(s) base URL of a DP node, without a trailing slash, its scheme in lower case (so
    every `startswith("https://")` sees an `HTTPS://` one as what it is)."""
    url = _clean(value, "url", 500).rstrip("/")
    parts = urlsplit(url)
    url = parts.scheme + url[len(parts.scheme):]  # urlsplit lower-cases the scheme it gives
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DepotError("url must look like https://dp.seattle.example.com:8081")
    if parts.query or parts.fragment:
        raise DepotError("url must not have a query or a fragment")
    if "@" in parts.netloc:
        raise DepotError("url must not carry a user name or password (user:pass@): Depot sends "
                         "the node's key itself; enter the key in its own field")
    try:
        parts.port
    except ValueError:
        raise DepotError("url has a port that is not a number from 1 to 65535") from None
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
    """A copy bandwidth cap in bytes per second (a JSON integer), or None for no cap (null, ""
    or 0; not false or 0.0)."""
    if value is None or value == "" or (type(value) is int and value == 0):
        return None
    return whole_number(value, "bandwidth limit", minimum=64 * 1024, message=(
        f"bandwidth limit must be a whole number of bytes per second, 65536 or more "
        f"(at most {MAX_BIGINT})"))


def clean_flag(value, field: str) -> bool:
    if not isinstance(value, bool):
        raise DepotError(f"{field} must be true or false")
    return value


def test_connection(url, key, name: str | None = None, *, allow_plain_http=False,
                    expected_fingerprint=None) -> dict:
    """Ask the node at `url` for its health with `key`: its answer with `tls_fingerprint`, the
    SHA-256 of the certificate it presents (None over plain HTTP), or an error saying why not.

    Over HTTPS the certificate is read first, trusting nothing, and the key is then sent only
    through a connection pinned to it (trust on first use: the admin is shown the fingerprint).
    With `expected_fingerprint` (the one shown at an earlier test) another certificate is
    refused. Plain HTTP is refused unless `allow_plain_http`."""
    url, key = clean_url(url), clean_key(key)
    name = name or "the node"
    allow_plain_http = clean_flag(allow_plain_http, "allow_plain_http")
    timeout = current_app.config["DEPOT_HEALTH_TIMEOUT"]
    presented = None
    if not url.startswith("https://") and not allow_plain_http:
        raise PlainHttpRefused(name)
    # Resolved once: the fingerprint and the health are asked of the addresses checked.
    addresses = check_address(url, name, current_app.config["DEPOT_ALLOW_LINK_LOCAL_DPS"])
    if url.startswith("https://"):
        presented = read_fingerprint(url, addresses=addresses)
        if expected_fingerprint:
            expected = tls.normalise(expected_fingerprint)
            if presented != expected:
                raise CertificateChanged(name, expected, presented)
    with probe_storage("local", None, url=url, secret=key, name=name, tls_fingerprint=presented,
                       allow_plain_http=allow_plain_http, checked_addresses=addresses) as backend:
        try:
            health = backend.check(timeout=timeout)
        except (NodeError, NodeFailed) as exc:
            raise _in_own_words(exc, name, url) from None
    return {**health, "tls_fingerprint": presented}


def _in_own_words(exc: NodeError | NodeFailed, name: str, url: str) -> DepotError:
    """A node's refusal at a connection test, in Depot's words only: what answered there is not
    trusted yet, so nothing of its body is shown."""
    status = exc.node_status
    if status in (401, 403):
        node = "The DP node" if name in ("the node", "the DP node") else f"{name}'s DP node"
        return DepotError(f"{node} refused this key: enter the key the node was started with "
                          "(its DEPOT_DP_KEY)", code="dp_error",
                          detail=f"{url} answered HTTP {status} to Depot's key")
    if isinstance(exc, NodeFailed):
        return DepotError(f"{name} ({url}) answered HTTP {status}: the node is not well (its "
                          "log says why)", code="dp_unreachable", status=502)
    if exc.node_code in ("not_a_node", "redirect") or status == 404:
        what = {"redirect": "answered with a redirect",
                "not_a_node": "did not answer like a DP node"}.get(exc.node_code,
                                                                   f"answered HTTP {status}")
        return DepotError(f"{name} ({url}) {what}: it is not a Depot DP node (is the URL "
                          "right?)", code="not_a_node", status=502)
    return DepotError(f"{name} ({url}) answered HTTP {status}: is it a Depot DP node?",
                      code="dp_error", status=502)


def add_local(actor: Actor, name, url, key, site=None, *, allow_plain_http=False,
              tls_fingerprint=None) -> DistributionPoint:
    """Add a DP node after a successful connection test, its certificate pinned (the one shown at
    the test when `tls_fingerprint` is given); its first rescan is queued at once."""
    require(actor.user, "manage_dps")
    name, url, key = _clean(name, "name"), clean_url(url), clean_key(key)
    site = _clean(site, "site") if site not in (None, "") else ""
    if db.session.scalars(select(DistributionPoint).where(DistributionPoint.name == name)).first():
        raise Conflict(f"a distribution point named {name} already exists")
    health = test_connection(url, key, name, allow_plain_http=allow_plain_http,
                             expected_fingerprint=tls_fingerprint)
    free, total = answers.space(health.get("free_bytes"), health.get("total_bytes"))
    dp = DistributionPoint(name=name, kind="local", site=site, url=url, secret=secrets.encrypt(key),
                           status="online", free_bytes=free, total_bytes=total, checked_at=utcnow(),
                           tls_fingerprint=health["tls_fingerprint"],
                           allow_plain_http=allow_plain_http)
    db.session.add(dp)
    db.session.flush()
    audit.record(actor, "dp.create", target=name, kind="local", url=url, site=site,
                 tls_fingerprint=health["tls_fingerprint"], allow_plain_http=allow_plain_http)
    db.session.commit()
    jobs.start_job("rescan", actor, dp_id=dp.id, dedup_key=f"rescan:{dp.id}")
    return dp


def presented_certificate(dp: DistributionPoint) -> tuple[str | None, str | None]:
    """(fingerprint the DP node presents now, or None; why it could not be read, or None), for
    its Edit page; (None, None) for a node not reached over HTTPS."""
    if dp.kind != "local" or not (dp.url or "").startswith("https://"):
        return None, None
    try:
        addresses = check_address(dp.url, dp.name,
                                  current_app.config["DEPOT_ALLOW_LINK_LOCAL_DPS"])
        return read_fingerprint(dp.url, addresses=addresses), None
    except DepotError as exc:
        return None, exc.message


def accept_certificate(actor: Actor, dp: DistributionPoint, fingerprint) -> DistributionPoint:
    """Pin the certificate a DP node presents now in place of the old one (admins; audited),
    once the key works through it. `fingerprint` is the one the admin was shown: if the node
    presents yet another, nothing is pinned."""
    require(actor.user, "manage_dps")
    if dp.kind != "local" or not (dp.url or "").startswith("https://"):
        raise DepotError(f"{dp.name} is not a DP node reached over HTTPS: there is no "
                         "certificate to accept")
    wanted = tls.normalise(fingerprint)
    addresses = check_address(dp.url, dp.name, current_app.config["DEPOT_ALLOW_LINK_LOCAL_DPS"])
    presented = read_fingerprint(dp.url, addresses=addresses)
    if presented != wanted:
        raise Conflict(f"{dp.name} now presents the certificate {tls.display(presented)}, not "
                       f"{tls.display(wanted)} that you accepted: nothing was changed; compare "
                       "again with what the node prints at start")
    if presented == dp.tls_fingerprint:
        return dp
    with probe_storage("local", None, url=dp.url, secret=secrets.dp_secret(dp),
                       name=dp.name, tls_fingerprint=presented,
                       checked_addresses=addresses) as backend:
        backend.check()  # the node behind the new certificate takes the key
    old, dp.tls_fingerprint = dp.tls_fingerprint, presented
    audit.record(actor, "dp.accept_certificate", target=dp.name, url=dp.url,
                 old_fingerprint=old, new_fingerprint=presented)
    db.session.commit()
    return dp


def update_dp(actor: Actor, dp: DistributionPoint, changes: dict) -> DistributionPoint:
    """Change a DP's name, site, URL, key, maintenance flag, bandwidth cap or allowed hours, a
    DP node's "allow plain HTTP" and a cloud DP's folder. A new URL pins the certificate found
    there; a new key alone is sent only to the pinned one; a new folder is reached with the DP's
    own credentials first and rescanned after."""
    require(actor.user, "manage_dps")
    allowed = {"name", "site", "disabled", "bandwidth_limit", "allowed_hours"}
    if dp.is_central:
        allowed = {"name", "site"}
    elif dp.kind == "local":
        allowed |= {"url", "key", "allow_plain_http"}
    elif dp.kind == "cloud":
        allowed |= {"folder"}
        if dp.provider == "s3":
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
        site = changes["site"]  # null or "" is no site; 0, [] or false are not site names
        values["site"] = _clean(site, "site") if site is not None and site != "" else ""
    if "disabled" in changes:
        if not isinstance(changes["disabled"], bool):
            raise DepotError("disabled must be true or false")
        values["disabled"] = changes["disabled"]
    if "bandwidth_limit" in changes:
        values["bandwidth_limit"] = clean_bandwidth(changes["bandwidth_limit"])
    if "allowed_hours" in changes:
        values["allowed_hours"] = clean_hours(changes["allowed_hours"])
    plain = dp.allow_plain_http
    if "allow_plain_http" in changes:
        plain = values["allow_plain_http"] = clean_flag(changes["allow_plain_http"],
                                                        "allow_plain_http")
    if "url" in changes or "key" in changes:
        url = clean_url(changes.get("url", dp.url))
        if url != dp.url and "key" not in changes:
            # The stored key is only ever sent to the URL it was entered for.
            raise DepotError("a new URL needs the node's key entered again")
        key = clean_key(changes["key"]) if "key" in changes else secrets.dp_secret(dp)
        health = test_connection(url, key, dp.name, allow_plain_http=plain,
                                 expected_fingerprint=dp.tls_fingerprint if url == dp.url else None)
        values["url"], values["secret"] = url, secrets.encrypt(key)
        if health["tls_fingerprint"] != dp.tls_fingerprint:
            values["tls_fingerprint"] = health["tls_fingerprint"]
    if dp.kind == "local" and not plain and not values.get("url", dp.url).startswith("https://"):
        raise PlainHttpRefused(dp.name)
    if "access_key_id" in changes or "secret_access_key" in changes:
        from portal.services.cloud_dps import replace_s3_keys

        values["secret"] = replace_s3_keys(dp, changes)
    folder = None
    if "folder" in changes:
        from portal.services.cloud_dps import folder_of, moved_settings

        moved = moved_settings(dp, changes["folder"])
        if moved is not None:
            values["settings"], folder = moved, {"from": folder_of(dp)}
    for field, value in values.items():
        setattr(dp, field, value)
    details = {"folder": folder_of(dp), "previous_folder": folder["from"]} if folder else {}
    audit.record(actor, "dp.update", target=dp.name, **details,
                 fields=sorted({"secret": "key", "settings": "folder"}.get(f, f) for f in values))
    db.session.commit()
    if folder:  # what the DP holds is what the new folder holds
        jobs.start_job("rescan", actor, dp_id=dp.id, dedup_key=f"rescan:{dp.id}")
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
                status, reason, space = "offline", UNEXPECTED, None
            dp = db.session.get(DistributionPoint, checked.id)
            if dp is None:  # forgotten while it was being checked
                continue
            if space is not None:
                try:  # the backends read it typed; nothing else reaches the row
                    dp.free_bytes, dp.total_bytes = answers.space(*space)
                except DepotError as exc:
                    status, reason = "offline", exc.message
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
        return "offline", UNEXPECTED, None
