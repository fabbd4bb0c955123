"""Routes of /branch/: one site's DPs and deployments, read only."""
from flask import request
from flask_login import current_user, login_required

from portal.blueprints.branch import bp
from portal.services import branch
from portal.web.views import page_or_fragment


@bp.get("/")
@login_required
def index():
    """A site's DPs (health, free space, what is behind central) and its deployments, live."""
    overview = branch.site_overview(current_user, request.args.get("site") or None)
    return page_or_fragment("branch/index.html", "branch/_site.html", **overview)
