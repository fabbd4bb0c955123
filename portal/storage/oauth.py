"""What the OAuth providers (OneDrive, Google Drive, Dropbox) share: the consent round trip (the
authorisation code grant with PKCE S256, through Authlib's requests client), and API calls that
refresh the access token by themselves.

A refresh happens once at a time per DP, under the lock of the DP's `TokenStore` (the service
that opens the backend hands one down: a Redis lock, the token encrypted in the DP's row).
Microsoft rotates the refresh token on every use, so two workers refreshing at once would leave
one of them with a dead token. The winner stores the new token; a worker that waited on the lock
finds it there and uses it.
A refresh the provider refuses (revoked consent, an expired refresh token) raises NeedsAuth: the job
turns the DP `needs-auth`, and "Reconnect" runs the consent again for the same DP.
"""
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Protocol

import requests
from authlib.common.security import generate_token
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session

from portal.core.errors import DepotError, NeedsAuth, StorageRefused, StorageUnavailable
from portal.storage.answers import failure_detail, failure_words, host_port, unreachable_words
from portal.storage.base import StorageBackend, StorageEnv

CONNECT_TIMEOUT = 10
READ_TIMEOUT = 120
REFRESH_MARGIN = 60  # seconds before expiry an access token is renewed
REFRESH_TIMEOUT = 30  # seconds the token endpoint has to answer
LOCK_SECONDS = CONNECT_TIMEOUT + REFRESH_TIMEOUT + 60  # a renewal, its storing, and margin


class TokenStore(Protocol):
    """Where a saved OAuth DP's tokens live between calls, handed down by the service that opens
    the backend. A renewal happens under `lock()` (one at a time per DP, across workers: raises
    StorageUnavailable if another holds it too long); `load()` gives the stored token and a
    version of it; `save()` stores a renewed token only over that version, and says False when
    the stored one changed meanwhile (a Reconnect)."""

    def lock(self) -> ContextManager[None]: ...

    def load(self) -> tuple[dict | None, Any]: ...

    def save(self, token: dict, version: Any) -> bool: ...


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

    def _session(self, config, redirect_uri: str) -> OAuth2Session:
        client_id, client_secret = self.credentials(config)
        return OAuth2Session(client_id, client_secret, scope=self.scope, redirect_uri=redirect_uri,
                             token_endpoint_auth_method="client_secret_post",
                             code_challenge_method="S256")

    def consent_url(self, config, redirect_uri: str) -> tuple[str, str, str]:
        """The start of the consent round trip: (the provider's consent page URL, its `state`, the
        PKCE verifier (S256) to keep, with the redirect URI, until the provider's answer)."""
        verifier = generate_token(48)
        with self._session(config, redirect_uri) as session:
            url, state = session.create_authorization_url(
                self.authorize_url(config), state=generate_token(24), code_verifier=verifier,
                **self.authorize_params)
        return url, state, verifier

    def exchange_code(self, config, code: str, redirect_uri: str, verifier: str) -> dict:
        """The end of the round trip: the token for the code the provider answered with (OAuthError
        when the provider refuses it)."""
        with self._session(config, redirect_uri) as session:
            return dict(session.fetch_token(self.token_url(config), code=code,
                                            code_verifier=verifier,
                                            timeout=(CONNECT_TIMEOUT, READ_TIMEOUT)))


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

    def __init__(self, dp=None, *, secret: str | None = None, env: StorageEnv | None = None,
                 tokens: "TokenStore | None" = None, token: dict | None = None,
                 settings: dict | None = None, name: str | None = None):
        super().__init__(dp, env=env)
        if dp is not None:
            token, settings, name = json.loads(secret), dp.settings, dp.name
        self.token = token_record(token)
        self.settings = dict(settings or {})
        self.name = name or f"the {self.provider.title} account"
        self.config = self.env.settings
        self.tokens = tokens  # None: a DP not saved yet, whose renewed token lives only here
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
                where = f"{self.provider.title} at {host_port(url)}"
                raise StorageUnavailable(
                    f"{self.name}: {unreachable_words(exc, where, timeout)}",
                    detail=failure_detail(exc, f"{method} {host_port(url)}")) from None
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
            if self.tokens is None:
                self._refresh_now()
                return
            with self.tokens.lock():
                stored, version = self.tokens.load()
                if stored and stored["access_token"] != stale_access_token:
                    self.token = token_record(stored)  # renewed by another worker, or reconnected
                    if not self._expiring():
                        return
                self._refresh_now()
                if not self.tokens.save(self.token, version):  # reconnected: the new consent wins
                    self.token = token_record(self.tokens.load()[0] or self.token)

    def _refresh_now(self) -> None:
        refresh_token = self.token.get("refresh_token")
        if not refresh_token:
            raise NeedsAuth(f"{self.provider.title} gave {self.name} no refresh token: "
                            "reconnect it")
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
                raise StorageRefused(
                    f"{self.provider.title} does not accept Depot's app registration "
                    f"({exc.error}): check {self.provider.setting}_CLIENT_ID and _CLIENT_SECRET"
                ) from None
            raise StorageUnavailable(f"{self.provider.title} did not renew {self.name}'s access "
                                     f"now ({exc.error})") from None
        except (requests.RequestException, ValueError) as exc:
            raise StorageUnavailable(f"{self.provider.title} did not renew {self.name}'s access: "
                                     + ("its answer was not JSON" if isinstance(exc, ValueError)
                                        and not isinstance(exc, requests.RequestException)
                                        else failure_words(exc))) from None
        finally:
            session.close()
        record = token_record(new)
        if not record["refresh_token"]:  # Google keeps the refresh token it gave first
            record["refresh_token"] = refresh_token
        self.token = record

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
