"""Who is asking, as services want it: the person signed in to the console (Flask-Login), or the
owner of the API token the request carried (the API blueprint reads it: views.bearer_token)."""
from flask import g, request
from flask_login import current_user

from portal.extensions import db, login_manager
from portal.models import User
from portal.services.actors import Actor


def init_app(app) -> None:
    """Console sign-in: where to send a person who is not signed in, and what to tell them."""
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in."
    login_manager.session_protection = "strong"


@login_manager.user_loader
def _load_user(session_id: str):
    """The signed-in user, checked on every request: the session's "id:version" must carry the
    user's current session version (sign-out, a new password, a new role or deactivation raise
    it), so a copied cookie stops working with them. Sessions without a version end."""
    user_id, _, version = session_id.partition(":")
    if not (user_id.isdecimal() and version.isdecimal()) or len(user_id) > 18 or len(version) > 18:
        return None
    user = db.session.get(User, int(user_id))
    if user is None or not user.active or user.session_version != int(version):
        return None
    return user


def client_ip() -> str | None:
    """The caller's address (behind proxies, X-Forwarded-For's as DEPOT_TRUSTED_PROXIES says)."""
    return request.remote_addr


def console_actor() -> Actor:
    """The signed-in person, as services want it."""
    return Actor(current_user._get_current_object(), via="console", ip=client_ip())


def api_actor() -> Actor:
    """The token's owner, as services want it."""
    return Actor(g.api_user, via="api", ip=client_ip())
