"""The branch view: a read-only page for staff of one site (their DP, its content, deployments
there)."""
from flask import Blueprint

bp = Blueprint("branch", __name__, url_prefix="/branch")

from portal.blueprints.branch import routes  # noqa: E402,F401
