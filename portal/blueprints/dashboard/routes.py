"""Routes of /: the dashboard."""
from flask_login import current_user, login_required

from portal.blueprints.dashboard import bp
from portal.services import overviews
from portal.web.views import page_or_fragment


@bp.get("/")
@login_required
def index():
    """Every DP's content at a glance, and the work running now."""
    return page_or_fragment("dashboard/index.html", "dashboard/_overview.html",
                            **overviews.dashboard(current_user))
