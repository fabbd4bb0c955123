from flask import abort
from flask_login import current_user, login_required

from portal.blueprints.libraries import bp
from portal.blueprints.render import page_or_fragment
from portal.services import distribution_points as dps
from portal.services.jobs import active_job
from portal.services.libraries import library_for_slug


@bp.get("/<slug>")
@login_required
def index(slug: str):
    """The assets of one library at the selected DP, with size, digest, modified time and status."""
    library = library_for_slug(slug)
    if library is None:
        abort(404, description=f"no library {slug!r}")
    dp = dps.selected_dp(current_user)
    return page_or_fragment("libraries/index.html", "libraries/_assets.html",
                            library=library, slug=slug, dp=dp, items=dps.content(dp, library),
                            scan=active_job(f"rescan:{dp.id}"))
