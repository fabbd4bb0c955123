"""Who is asking, as services want it: the person signed in to the console (Flask-Login), or the
owner of the API token the request carried (the API blueprint reads it: views.bearer_token)."""
from flask import g, request
from flask_login import current_user

from portal.core.numbers import id_from_text
from portal.extensions import db, login_manager
from portal.models import User
from portal.services.actors import Actor


def init_app(app) -> None:
    """Console sign-in: where to send a person who is not signed in, and what to tell them."""
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in."
    login_manager.session_protection = "strong"


def session_user(session_id) -> User | None:
    """The active user a session's "id:version" (User.get_id) names, if the version is still the
    user's current one: sign-out, a new password, a new role or deactivation raise it, so a
    copied cookie stops working with them. Sessions without a version end. Also what the
    pending second step of signing in holds (blueprints/auth/two_factor.py)."""
    user_id, _, version = str(session_id or "").partition(":")
    user_id = id_from_text(user_id)
    if user_id is None or not version.isdecimal() or len(version) > 18:
        return None
    user = db.session.get(User, user_id)
    if user is None or not user.active or user.session_version != int(version):
        return None
    return user


@login_manager.user_loader
def _load_user(session_id: str):
    """The signed-in user, checked on every request (session_user)."""
    return session_user(session_id)


def client_ip() -> str | None:
    """The caller's address (behind proxies, X-Forwarded-For's as DEPOT_TRUSTED_PROXIES says)."""
    return request.remote_addr


def console_actor() -> Actor:
    """The signed-in person, as services want it."""
    return Actor(current_user._get_current_object(), via="console", ip=client_ip())


def api_actor() -> Actor:
    """The token's owner, as services want it."""
    return Actor(g.api_user, via="api", ip=client_ip())
