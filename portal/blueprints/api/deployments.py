"""Deployments: create (the DP chosen by the rules, or 409 with the reasons), get, list, cancel."""
from portal.blueprints.api import bp  # noqa: F401
