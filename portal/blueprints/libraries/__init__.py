from flask import Blueprint

bp = Blueprint("libraries", __name__, url_prefix="/libraries")

from portal.blueprints.libraries import routes  # noqa: E402,F401
