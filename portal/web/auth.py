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
def _load_user(user_id: str):
    user = db.session.get(User, int(user_id)) if user_id.isdigit() else None
    return user if user and user.active else None


def client_ip() -> str | None:
    """The caller's address (behind proxies, X-Forwarded-For's as DEPOT_TRUSTED_PROXIES says)."""
    return request.remote_addr


def console_actor() -> Actor:
    """The signed-in person, as services want it."""
    return Actor(current_user._get_current_object(), via="console", ip=client_ip())


def api_actor() -> Actor:
    """The token's owner, as services want it."""
    return Actor(g.api_user, via="api", ip=client_ip())
