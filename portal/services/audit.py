"""The audit log: every change made by a person or a token."""
from sqlalchemy import select

from portal.extensions import db
from portal.models import AuditEvent
from portal.services.actors import Actor


def record(actor: Actor, action: str, target: str | None = None, **details) -> AuditEvent:
    """Add an audit event to the current transaction (the caller commits with its change)."""
    event = AuditEvent(
        user_id=actor.user_id, actor=actor.label, via=actor.via, action=action,
        target=target, details=details, ip=actor.ip,
    )
    db.session.add(event)
    return event


def search(*, actor: str | None = None, action: str | None = None, page: int = 1,
           per_page: int = 50) -> tuple[list[AuditEvent], int]:
    """Audit events newest first, filtered by actor email and action prefix; (events, total)."""
    query = select(AuditEvent)
    if actor:
        query = query.where(AuditEvent.actor.ilike(f"%{actor}%"))
    if action:
        query = query.where(AuditEvent.action.startswith(action))
    total = db.session.scalar(select(db.func.count()).select_from(query.subquery()))
    events = db.session.scalars(
        query.order_by(AuditEvent.id.desc()).offset((page - 1) * per_page).limit(per_page)
    ).all()
    return list(events), total
