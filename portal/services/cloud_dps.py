"""Cloud DPs: an S3-compatible bucket (keys entered once, tested before saving) or a OneDrive,
Google Drive or Dropbox account connected through the provider's consent page.

The consent round trip: `start_consent` remembers what the admin entered under a fresh `state`
in the signed session and sends the browser to the provider (PKCE S256, through Authlib's Flask
client); `finish_consent` takes the provider's answer only for a state it started, exchanges the
code, asks the account who it is, creates the DP's folders and the DP (or gives an existing DP its
new tokens: "Reconnect" keeps the DP and its inventory) and starts the first rescan, which finds
what an older console already put there.
"""
import json
import secrets as token_generator
from urllib.parse import urlsplit

from authlib.integrations.base_client import OAuthError
from flask import session
from sqlalchemy import select

from portal.extensions import db, get_redis
from portal.models import DistributionPoint, utcnow
from portal.services import Conflict, DepotError, NotFound, audit, jobs, notifications, secrets
from portal.services.actors import Actor
from portal.services.names import clean_name
from portal.services.permissions import require
from portal.storage import CLOUD_PROVIDERS, backend_class
from portal.storage.oauth import LOCK_SECONDS, PROVIDERS, refresh_lock, token_record

PENDING_KEY = "depot_consent"
MAX_PENDING = 5  # consents started and not finished, per browser session


def _clean(value, field: str, max_length: int = 100) -> str:
    try:
        return clean_name(value, field, max_length)
    except ValueError as exc:
        raise DepotError(str(exc)) from None


def _optional(value, field: str, max_length: int = 100) -> str:
    return _clean(value, field, max_length) if value not in (None, "") else ""


def _unique_name(name: str, dp_id: int | None = None) -> None:
    query = select(DistributionPoint.id).where(DistributionPoint.name == name)
    if dp_id is not None:
        query = query.where(DistributionPoint.id != dp_id)
    if db.session.scalar(query):
        raise Conflict(f"a distribution point named {name} already exists")


def provider_title(provider: str) -> str:
    if provider not in CLOUD_PROVIDERS:
        raise DepotError(f"unknown provider {provider!r}: choose one of "
                         f"{', '.join(sorted(CLOUD_PROVIDERS))}")
    return CLOUD_PROVIDERS[provider]


# --- S3-compatible ---------------------------------------------------------------------------

def clean_s3(values: dict) -> tuple[dict, dict]:
    """(settings, credentials) of an S3-compatible DP from what was entered."""
    endpoint = (values.get("endpoint_url") or "").strip().rstrip("/")
    if endpoint:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise DepotError("endpoint URL must look like https://s3.eu-central-1.wasabisys.com "
                             "(empty for AWS S3)")
    region = (values.get("region") or "").strip() or "us-east-1"
    if len(region) > 40 or not all(c.isalnum() or c == "-" for c in region):
        raise DepotError("region must look like us-east-1")
    bucket = (values.get("bucket") or "").strip()
    if not 3 <= len(bucket) <= 63 or not all(c.isalnum() or c in "-." for c in bucket) \
            or bucket != bucket.lower():
        raise DepotError("bucket must be an S3 bucket name: 3 to 63 lower-case letters, digits, "
                         "dots and hyphens")
    prefix = "/".join(part for part in (values.get("prefix") or "").strip().split("/") if part)
    if len(prefix) > 200 or any(ord(c) < 32 for c in prefix) or ".." in prefix.split("/"):
        raise DepotError("prefix must be a folder path like depot/dp1")
    key_id = (values.get("access_key_id") or "").strip()
    secret = (values.get("secret_access_key") or "").strip()
    if not key_id or not secret:
        raise DepotError("access key id and secret access key are both needed")
    return ({"endpoint_url": endpoint, "region": region, "bucket": bucket, "prefix": prefix},
            {"access_key_id": key_id, "secret_access_key": secret})


