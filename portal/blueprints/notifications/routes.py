"""Routes of /notifications/: the bell, the list, marking read."""
from flask import request
from flask_login import current_user, login_required

from sqlalchemy import func

from portal.blueprints.notifications import bp
from portal.models import Notification
from portal.services import notifications
from portal.web import tables
from portal.web.views import page_or_fragment, see_other


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
                                items=t.rows, total=t.total)
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
    """The bell with its unread count (polled by every page)."""
    return page_or_fragment("notifications/_bell.html", "notifications/_bell.html",
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
