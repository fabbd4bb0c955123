"""Cloud DPs: an S3-compatible bucket (keys entered once, tested before saving) or a OneDrive,
Google Drive or Dropbox account connected through the provider's consent page.

The consent round trip: `start_consent` gives the provider's consent page (PKCE S256) and what
to remember under its fresh `state` (the console keeps it in the signed session); `finish_consent`
takes the provider's answer only for a consent this person started, exchanges the code, asks the account who it is, creates the DP's folders and the DP (or gives an existing DP its
new tokens: "Reconnect" keeps the DP and its inventory) and starts the first rescan, which finds
what an older console already put there.
"""
import json
from typing import NamedTuple
from urllib.parse import urlsplit

from authlib.integrations.base_client import OAuthError
from flask import current_app
from sqlalchemy import func, select

from portal.core.errors import Conflict, DepotError, NotFound
from portal.core.names import clean_name
from portal.extensions import db
from portal.models import DistributionPoint, Job, utcnow
from portal.models.jobs import ACTIVE_STATES
from portal.services import audit, jobs, notifications, secrets
from portal.services.actors import Actor
from portal.services.backends import open_storage, probe_storage, token_lock
from portal.services.permissions import require
from portal.storage import CLOUD_PROVIDERS
from portal.storage.answers import failure_words
from portal.storage.dpnode import NodeUnreachable, check_address
from portal.storage.oauth import PROVIDERS, token_record


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
        if "@" in parts.netloc:
            raise DepotError("endpoint URL must not carry a user name or password (user:pass@): "
                             "enter the keys in their own fields")
        try:  # a name that does not resolve fails at the first call, in the S3 client's words
            check_address(endpoint, "the S3 endpoint",
                          current_app.config["DEPOT_ALLOW_LINK_LOCAL_DPS"])
        except NodeUnreachable:
            pass
    region = (values.get("region") or "").strip() or "us-east-1"
    if len(region) > 40 or not all(c.isalnum() or c == "-" for c in region):
        raise DepotError("region must look like us-east-1")
    bucket = (values.get("bucket") or "").strip()
    if not 3 <= len(bucket) <= 63 or not all(c.isalnum() or c in "-." for c in bucket) \
            or bucket != bucket.lower():
        raise DepotError("bucket must be an S3 bucket name: 3 to 63 lower-case letters, digits, "
                         "dots and hyphens")
    prefix = clean_prefix(values.get("prefix"))
    key_id = (values.get("access_key_id") or "").strip()
    secret = (values.get("secret_access_key") or "").strip()
    if not key_id or not secret:
        raise DepotError("access key id and secret access key are both needed")
    return ({"endpoint_url": endpoint, "region": region, "bucket": bucket, "prefix": prefix},
            {"access_key_id": key_id, "secret_access_key": secret})


def clean_prefix(value) -> str:
    """An S3 prefix (the DP's folder in its bucket) without empty parts: 'depot/dp1', or ''."""
    if value is not None and not isinstance(value, str):
        raise DepotError("prefix must be a folder path like depot/dp1")
    prefix = "/".join(part for part in (value or "").strip().split("/") if part)
    if len(prefix) > 200 or any(ord(c) < 32 for c in prefix) or ".." in prefix.split("/"):
        raise DepotError("prefix must be a folder path like depot/dp1")
    return prefix


def clean_folder(value) -> str:
    """The folder of an OAuth DP in its account: 'Depot' (when none is given) or 'IT/Depot'."""
    folder = _optional(value, "folder", 200) or "Depot"
    if any(part in ("", ".", "..") for part in folder.strip("/").split("/")):
        raise DepotError("folder must be a folder path like Depot or IT/Depot")
    return folder.strip("/")


