"""The security headers on every console answer (what they are and why: portal.core.http_headers).

Pages, fragments, errors and API or agent JSON are made for whoever asked: `Cache-Control:
no-store`, whatever a view said (the created-token pages and the installer zip show a secret
once). Static files keep their caching. The agent API's fast path, which answers without Flask,
adds the same headers (`answer_headers`).
"""
from flask import current_app, request

from portal.core import http_headers
from portal.storage.oauth import PROVIDERS
from portal.web import oidc


def form_targets(config, app=None) -> list[str]:
    """The origins the console's forms are redirected to: the OAuth providers' consent pages
    (Connect and Reconnect post to the console, which sends the browser on with a 303), and the
    single sign-on provider's authorization endpoint ("Sign in with" does the same)."""
    origins = set(oidc.authorize_origins(config, app))
    for provider in PROVIDERS.values():
        try:
            found = http_headers.origin(provider.authorize_url(config))
        except (KeyError, AttributeError, TypeError):
            found = None
        if found:
            origins.add(found)
    return sorted(origins)


def security_headers(app) -> list[tuple[str, str]]:
    """The app's headers, made again only when a provider's address setting changed. HSTS goes
    with secure cookies (DEPOT_SECURE_COOKIES, read into SESSION_COOKIE_SECURE by
    web.proxies): both say the console is behind HTTPS."""
    key = (tuple(form_targets(app.config, app)), bool(app.config.get("SESSION_COOKIE_SECURE")))
    cached = app.extensions.get("depot_security_headers")
    if cached is None or cached[0] != key:
        cached = (key, http_headers.console_headers(*key))
        app.extensions["depot_security_headers"] = cached
    return cached[1]


def answer_headers(app) -> list[tuple[str, str]]:
    """What an answer made for one caller carries: the security headers and no-store."""
    return [*security_headers(app), ("Cache-Control", http_headers.NO_STORE)]


def _add_headers(response):
    http_headers.add_missing(response.headers, security_headers(current_app))
    if request.endpoint != "static":
        response.headers["Cache-Control"] = http_headers.NO_STORE
        response.headers.pop("Expires", None)
    return response


def init_app(app) -> None:
    """Every answer of the app gets the headers (error pages and static files included)."""
    app.after_request(_add_headers)
