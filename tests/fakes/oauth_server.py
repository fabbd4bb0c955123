"""A local OAuth 2 provider for tests: the authorization-code flow with PKCE (S256), client
authentication, single-use codes, access tokens that expire, refresh tokens that can be rotated on
every use (as Microsoft does) and revoked. Each provider's fake (`graph.py`, `gdrive.py`,
`dropbox.py`) subclasses it and adds the provider's API: the client code under test is the code
that runs in production, only the base URLs point here.

The consent page signs in `next_user` (a test sets it) and redirects back at once; with
`interactive = True` it shows an "Allow" button first, for the browser test.
"""
import base64
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from flask import Flask, abort, jsonify, request

from portal.storage.oauth import PROVIDERS
from tests.servers import LoopbackServer

CLIENT_ID = "depot-test-client"
CLIENT_SECRET = "depot-test-secret-0123456789"


@dataclass
class FakeUser:
    id: str
    name: str
    files: dict = field(default_factory=dict)  # each provider keeps its own shape here


class FakeOAuthProvider:
    """Subclasses set the endpoint paths and add routes in `add_routes(app)`."""

    authorize_path = "/oauth2/authorize"
    token_path = "/oauth2/token"
    rotate_refresh_tokens = False  # Microsoft: a refresh gives a new refresh token, the old dies
    access_ttl = 3600

    def __init__(self):
        self.users: dict[str, FakeUser] = {}
        self.next_user: str | None = None
        self.interactive = False
        self.codes: dict[str, dict] = {}
        self.access_tokens: dict[str, tuple[str, float]] = {}  # token -> (user id, expires at)
        self.refresh_tokens: dict[str, str] = {}  # token -> user id
        self.refreshes = 0
        self.log: list[tuple[str, str, int]] = []  # (method, path, body length) of API calls
        self.lock = threading.RLock()
        self.app = Flask(type(self).__name__)
        self.app.add_url_rule(self.authorize_path, "authorize", self._authorize,
                              methods=["GET", "POST"])
        self.app.add_url_rule(self.token_path, "token", self._token, methods=["POST"])
        self.add_routes(self.app)
        self._served = LoopbackServer(self.app, type(self).__name__)
        self.url = ""

    # --- test controls ---------------------------------------------------------------------

    def add_user(self, user_id: str, name: str) -> FakeUser:
        user = self.users[user_id] = FakeUser(user_id, name)
        if self.next_user is None:
            self.next_user = user_id
        return user

    def expire_access_tokens(self) -> None:
        """Every access token given so far is expired from now on (refresh tokens still work)."""
        with self.lock:
            self.access_tokens = {t: (u, 0) for t, (u, _) in self.access_tokens.items()}

    def revoke(self, user_id: str | None = None) -> None:
        """The user withdrew consent: their access and refresh tokens stop working."""
        with self.lock:
            self.access_tokens = {t: v for t, v in self.access_tokens.items()
                                  if user_id is not None and v[0] != user_id}
            self.refresh_tokens = {t: u for t, u in self.refresh_tokens.items()
                                   if user_id is not None and u != user_id}

    def start(self) -> "FakeOAuthProvider":
        self.url = self._served.start()
        return self

    def stop(self) -> None:
        self._served.stop()

    # --- what subclasses use ---------------------------------------------------------------

    def add_routes(self, app: Flask) -> None:
        """The provider's API routes."""

    def error(self, status: int, code: str, message: str):
        """An error answer in the provider's shape (subclasses override); aborts the request."""
        response = jsonify({"error": {"code": code, "message": message}})
        response.status_code = status
        abort(response)

    def current_user(self) -> FakeUser:
        """The user whose bearer token the request carries; 401 in the provider's shape if the
        token is unknown or expired."""
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else None
        with self.lock:
            found = self.access_tokens.get(token) if token else None
        if found is None:
            self.error(401, "InvalidAuthenticationToken", "Access token is empty or invalid.")
        user_id, expires_at = found
        if expires_at <= time.time():
            self.error(401, "InvalidAuthenticationToken", "Lifetime validation failed, the "
                                                          "token is expired.")
        return self.users[user_id]

    def record(self) -> None:
        with self.lock:
            self.log.append((request.method, request.path, request.content_length or 0))

    # --- OAuth 2 -------------------------------------------------------------------------

    def _authorize(self):
        args = request.values
        if args.get("client_id") != CLIENT_ID:
            return "unknown client_id", 400
        if args.get("response_type") != "code" or not args.get("redirect_uri"):
            return "response_type=code and redirect_uri are required", 400
        if args.get("code_challenge_method") != "S256" or not args.get("code_challenge"):
            return "PKCE with S256 is required", 400
        if self.interactive and request.method == "GET":
            return (f"<!doctype html><title>Fake {type(self).__name__} consent</title>"
                    f"<h1>Let Depot use your files?</h1><p>Signed in as {self.next_user}</p>"
                    f"<form method=post action='{self.authorize_path}?"
                    f"{request.query_string.decode()}'>"
                    "<button>Allow</button></form>")
        code = secrets.token_urlsafe(24)
        with self.lock:
            self.codes[code] = {"user": self.next_user, "redirect_uri": args["redirect_uri"],
                                "challenge": args["code_challenge"], "scope": args.get("scope"),
                                "expires": time.time() + 300}
        query = urlencode({"code": code, "state": args.get("state", "")})
        separator = "&" if "?" in args["redirect_uri"] else "?"
        return "", 302, {"Location": f"{args['redirect_uri']}{separator}{query}"}

    def _client_ok(self) -> bool:
        client_id, client_secret = request.form.get("client_id"), request.form.get("client_secret")
        if request.authorization is not None:
            client_id = request.authorization.username
            client_secret = request.authorization.password
        return client_id == CLIENT_ID and client_secret == CLIENT_SECRET

    @staticmethod
    def _token_error(error: str, description: str, status: int = 400):
        return jsonify({"error": error, "error_description": description}), status

    def _token(self):
        if not self._client_ok():
            return self._token_error("invalid_client", "client authentication failed", 401)
        grant = request.form.get("grant_type")
        with self.lock:
            if grant == "authorization_code":
                found = self.codes.pop(request.form.get("code", ""), None)
                if found is None or found["expires"] < time.time():
                    return self._token_error("invalid_grant", "the code is unknown or used")
                if request.form.get("redirect_uri") != found["redirect_uri"]:
                    return self._token_error("invalid_grant", "redirect_uri does not match")
                verifier = request.form.get("code_verifier", "")
                challenge = base64.urlsafe_b64encode(
                    hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
                if challenge != found["challenge"]:
                    return self._token_error("invalid_grant", "PKCE verification failed")
                return jsonify(self._issue(found["user"], new_refresh=True))
            if grant == "refresh_token":
                user_id = self.refresh_tokens.get(request.form.get("refresh_token", ""))
                if user_id is None:
                    return self._token_error("invalid_grant", "the refresh token is revoked, "
                                                              "expired or already used")
                self.refreshes += 1
                if self.rotate_refresh_tokens:
                    del self.refresh_tokens[request.form["refresh_token"]]
                return jsonify(self._issue(user_id, new_refresh=self.rotate_refresh_tokens))
        return self._token_error("unsupported_grant_type", f"grant_type {grant!r}")

    def _issue(self, user_id: str, new_refresh: bool) -> dict:
        access = secrets.token_urlsafe(24)
        self.access_tokens[access] = (user_id, time.time() + self.access_ttl)
        answer = {"access_token": access, "token_type": "Bearer", "expires_in": self.access_ttl}
        if new_refresh:
            refresh = secrets.token_urlsafe(24)
            self.refresh_tokens[refresh] = user_id
            answer["refresh_token"] = refresh
        return answer


def consent_token(fake: FakeOAuthProvider, provider: str, user_id: str) -> dict:
    """The token response of a consent `user_id` gives at the fake: the authorization-code flow
    with PKCE (S256) and the provider's own parameters, the code exchanged with Authlib as
    Depot's callback does."""
    definition = PROVIDERS[provider]
    session = OAuth2Session(CLIENT_ID, CLIENT_SECRET, scope=definition.scope,
                            redirect_uri="http://127.0.0.1/callback", code_challenge_method="S256",
                            token_endpoint_auth_method="client_secret_post")
    try:
        verifier = generate_token(48)
        url, state = session.create_authorization_url(fake.url + fake.authorize_path,
                                                      code_verifier=verifier,
                                                      **definition.authorize_params)
        fake.next_user = user_id
        with requests.get(url, allow_redirects=False, timeout=10) as answer:
            assert answer.status_code == 302, answer.text
            location = answer.headers["Location"]
        return session.fetch_token(fake.url + fake.token_path, authorization_response=location,
                                   code_verifier=verifier, state=state, timeout=10)
    finally:
        session.close()
