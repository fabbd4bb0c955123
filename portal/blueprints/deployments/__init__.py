"""Deployments: the form with the DP chosen and why, live monitoring, cancel, history."""
from flask import Blueprint

bp = Blueprint("deployments", __name__, url_prefix="/deployments")

from portal.blueprints.deployments import routes  # noqa: E402,F401
