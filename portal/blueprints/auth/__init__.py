from flask import Blueprint

bp = Blueprint("auth", __name__)

from portal.blueprints.auth import routes, sso, two_factor  # noqa: E402,F401
