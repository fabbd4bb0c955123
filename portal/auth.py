"""Who is asking: console sessions (Flask-Login) and bearer tokens for the API."""
from flask import g, request
from flask_login import current_user

from portal.extensions import db, login_manager
from portal.models import User
from portal.services.actors import Actor


def init_app(app) -> None:
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in."
    login_manager.session_protection = "strong"


@login_manager.user_loader
def _load_user(user_id: str):
    user = db.session.get(User, int(user_id)) if user_id.isdigit() else None
    return user if user and user.active else None


def client_ip() -> str | None:
    """The caller's address (behind a proxy, configure ProxyFix; we do not trust headers blindly)."""
    return request.remote_addr


def console_actor() -> Actor:
    """The signed-in person, as services want it."""
    return Actor(current_user._get_current_object(), via="console", ip=client_ip())


def api_actor() -> Actor:
    """The token's owner, as services want it."""
    return Actor(g.api_user, via="api", ip=client_ip())
