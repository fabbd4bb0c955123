from flask import Blueprint

bp = Blueprint("distribution_points", __name__, url_prefix="/distribution-points")

from portal.blueprints.distribution_points import routes  # noqa: E402,F401
