"""The status matrix: central's assets down, the DPs across, like a monitoring dashboard; its
CSV export."""
from flask import request
from flask_login import current_user, login_required

from portal.blueprints.status import bp
from portal.core.libraries import LIBRARIES
from portal.models.content import ASSET_STATUSES
from portal.services import overviews
from portal.web.csvfile import csv_response
from portal.web.views import page_or_fragment


def _filters() -> dict:
    library = request.args.get("library") if request.args.get("library") in LIBRARIES else None
    status = request.args.get("status") if request.args.get("status") in ASSET_STATUSES else None
    return {"library": library, "status": status, "dp": request.args.get("dp", "")}


@bp.get("/")
@login_required
def index():
    """Every asset's status at every DP, filtered by ?library=, ?status= and ?dp=."""
    filters = _filters()
    return page_or_fragment("status/index.html", "status/_matrix.html", library_names=LIBRARIES,
                            filters=filters, **overviews.status_matrix(current_user, **filters))


@bp.get("/export.csv")
@login_required
def export():
    """The matrix as shown (same filters) as a CSV file: an asset a line, a DP a column."""
    matrix = overviews.status_matrix(current_user, **_filters())
    columns = matrix["columns"]
    header = ["Asset"] + [f"{dp.name} ({dp.site})" if dp.site else dp.name for dp in columns]
    return csv_response("content-status.csv", header,
                        ([row["key"]] + [row["cells"][dp.id] for dp in columns]
                         for row in matrix["rows"]))
