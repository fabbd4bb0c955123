"""The status matrix: central's assets down, the DPs across, like a monitoring dashboard."""
from flask import request
from flask_login import current_user, login_required

from portal.blueprints.status import bp
from portal.core.libraries import LIBRARIES
from portal.models.content import ASSET_STATUSES
from portal.services import distribution_points as dps
from portal.web.views import page_or_fragment


@bp.get("/")
@login_required
def index():
    """Every asset's status at every DP, filtered by ?library=, ?status= and ?dp=."""
    library = request.args.get("library") if request.args.get("library") in LIBRARIES else None
    status = request.args.get("status") if request.args.get("status") in ASSET_STATUSES else None
    visible = dps.visible_dps(current_user)
    columns = [dp for dp in visible if request.args.get("dp") in (None, "", str(dp.id))]
    rows = dps.status_matrix([dp.id for dp in columns], library=library, status=status)
    return page_or_fragment("status/index.html", "status/_matrix.html", rows=rows, columns=columns,
                            counts=dps.status_counts([dp.id for dp in columns]),
                            library_names=LIBRARIES, statuses=ASSET_STATUSES, visible=visible,
                            filters={"library": library, "status": status,
                                     "dp": request.args.get("dp", "")})
