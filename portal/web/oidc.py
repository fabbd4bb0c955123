"""The console's OpenID Connect client (Authlib's Flask client), made from the DEPOT_OIDC_*
settings (portal/services/sso.py reads them); the sign-in routes are in blueprints/auth/sso.py."""
from authlib.integrations.flask_client import OAuth

from portal.core import http_headers
from portal.services import sso

TIMEOUT = 10  # seconds for each call to the provider (discovery, JWKS, token)


def client(app):
    """The app's Authlib client for the provider, made again when a setting changed."""
    found = sso.settings(app.config)
    cached = app.extensions.get("depot_oidc")
    if cached is None or cached[0] != found:
        # Named so that Authlib finds no settings of its own in app.config (DEPOT_SSO_*): every
        # value comes from `found`.
        registered = OAuth(app).register(
            "depot_sso", client_id=found.client_id, client_secret=found.client_secret,
            server_metadata_url=found.issuer.rstrip("/") + "/.well-known/openid-configuration",
            client_kwargs={"scope": found.scope, "code_challenge_method": "S256",
                           "default_timeout": TIMEOUT})
        cached = app.extensions["depot_oidc"] = (found, registered)
    return cached[1]


def authorize_origins(config, app=None) -> list[str]:
    """The origins the "Sign in with" form is redirected to: the issuer's, and the discovered
    authorization endpoint's once known (for CSP form-action, portal/web/headers.py)."""
    if not sso.enabled(config):
        return []
    origins = [http_headers.origin(config["DEPOT_OIDC_ISSUER"])]
    cached = app.extensions.get("depot_oidc") if app is not None else None
    if cached is not None and cached[0].issuer == config["DEPOT_OIDC_ISSUER"]:
        endpoint = cached[1].server_metadata.get("authorization_endpoint")
        origins.append(http_headers.origin(endpoint) if isinstance(endpoint, str) else None)
    return [o for o in origins if o]
