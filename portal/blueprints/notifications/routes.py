"""Routes of /notifications/: the bell and its dropdown, the list, marking read."""
from flask import request, url_for
from flask_login import current_user, login_required

from sqlalchemy import func

from portal.blueprints.notifications import bp
from portal.models import Notification
from portal.services import notifications
from portal.web import tables
from portal.web.views import page_or_fragment, see_other


def link_for(n: Notification) -> str:
    """Where a notification is dealt with: the deployment or job it is about, the claims to
    decide, the DP's row (Reconnect, Edit) for news of a DP; else the list of notifications."""
    if n.deployment_id:
        return url_for("deployments.show", deployment_id=n.deployment_id)
    if n.job_id:
        return url_for("jobs.show", job_id=n.job_id)
    if n.kind == "device.claim":
        return url_for("computers.index")
    if n.dp_id:
        return url_for("distribution_points.index", _anchor=f"dp-{n.dp_id}")
    return url_for("notifications.index")


TABLE = tables.Table(
    columns={"created": Notification.id, "level": Notification.level,
             "read": Notification.read_at.is_not(None), "message": func.lower(Notification.message)},
    default_sort="created", default_dir="desc", tiebreak=Notification.id,
    search=(Notification.message, Notification.level))


def _list_response():
    # Mark read posts to a URL carrying the list's arguments, so the list stays as it was.
    t = tables.rows_of(notifications.query_for(current_user.id), TABLE, "notifications.index",
                       asked=tables.read(TABLE, request.values))
    response = page_or_fragment("notifications/index.html", "notifications/_list.html", t=t,
                                items=t.rows, total=t.total, link_for=link_for)
    response.headers["HX-Trigger"] = "bell-changed"
    return response


@bp.get("/")
@login_required
def index():
    """The bell's notifications, newest first (or sorted by a column), searched and paged."""
    return _list_response()


@bp.get("/bell")
@login_required
def bell():
    """The bell's unread count (polled by every page)."""
    return page_or_fragment("notifications/_bell_count.html", "notifications/_bell_count.html",
                            unread_count=notifications.unread_count(current_user.id))


@bp.get("/menu")
@login_required
def menu():
    """The bell's dropdown: the newest few notifications and Mark all read."""
    return page_or_fragment("notifications/_menu.html", "notifications/_menu.html",
                            items=notifications.latest(current_user.id), link_for=link_for,
                            unread_count=notifications.unread_count(current_user.id))


@bp.post("/<int:notification_id>/read")
@login_required
def read(notification_id: int):
    """Mark one notification read."""
    notifications.mark_read(current_user.id, notification_id)
    return _list_response() if request.htmx else see_other(".index")


@bp.post("/read-all")
@login_required
def read_all():
    """Mark every notification read."""
    notifications.mark_read(current_user.id)
    return _list_response() if request.htmx else see_other(".index")