def test_s3(values: dict, name: str | None = None) -> dict:
    """List, write and delete a probe object with what was entered; saving nothing."""
    settings, credentials = clean_s3(values)
    with backend_class("cloud", "s3")(settings=settings, credentials=credentials,
                                      name=name or settings["bucket"]) as backend:
        backend.check()
    return {"bucket": settings["bucket"], "prefix": settings["prefix"]}


def add_s3(actor: Actor, values: dict) -> DistributionPoint:
    """Add an S3-compatible DP once its connection test passes; its first rescan starts at once."""
    require(actor.user, "manage_dps")
    name = _clean(values.get("name"), "name")
    site = _optional(values.get("site"), "site")
    _unique_name(name)
    settings, credentials = clean_s3(values)
    with backend_class("cloud", "s3")(settings=settings, credentials=credentials,
                                      name=name) as backend:
        backend.check()
    dp = DistributionPoint(name=name, kind="cloud", provider="s3", site=site,
                           url=settings["endpoint_url"] or None,
                           secret=secrets.encrypt(json.dumps(credentials)), status="online",
                           checked_at=utcnow())
    dp.settings = settings
    db.session.add(dp)
    db.session.flush()
    audit.record(actor, "dp.create", target=name, kind="cloud", provider="s3",
                 bucket=settings["bucket"], prefix=settings["prefix"], site=site)
    db.session.commit()
    jobs.start_job("rescan", actor, dp_id=dp.id, dedup_key=f"rescan:{dp.id}")
    return dp


def replace_s3_keys(dp: DistributionPoint, values: dict) -> str:
    """New keys for an S3 DP, tested before they replace the old ones: the encrypted secret."""
    settings, credentials = clean_s3({**dp.settings, **values})
    with backend_class("cloud", "s3")(settings=settings, credentials=credentials,
                                      name=dp.name) as backend:
        backend.check()
    return secrets.encrypt(json.dumps(credentials))


# --- OAuth providers -------------------------------------------------------------------------

def start_consent(actor: Actor, provider: str, values: dict, redirect_uri: str,
                  dp: DistributionPoint | None = None):
    """The redirect to the provider's consent page, for a new DP (name, site, folder) or to
    reconnect `dp`. What was entered waits in the session under the request's `state`."""
    require(actor.user, "manage_dps")
    title = provider_title(provider)
    if provider not in PROVIDERS:
        raise DepotError(f"{title} is added with keys, not with a consent page")
    if dp is not None:
        if dp.provider != provider:
            raise DepotError(f"{dp.name} is not a {title} DP")
        pending = {"dp_id": dp.id}
    else:
        name = _clean(values.get("name"), "name")
        _unique_name(name)
        folder = _optional(values.get("folder"), "folder", 200) or "Depot"
        if any(part in ("", ".", "..") for part in folder.strip("/").split("/")):
            raise DepotError("folder must be a folder path like Depot or IT/Depot")
        pending = {"name": name, "site": _optional(values.get("site"), "site"),
                   "folder": folder.strip("/")}
    client = PROVIDERS[provider].client()
    state = token_generator.token_urlsafe(24)
    rv = client.create_authorization_url(redirect_uri, state=state,
                                         **PROVIDERS[provider].authorize_params)
    client.save_authorize_data(redirect_uri=redirect_uri, **rv)
    waiting = dict(session.get(PENDING_KEY) or {})
    while len(waiting) >= MAX_PENDING:  # consents started and abandoned: forget the oldest
        old_state = next(iter(waiting))
        _forget_state(waiting.pop(old_state)["provider"], old_state)
    waiting[state] = {"provider": provider, "user_id": actor.user.id, **pending}
    session[PENDING_KEY] = waiting
    return rv["url"]


def _forget_state(provider: str, state: str) -> None:
    """Drop what Authlib keeps in the session cookie for a consent that will not finish (its
    redirect URI and PKCE verifier), so abandoned consents cannot outgrow the cookie."""
    if provider in PROVIDERS:
        PROVIDERS[provider].client().framework.clear_state_data(session, state)


class ConsentRefused(DepotError):
    code, status = "consent_failed", 400


