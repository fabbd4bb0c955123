"""What the OAuth providers (OneDrive, Google Drive, Dropbox) share: the consent round trip through
Authlib's Flask client, tokens encrypted in the DP's row, and API calls that refresh the access
token by themselves.

A refresh happens once at a time per DP, under a Redis lock: Microsoft rotates the refresh token on
every use, so two workers refreshing at once would leave one of them with a dead token. The winner
writes the new token to the database; a worker that waited on the lock finds it there and uses it.
A refresh the provider refuses (revoked consent, an expired refresh token) raises NeedsAuth: the job
turns the DP `needs-auth`, and "Reconnect" runs the consent again for the same DP.
"""
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from flask import current_app
from sqlalchemy import select, update

from portal.services import DepotError
from portal.storage.base import NeedsAuth, StorageBackend, StorageRefused, StorageUnavailable

CONNECT_TIMEOUT = 10
READ_TIMEOUT = 120
REFRESH_MARGIN = 60  # seconds before expiry an access token is renewed
REFRESH_TIMEOUT = 30  # seconds the token endpoint has to answer
LOCK_SECONDS = CONNECT_TIMEOUT + REFRESH_TIMEOUT + 60  # a renewal, its storing, and margin


def refresh_lock(dp_id: int) -> str:
    """The Redis lock under which a DP's tokens are renewed or replaced (Reconnect)."""
    return f"depot:oauth-refresh:{dp_id}"


@dataclass(frozen=True)
class OAuthProvider:
    """One OAuth provider: how its consent and token endpoints are reached and what to ask for.
    `setting` is the prefix of its settings (`<setting>_CLIENT_ID`, `<setting>_CLIENT_SECRET`)."""

    name: str
    title: str
    setting: str
    authorize_url: Callable[[dict], str]
    token_url: Callable[[dict], str]
    scope: str
    authorize_params: dict = field(default_factory=dict)

    def credentials(self, config) -> tuple[str, str]:
        client_id = config.get(f"{self.setting}_CLIENT_ID")
        client_secret = config.get(f"{self.setting}_CLIENT_SECRET")
        if not client_id or not client_secret:
            raise DepotError(f"{self.title} is not set up on this server: set "
                             f"{self.setting}_CLIENT_ID and {self.setting}_CLIENT_SECRET "
                             "(see README, Cloud DPs)", code="provider_not_configured")
        return client_id, client_secret

    def client(self):
        """Authlib's Flask client for the consent round trip (state and PKCE S256 kept in the
        signed session cookie)."""
        from portal.extensions import oauth_registry

        registry = oauth_registry()
        existing = registry.create_client(self.name)
        if existing is not None:
            return existing
        config = current_app.config
        client_id, client_secret = self.credentials(config)
        return registry.register(
            self.name, client_id=client_id, client_secret=client_secret,
            authorize_url=self.authorize_url(config), access_token_url=self.token_url(config),
            client_kwargs={"scope": self.scope, "code_challenge_method": "S256",
                           "token_endpoint_auth_method": "client_secret_post",
                           "timeout": (CONNECT_TIMEOUT, READ_TIMEOUT)})


def retry_after(response: requests.Response) -> float | None:
    """The wait a throttling provider asks for (Retry-After in seconds), at most an hour."""
    value = response.headers.get("Retry-After", "")
    return min(float(value), 3600.0) if value.strip().isdigit() else None


def token_record(token: dict) -> dict:
    """What is kept of a token response (encrypted in the DP's `secret`)."""
    expires_at = token.get("expires_at")
    if expires_at is None and token.get("expires_in") is not None:
        expires_at = int(time.time()) + int(token["expires_in"])
    return {"access_token": token["access_token"], "refresh_token": token.get("refresh_token"),
            "token_type": token.get("token_type", "Bearer"), "expires_at": expires_at}


