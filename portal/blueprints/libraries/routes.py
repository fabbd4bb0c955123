from flask import abort
from flask_login import current_user, login_required
from sqlalchemy import select

from portal.blueprints.libraries import bp
from portal.core.libraries import library_for_slug
from portal.extensions import db
from portal.models import Job
from portal.models.jobs import ACTIVE_STATES
from portal.services import distribution_points as dps
from portal.services.jobs import active_job
from portal.web.views import page_or_fragment


@bp.get("/<slug>")
@login_required
def index(slug: str):
    """The assets of one library at the selected DP, with size, digest, modified time and status."""
    library = library_for_slug(slug)
    if library is None:
        abort(404, description=f"no library {slug!r}")
    dp = dps.selected_dp(current_user)
    visible = dps.visible_dps(current_user)
    running = db.session.scalars(select(Job).where(
        Job.kind.in_(("copy", "delete")), Job.state.in_(ACTIVE_STATES),
        Job.dp_id.in_([d.id for d in visible]), Job.asset_key.startswith(library + "/"))
        .order_by(Job.created_at)).all()
    return page_or_fragment("libraries/index.html", "libraries/_assets.html",
                            library=library, slug=slug, dp=dp, items=dps.content(dp, library),
                            scan=active_job(f"rescan:{dp.id}"), check=active_job(f"verify:{dp.id}"),
                            targets=[d for d in visible if not d.is_central and not d.disabled],
                            running=running)
