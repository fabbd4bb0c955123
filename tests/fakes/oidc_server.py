"""A local OpenID Connect provider for tests, on FakeOAuthProvider (the authorization-code flow
with PKCE, client authentication, single-use codes): a discovery document under a tenant-specific
issuer (as Entra ID's https://login.microsoftonline.com/<tenant>/v2.0), a JWKS with an RSA key,
and RS256-signed id_tokens carrying the nonce of the authorization request and the person's
claims (email, email_verified, groups ...).

Tests set `people[user_id]` claims and `next_user`, and may make the provider misbehave:
`token_issuer` (an id_token from another tenant), `token_nonce` (a replayed or forged nonce),
`token_audience` (a token for another app), `token_lifetime` (negative: expired), `signing_key`
(a key not in the JWKS).
"""
import time
from urllib.parse import parse_qs, urlsplit

from flask import jsonify, request

from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.fakes.oauth_server import CLIENT_ID, FakeOAuthProvider

TENANT = "11111111-2222-3333-4444-555555555555"


def rsa_key(kid: str):
    return RSAKey.generate_key(2048, parameters={"kid": kid})


class FakeOidcProvider(FakeOAuthProvider):
    authorize_path = f"/{TENANT}/oauth2/v2.0/authorize"
    token_path = f"/{TENANT}/oauth2/v2.0/token"
    jwks_path = f"/{TENANT}/discovery/v2.0/keys"

    def __init__(self):
        super().__init__()
        self.key = rsa_key("depot-test-key")
        self.signing_key = self.key
        self.people: dict[str, dict] = {}
        self.nonces: dict[str, str | None] = {}  # code -> nonce of its authorization request
        self.token_issuer: str | None = None
        self.token_nonce: str | None = None
        self.token_audience = CLIENT_ID
        self.token_lifetime = 3600
        self.discovery_requests = 0

    @property
    def issuer(self) -> str:
        return f"{self.url}/{TENANT}/v2.0"

    def add_person(self, user_id: str, **claims) -> dict:
        """A person who can sign in, with their id_token claims (email, groups ...)."""
        self.add_user(user_id, claims.get("name", user_id))
        self.people[user_id] = claims
        return claims

    def add_routes(self, app) -> None:
        app.add_url_rule(f"/{TENANT}/v2.0/.well-known/openid-configuration", "discovery",
                         self._discovery)
        app.add_url_rule(self.jwks_path, "jwks", self._jwks)

    def _discovery(self):
        self.discovery_requests += 1
        return jsonify({
            "issuer": self.issuer,
            "authorization_endpoint": self.url + self.authorize_path,
            "token_endpoint": self.url + self.token_path,
            "jwks_uri": self.url + self.jwks_path,
            "response_types_supported": ["code"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post",
                                                      "client_secret_basic"],
            "scopes_supported": ["openid", "profile", "email"],
        })

    def _jwks(self):
        return jsonify({"keys": [self.key.as_dict(private=False)]})

    def _authorize(self):
        answer = super()._authorize()
        if isinstance(answer, tuple) and answer[1] == 302:
            code = parse_qs(urlsplit(answer[2]["Location"]).query)["code"][0]
            with self.lock:
                self.nonces[code] = request.values.get("nonce")
        return answer

    def _token(self):
        code = request.form.get("code", "")
        with self.lock:
            found = self.codes.get(code)
            nonce = self.nonces.pop(code, None)
        answer = super()._token()
        response = answer[0] if isinstance(answer, tuple) else answer
        if found is None or response.status_code != 200:
            return answer
        data = response.get_json()
        data["id_token"] = self.id_token(found["user"], nonce)
        return jsonify(data)

    def id_token(self, user_id: str, nonce: str | None) -> str:
        now = int(time.time())
        claims = {"iss": self.token_issuer or self.issuer, "sub": f"sub-{user_id}",
                  "aud": self.token_audience, "iat": now, "exp": now + self.token_lifetime,
                  "tid": TENANT, **self.people.get(user_id, {})}
        nonce = self.token_nonce if self.token_nonce is not None else nonce
        if nonce is not None:
            claims["nonce"] = nonce
        header = {"alg": "RS256", "kid": self.signing_key.kid}
        return jwt.encode(header, claims, self.signing_key)
