"""Single sign-on routes: "Sign in with <provider>" posts to /login/sso, which sends the browser
to the provider's authorization endpoint (found by OpenID Connect discovery from
DEPOT_OIDC_ISSUER) with state, nonce and PKCE (S256); the provider sends it back to
/login/sso/callback with a code, exchanged for an id_token that Authlib checks (signature from the
provider's JWKS, audience, expiry, nonce) and whose `iss` must be DEPOT_OIDC_ISSUER exactly.
What the claims give is portal/services/sso.py's business.
"""

import requests
from authlib.common.errors import AuthlibBaseError
from flask import current_app, redirect, render_template, request, session, url_for
from flask_login import login_user
from joserfc.errors import JoseError

from portal.blueprints.auth import bp
from portal.blueprints.auth.two_factor import SSO_SESSION_KEY
from portal.services import sso
from portal.web import nav
from portal.web.auth import client_ip
from portal.web.oidc import client
from portal.web.views import safe_next

NEXT_KEY = "depot_sso_next"


def _callback_url() -> str:
    """The redirect URI registered at the provider: DEPOT_PUBLIC_URL's when set."""
    public = current_app.config.get("DEPOT_PUBLIC_URL")
    path = url_for("auth.sso_callback")
    return public.rstrip("/") + path if public else url_for("auth.sso_callback", _external=True)


def _refused(message: str, status: int = 403):
    found = current_app.config.get("DEPOT_OIDC_NAME") or "single sign-on"
    return render_template("auth/sso_refused.html", message=message, provider=found), status


@bp.post("/login/sso")
def sso_start():
    """Send the browser to the provider (303), keeping where it was going."""
    try:
        oidc = client(current_app)
        made = oidc.create_authorization_url(_callback_url())
    except sso.SsoNotConfigured as exc:
        return _refused(exc.message, exc.status)
    except (requests.RequestException, ValueError, RuntimeError) as exc:
        current_app.logger.warning("OIDC discovery at %s failed: %s",
                                   current_app.config.get("DEPOT_OIDC_ISSUER"), exc)
        return _refused("Depot could not reach the sign-in provider. Try again, or sign in "
                        "with your password.", 502)
    oidc.save_authorize_data(redirect_uri=_callback_url(), **made)
    session[NEXT_KEY] = safe_next(request.args.get("next"))
    return redirect(made["url"], code=303)


@bp.get("/login/sso/callback")
def sso_callback():
    """The provider sent the browser back: check the answer, sign the user in or refuse."""
    try:
        found = sso.settings(current_app.config)
        oidc = client(current_app)
    except sso.SsoNotConfigured as exc:
        return _refused(exc.message, exc.status)
    ip = client_ip()
    try:
        # Authlib checks `aud` only when told to (it checks `azp` itself): both claims stated.
        token = oidc.authorize_access_token(
            claims_options={"iss": {"essential": True, "value": found.issuer},
                            "aud": {"essential": True, "values": [found.client_id]},
                            "nonce": {"essential": True}})
        claims = token.get("userinfo")
        if not claims:
            raise sso.refuse(found, "The provider's answer had no ID token.", "no id_token", ip)
        user = sso.sign_in(dict(claims), found, ip=ip)
    except sso.SsoRefused as exc:
        return _refused(exc.message)
    except (AuthlibBaseError, JoseError, requests.RequestException, ValueError) as exc:
        detail = getattr(exc, "description", None) or getattr(exc, "error", None) or str(exc)
        refused = sso.refuse(found, "Depot could not check the sign-in provider's answer, so "
                             "it did not sign you in. Try again.", "invalid answer", ip,
                             error=f"{type(exc).__name__}: {detail}"[:300])
        return _refused(refused.message)
    login_user(user)
    session[SSO_SESSION_KEY] = True
    target = nav.after_sign_in(user, safe_next(session.pop(NEXT_KEY, None)))
    return redirect(target, code=303)
