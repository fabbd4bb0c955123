"""Download links for endpoints to cloud DPs that have no presigned URLs of their own (Google
Drive): the link is signed by this server and short-lived; the server streams the file from the
provider with the DP's own tokens, so the endpoint never holds a provider credential."""
from flask import Blueprint

bp = Blueprint("cloud_links", __name__, url_prefix="/cloud-links")

from portal.blueprints.cloud_links import routes  # noqa: E402,F401