def test_s3(values: dict, name: str | None = None) -> dict:
    """List, write and delete a probe object with what was entered; saving nothing."""
    settings, credentials = clean_s3(values)
    with probe_storage("cloud", "s3", settings=settings, credentials=credentials,
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
    with probe_storage("cloud", "s3", settings=settings, credentials=credentials,
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
    with probe_storage("cloud", "s3", settings=settings, credentials=credentials,
                       name=dp.name) as backend:
        backend.check()
    return secrets.encrypt(json.dumps(credentials))


def folder_of(dp: DistributionPoint) -> str:
    """Where a cloud DP keeps its libraries in its account: an S3 DP's prefix ('' for the bucket's
    top), else its folder (Depot unless another was given)."""
    if dp.provider == "s3":
        return clean_prefix(dp.settings.get("prefix"))
    return (dp.settings.get("folder") or "Depot").strip("/")


def moved_settings(dp: DistributionPoint, value) -> dict | None:
    """A cloud DP's settings with its folder (an S3 DP: its prefix) moved to `value`, checked as
    when the DP was added and reached there with the DP's own keys or tokens (no new consent):
    an OAuth DP's library folders are created there, an S3 DP's probe object written and
    deleted. None when the folder stays. Refused while copies or other work run at the DP, which
    would finish in the old folder."""
    key = "prefix" if dp.provider == "s3" else "folder"
    folder = clean_prefix(value) if dp.provider == "s3" else clean_folder(value)
    if folder == folder_of(dp):
        return None
    busy = db.session.scalar(select(func.count()).select_from(Job).where(
        Job.dp_id == dp.id, Job.state.in_(ACTIVE_STATES), Job.kind != "rescan"))
    if busy:
        raise Conflict(f"{busy} job(s) are working at {dp.name}: let them finish or cancel them "
                       "before moving its folder", code="dp_busy")
    settings = {**dp.settings, key: folder}
    if dp.provider == "s3":
        with probe_storage("cloud", "s3", settings=settings, name=dp.name,
                           credentials=json.loads(secrets.dp_secret(dp))) as backend:
            backend.check()
    else:
        with open_storage(dp) as backend:
            backend.settings = settings
            backend.ensure_layout()
    return settings


# --- OAuth providers -------------------------------------------------------------------------

class ProviderChoice(NamedTuple):
    """A provider as Add cloud offers it: `setting` names what enables one not set up here."""

    key: str
    title: str
    configured: bool
    setting: str | None


def _settings_needed(provider: str) -> str:
    prefix = PROVIDERS[provider].setting
    return f"{prefix}_CLIENT_ID and {prefix}_CLIENT_SECRET"


def provider_configured(provider: str) -> bool:
    """Is the provider's OAuth client (id and secret) set on this server? S3 needs none."""
    if provider not in PROVIDERS:
        return provider in CLOUD_PROVIDERS
    prefix = PROVIDERS[provider].setting
    config = current_app.config
    return bool(config.get(f"{prefix}_CLIENT_ID") and config.get(f"{prefix}_CLIENT_SECRET"))


def provider_choices() -> list[ProviderChoice]:
    """Every provider Add cloud knows, those without their OAuth client set greyed with the
    settings that would enable them (so their consent page is never opened to fail)."""
    return [ProviderChoice(key, title, provider_configured(key),
                           None if provider_configured(key) else _settings_needed(key))
            for key, title in CLOUD_PROVIDERS.items()]


def require_configured(provider: str) -> None:
    """Refuse, naming the settings to set, a consent with a provider not set up here."""
    if not provider_configured(provider):
        raise DepotError(f"{provider_title(provider)} is not set up on this server: set "
                         f"{_settings_needed(provider)} (see README, Cloud DPs)",
                         code="provider_not_configured")


def start_consent(actor: Actor, provider: str, values: dict, redirect_uri: str,
                  dp: DistributionPoint | None = None) -> tuple[str, str, dict]:
    """The start of a consent for a new DP (name, site, folder) or to reconnect `dp`: (the
    provider's consent page URL, the round trip's `state`, what the caller keeps under that state
    until the provider answers: what was entered, the redirect URI and the PKCE verifier)."""
    require(actor.user, "manage_dps")
    title = provider_title(provider)
    if provider not in PROVIDERS:
        raise DepotError(f"{title} is added with keys, not with a consent page")
    require_configured(provider)
    if dp is not None:
        if dp.provider != provider:
            raise DepotError(f"{dp.name} is not a {title} DP")
        pending = {"dp_id": dp.id}
    else:
        name = _clean(values.get("name"), "name")
        _unique_name(name)
        pending = {"name": name, "site": _optional(values.get("site"), "site"),
                   "folder": clean_folder(values.get("folder"))}
    url, state, verifier = PROVIDERS[provider].consent_url(current_app.config, redirect_uri)
    return url, state, {"provider": provider, "user_id": actor.user.id,
                        "redirect_uri": redirect_uri, "verifier": verifier, **pending}


class ConsentRefused(DepotError):
    code, status = "consent_failed", 400


def finish_consent(actor: Actor, provider: str, pending: dict | None,
                   args) -> tuple[DistributionPoint, bool]:
    """Take the provider's answer (`args`) to the consent `pending` (what `start_consent` gave
    for the answer's state, None if none): (the DP, True if it was created). Nothing is created
    unless the consent was started by this person for this provider and the code exchange
    succeeds."""
    require(actor.user, "manage_dps")
    title = provider_title(provider)
    if not isinstance(pending, dict) or pending.get("provider") != provider \
            or pending.get("user_id") != actor.user.id:
        raise ConsentRefused(f"this answer from {title} does not belong to a connection started "
                             "here (the state does not match); nothing was created. Start again "
                             "from Add cloud.")
    if args.get("error"):
        raise ConsentRefused(f"{title} did not give access: {args.get('error')}"
                             + (f" ({args.get('error_description')})"
                                if args.get("error_description") else ""))
    if not args.get("code"):
        raise ConsentRefused(f"{title} answered without a code; nothing was created. Start "
                             "again from Add cloud.")
    try:
        token = PROVIDERS[provider].exchange_code(current_app.config, args["code"],
                                                  pending["redirect_uri"], pending["verifier"])
    except OAuthError as exc:
        raise ConsentRefused(f"{title} refused the sign-in: {exc.error}"
                             + (f" ({exc.description})" if exc.description else "")) from None
    except Exception as exc:  # noqa: BLE001 - the token endpoint did not answer sensibly
        raise DepotError(f"{title} could not be reached to finish the sign-in: "
                         f"{failure_words(exc)}", status=502) from None
    if pending.get("dp_id") is not None:
        return _reconnect(actor, provider, pending["dp_id"], token), False
    return _create(actor, provider, pending, token), True


def _create(actor: Actor, provider: str, pending: dict, token: dict) -> DistributionPoint:
    _unique_name(pending["name"])
    settings = {"folder": pending["folder"]}
    with probe_storage("cloud", provider, token=token, settings=settings,
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
    with probe_storage("cloud", provider, token=token, settings=dp.settings,
                       name=dp.name) as backend:
        account = backend.account()
    if dp.settings.get("account_id") and str(account["id"]) != dp.settings["account_id"]:
        raise Conflict(f"{dp.name} holds the files of {dp.settings.get('account')}, but the "
                       f"sign-in was as {account['name']}: sign in as "
                       f"{dp.settings.get('account')}, or add a new DP for this account")
    # Under the DP's token lock: a worker renewing the old token meanwhile must not write it
    # over the new one (it stores only over the token it read).
    with token_lock(dp.id):
        dp.secret = secrets.encrypt(json.dumps(token_record(token)))
        notifications.set_dp_status(dp, "online")
        dp.checked_at = utcnow()
        audit.record(actor, "dp.reconnect", target=dp.name, provider=provider,
                     account=account["name"])
        db.session.commit()
    jobs.start_job("rescan", actor, dp_id=dp.id, dedup_key=f"rescan:{dp.id}")
    return dp
