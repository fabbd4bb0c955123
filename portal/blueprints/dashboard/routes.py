from flask_login import current_user, login_required
from sqlalchemy import select

from portal.blueprints.dashboard import bp
from portal.extensions import db
from portal.models import Job
from portal.services import distribution_points as dps
from portal.web.views import page_or_fragment


@bp.get("/")
@login_required
def index():
    """Every DP's content at a glance, and the work running now."""
    visible = dps.visible_dps(current_user)
    counts = dps.status_counts([dp.id for dp in visible])
    dp_ids = [dp.id for dp in visible]
    active = db.session.scalars(select(Job).where(Job.state.in_(("queued", "running")),
                                                  Job.dp_id.in_(dp_ids))
                                .order_by(Job.created_at.desc()).limit(20)).all()
    return page_or_fragment("dashboard/index.html", "dashboard/_overview.html",
                            dps=visible, counts=counts, active_jobs=active)