def finish_consent(actor: Actor, provider: str, args) -> tuple[DistributionPoint, bool]:
    """Take the provider's answer: (the DP, True if it was created). Nothing is created unless the
    `state` is one this session started for this provider and the code exchange succeeds."""
    require(actor.user, "manage_dps")
    title = provider_title(provider)
    waiting = dict(session.get(PENDING_KEY) or {})
    pending = waiting.pop(args.get("state") or "", None)
    session[PENDING_KEY] = waiting
    if pending is None or pending["provider"] != provider or pending["user_id"] != actor.user.id:
        raise ConsentRefused(f"this answer from {title} does not belong to a connection started "
                             "here (the state does not match); nothing was created. Start again "
                             "from Add cloud.")
    if args.get("error"):
        _forget_state(provider, args.get("state"))
        raise ConsentRefused(f"{title} did not give access: {args.get('error')}"
                             + (f" ({args.get('error_description')})"
                                if args.get("error_description") else ""))
    try:
        token = PROVIDERS[provider].client().authorize_access_token()
    except OAuthError as exc:
        raise ConsentRefused(f"{title} refused the sign-in: {exc.error}"
                             + (f" ({exc.description})" if exc.description else "")) from None
    except Exception as exc:  # noqa: BLE001 - the token endpoint did not answer sensibly
        raise DepotError(f"{title} could not be reached to finish the sign-in: "
                         f"{type(exc).__name__}", status=502) from None
    if pending.get("dp_id") is not None:
        return _reconnect(actor, provider, pending["dp_id"], token), False
    return _create(actor, provider, pending, token), True


def _create(actor: Actor, provider: str, pending: dict, token: dict) -> DistributionPoint:
    _unique_name(pending["name"])
    settings = {"folder": pending["folder"]}
    with backend_class("cloud", provider)(token=token, settings=settings,
                                          name=pending["name"]) as backend:
        account = backend.account()
        settings.update(account=account["name"], account_id=str(account["id"]))
        backend.settings = settings
        backend.ensure_layout()
    dp = DistributionPoint(name=pending["name"], kind="cloud", provider=provider,
                           site=pending["site"], status="online", checked_at=utcnow(),
                           secret=secrets.encrypt(json.dumps(token_record(token))))
    dp.settings = settings
    db.session.add(dp)
    db.session.flush()
    audit.record(actor, "dp.create", target=dp.name, kind="cloud", provider=provider,
                 account=account["name"], folder=settings["folder"], site=dp.site)
    db.session.commit()
    jobs.start_job("rescan", actor, dp_id=dp.id, dedup_key=f"rescan:{dp.id}")
    return dp


def _reconnect(actor: Actor, provider: str, dp_id: int, token: dict) -> DistributionPoint:
    dp = db.session.get(DistributionPoint, dp_id)
    if dp is None:
        raise NotFound("the distribution point to reconnect is gone")
    with backend_class("cloud", provider)(token=token, settings=dp.settings,
                                          name=dp.name) as backend:
        account = backend.account()
    if dp.settings.get("account_id") and str(account["id"]) != dp.settings["account_id"]:
        raise Conflict(f"{dp.name} holds the files of {dp.settings.get('account')}, but the "
                       f"sign-in was as {account['name']}: sign in as "
                       f"{dp.settings.get('account')}, or add a new DP for this account")
    # Under the DP's token lock: a worker renewing the old token meanwhile must not write it
    # over the new one (it stores only over the token it read).
    with get_redis().lock(refresh_lock(dp.id), timeout=LOCK_SECONDS,
                          blocking_timeout=LOCK_SECONDS + 30):
        dp.secret = secrets.encrypt(json.dumps(token_record(token)))
        notifications.set_dp_status(dp, "online")
        dp.checked_at = utcnow()
        audit.record(actor, "dp.reconnect", target=dp.name, provider=provider,
                     account=account["name"])
        db.session.commit()
    jobs.start_job("rescan", actor, dp_id=dp.id, dedup_key=f"rescan:{dp.id}")
    return dp
