"""Routes of /notifications/: the bell, the list, marking read."""
from flask import request
from flask_login import current_user, login_required

from portal.blueprints.notifications import bp
from portal.services import notifications
from portal.web.views import page_or_fragment, see_other


def _list_response():
    items, total = notifications.list_for(current_user.id, per_page=100)
    response = page_or_fragment("notifications/index.html", "notifications/_list.html",
                                items=items, total=total)
    response.headers["HX-Trigger"] = "bell-changed"
    return response


@bp.get("/")
@login_required
def index():
    """The bell's notifications, newest first."""
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
