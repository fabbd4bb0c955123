from flask import Blueprint

bp = Blueprint("settings", __name__, url_prefix="/settings")

from portal.blueprints.settings import notification_choices, routes, security  # noqa: E402,F401
