"""Notifications and the audit log."""
from flask import g, request

from portal.blueprints.api import bp
from portal.services import audit, notifications
from portal.services.permissions import require
from portal.web.views import paginated, pagination


@bp.get("/notifications")
def list_notifications():
    """The caller's notifications, newest first; ?unread=1 for unread only."""
    page, per_page = pagination()
    unread = request.args.get("unread") in ("1", "true")
    items, total = notifications.list_for(g.api_user.id, unread_only=unread, page=page,
                                          per_page=per_page)
    body = paginated([n.to_dict() for n in items], total, page, per_page)
    body["unread"] = notifications.unread_count(g.api_user.id)
    return body


@bp.post("/notifications/<int:notification_id>/read")
def read_notification(notification_id: int):
    """Mark one notification read."""
    return {"changed": notifications.mark_read(g.api_user.id, notification_id)}


@bp.post("/notifications/read-all")
def read_all_notifications():
    """Mark every notification read."""
    return {"changed": notifications.mark_read(g.api_user.id)}


@bp.get("/audit")
def list_audit():
    """The audit log, newest first; ?actor=, ?action= and ?from= / ?to= (YYYY-MM-DD, UTC days)
    filter (admins only)."""
    require(g.api_user, "view_audit")
    page, per_page = pagination()
    since = audit.parse_day(request.args.get("from"), "from")
    until = audit.parse_day(request.args.get("to"), "to")
    audit.check_range(since, until)
    items, total = audit.search(actor=request.args.get("actor"), action=request.args.get("action"),
                                since=since, until=until, page=page, per_page=per_page)
    return paginated([e.to_dict() for e in items], total, page, per_page)
