"""The status matrix: central's assets down, the DPs across, like a monitoring dashboard."""
from flask import request
from flask_login import current_user, login_required

from portal.blueprints.status import bp
from portal.core.libraries import LIBRARIES
from portal.models.content import ASSET_STATUSES
from portal.services import overviews
from portal.web.views import page_or_fragment


@bp.get("/")
@login_required
def index():
    """Every asset's status at every DP, filtered by ?library=, ?status= and ?dp=."""
    library = request.args.get("library") if request.args.get("library") in LIBRARIES else None
    status = request.args.get("status") if request.args.get("status") in ASSET_STATUSES else None
    dp = request.args.get("dp", "")
    return page_or_fragment("status/index.html", "status/_matrix.html", library_names=LIBRARIES,
                            filters={"library": library, "status": status, "dp": dp},
                            **overviews.status_matrix(current_user, library=library,
                                                      status=status, dp=dp))