class OAuthStorage(StorageBackend):
    """A DP in a cloud account reached with OAuth tokens. Subclasses give `provider`, `account()`
    and the storage interface in the provider's own API."""

    provider: OAuthProvider
    hashing = "reports"

    def __init__(self, dp=None, *, token: dict | None = None, settings: dict | None = None,
                 name: str | None = None):
        super().__init__(dp)
        from portal.extensions import db, get_redis
        from portal.services import secrets

        if dp is not None:
            token, settings, name = json.loads(secrets.decrypt(dp.secret)), dp.settings, dp.name
        self.token = token_record(token)
        self.settings = dict(settings or {})
        self.name = name or f"the {self.provider.title} account"
        self.config = current_app.config
        self._app = current_app._get_current_object()
        self._engine = db.engine if dp is not None else None  # threads write through the engine
        self._redis = get_redis() if dp is not None else None
        self._dp_id = dp.id if dp is not None else None
        self._refreshing = threading.Lock()
        self.http = requests.Session()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"  # never the tokens

    @property
    def folder(self) -> str:
        """The folder in the account that holds the six library folders."""
        return self.settings.get("folder") or "Depot"

    # --- calls -----------------------------------------------------------------------------

    def request(self, method: str, url: str, *, expect=(200,), auth: bool = True,
                timeout: float = READ_TIMEOUT, **kw) -> requests.Response:
        """Call the provider. With `auth`, the access token is renewed first when it is about to
        expire, and once more if the provider answers 401. Without `auth` (an upload session URL,
        which is itself the credential) no token is sent. Connection failures, 429 and 5xx raise
        StorageUnavailable; any other status not in `expect` raises StorageRefused with the
        provider's message."""
        for attempt in (1, 2):
            headers = dict(kw.pop("headers", None) or {})
            if auth:
                if attempt == 1 and self._expiring():
                    self.refresh(self.token["access_token"])
                headers["Authorization"] = f"Bearer {self.token['access_token']}"
            try:
                response = self.http.request(method, url, headers=headers, allow_redirects=False,
                                             timeout=(CONNECT_TIMEOUT, timeout), **kw)
            except requests.RequestException as exc:
                raise StorageUnavailable(f"{self.provider.title} does not answer for {self.name}: "
                                         f"{type(exc).__name__}") from None
            if auth and response.status_code == 401 and attempt == 1:
                kw["headers"] = {k: v for k, v in headers.items() if k != "Authorization"}
                self.refresh(headers["Authorization"][7:])
                continue
            break
        if response.status_code in expect:
            return response
        message = self.error_message(response)
        if response.status_code == 429 or response.status_code >= 500:
            raise StorageUnavailable(f"{self.provider.title} is busy or failing for {self.name}: "
                                     f"{message}", retry_after=retry_after(response))
        if response.status_code == 401:
            raise NeedsAuth(f"{self.provider.title} no longer accepts {self.name}'s access: "
                            f"reconnect it ({message})")
        raise StorageRefused(f"{self.provider.title} refused for {self.name}: {message}")

    def error_message(self, response: requests.Response) -> str:
        """The provider's own words for an error answer (subclasses know its shape)."""
        try:
            body = response.json()
        except ValueError:
            return f"HTTP {response.status_code}"
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            return str(error.get("message") or error.get("code") or error)[:300]
        if error:
            return str(body.get("error_description") or body.get("error_summary") or error)[:300]
        return f"HTTP {response.status_code}"

    # --- tokens ----------------------------------------------------------------------------

    def _expiring(self) -> bool:
        expires_at = self.token.get("expires_at")
        return expires_at is not None and expires_at - REFRESH_MARGIN <= time.time()

    def refresh(self, stale_access_token: str) -> None:
        """Renew the access token that `stale_access_token` was, once per DP at a time."""
        with self._refreshing:
            if self.token["access_token"] != stale_access_token and not self._expiring():
                return  # another thread of this run renewed it meanwhile
            if self._dp_id is None:
                self._refresh_now()
                return
            # The lock outlives the slowest renewal (connect + read timeouts), so a second worker
            # never renews with the same, by then spent, refresh token.
            lock = self._redis.lock(refresh_lock(self._dp_id), timeout=LOCK_SECONDS,
                                    blocking_timeout=LOCK_SECONDS + 30)
            if not lock.acquire():
                raise StorageUnavailable(f"another worker is renewing {self.name}'s access and "
                                         "did not finish")
            try:
                stored, cipher = self._stored_token()
                if stored and stored["access_token"] != stale_access_token:
                    self.token = stored  # renewed by another worker, or reconnected: use it
                    if not self._expiring():
                        return
                self._refresh_now()
                if not self._store_token(cipher):  # reconnected meanwhile: the new consent wins
                    self.token = self._stored_token()[0] or self.token
            finally:
                try:
                    lock.release()
                except Exception:  # noqa: BLE001 - the lock expired; the token is stored anyway
                    pass

    def _refresh_now(self) -> None:
        refresh_token = self.token.get("refresh_token")
        if not refresh_token:
            raise NeedsAuth(f"{self.provider.title} gave {self.name} no refresh token: reconnect it")
        client_id, client_secret = self.provider.credentials(self.config)
        session = OAuth2Session(client_id, client_secret,
                                token_endpoint_auth_method="client_secret_post")
        try:
            new = session.refresh_token(self.provider.token_url(self.config),
                                        refresh_token=refresh_token,
                                        timeout=(CONNECT_TIMEOUT, REFRESH_TIMEOUT))
        except OAuthError as exc:
            if exc.error == "invalid_grant":  # revoked, expired or already used: a person must act
                raise NeedsAuth(f"{self.provider.title} refused to renew {self.name}'s access "
                                f"({exc.error}): reconnect it") from None
            if exc.error in ("invalid_client", "unauthorized_client"):
                raise StorageRefused(f"{self.provider.title} does not accept Depot's app "
                                     f"registration ({exc.error}): check "
                                     f"{self.provider.setting}_CLIENT_ID and _CLIENT_SECRET") from None
            raise StorageUnavailable(f"{self.provider.title} did not renew {self.name}'s access "
                                     f"now ({exc.error})") from None
        except (requests.RequestException, ValueError) as exc:
            raise StorageUnavailable(f"{self.provider.title} did not renew {self.name}'s access: "
                                     f"{type(exc).__name__}") from None
        finally:
            session.close()
        record = token_record(new)
        if not record["refresh_token"]:  # Google keeps the refresh token it gave first
            record["refresh_token"] = refresh_token
        self.token = record

    def _stored_token(self) -> tuple[dict | None, str | None]:
        """The token stored for the DP now, and its ciphertext as stored."""
        from portal.models import DistributionPoint
        from portal.services import secrets

        with self._app.app_context(), self._engine.connect() as conn:
            stored = conn.scalar(select(DistributionPoint.secret).where(
                DistributionPoint.id == self._dp_id))
            return (token_record(json.loads(secrets.decrypt(stored))) if stored else None), stored

    def _store_token(self, expected: str | None) -> bool:
        """Store the renewed token unless the stored one changed since it was read (a Reconnect);
        a busy database is waited for: a rotated refresh token must not be lost. False when the
        stored token changed."""
        from sqlalchemy.exc import OperationalError

        from portal.models import DistributionPoint
        from portal.services import secrets

        for attempt in range(1, 6):
            try:
                with self._app.app_context(), self._engine.begin() as conn:
                    done = conn.execute(
                        update(DistributionPoint)
                        .where(DistributionPoint.id == self._dp_id,
                               DistributionPoint.secret == expected)
                        .values(secret=secrets.encrypt(json.dumps(self.token))))
                    return done.rowcount == 1
            except OperationalError:
                if attempt == 5:
                    raise StorageUnavailable(f"the renewed access of {self.name} could not be "
                                             "stored: the database is busy") from None
                time.sleep(attempt)
        return False

    # --- what each provider gives ----------------------------------------------------------

    def account(self) -> dict:
        """{"id": ..., "name": ...} of the account the token belongs to."""
        raise NotImplementedError


PROVIDERS = {p.name: p for p in (
    OAuthProvider(
        "onedrive", "OneDrive", "DEPOT_ONEDRIVE",
        authorize_url=lambda c: c["DEPOT_ONEDRIVE_AUTH_URL"].rstrip("/") + "/authorize",
        token_url=lambda c: c["DEPOT_ONEDRIVE_AUTH_URL"].rstrip("/") + "/token",
        scope="offline_access Files.ReadWrite User.Read"),
    OAuthProvider(
        "gdrive", "Google Drive", "DEPOT_GDRIVE",
        authorize_url=lambda c: c["DEPOT_GDRIVE_AUTH_URL"],
        token_url=lambda c: c["DEPOT_GDRIVE_TOKEN_URL"],
        # drive.file: only what Depot created or the admin opened with it, not the whole Drive.
        scope="https://www.googleapis.com/auth/drive.file openid email",
        authorize_params={"access_type": "offline", "prompt": "consent"}),
    OAuthProvider(
        "dropbox", "Dropbox", "DEPOT_DROPBOX",
        authorize_url=lambda c: c["DEPOT_DROPBOX_AUTH_URL"],
        token_url=lambda c: c["DEPOT_DROPBOX_TOKEN_URL"],
        scope="account_info.read files.metadata.read files.metadata.write files.content.read "
              "files.content.write",
        authorize_params={"token_access_type": "offline"}),
)}
