"""The audit log: every change made by a person or a token."""
import csv
import io
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta

from sqlalchemy import select

from portal.core.errors import DepotError
from portal.extensions import db
from portal.models import AuditEvent
from portal.services import audit_words
from portal.services.actors import Actor

CSV_COLUMNS = ("When (UTC)", "Who", "What", "Action", "Target", "Via", "From", "Details")
CSV_BATCH = 500  # events read and described at a time while a CSV streams
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet would run these as formulas


def record(actor: Actor, action: str, target: str | None = None, **details) -> AuditEvent:
    """Add an audit event to the current transaction (the caller commits with its change)."""
    event = AuditEvent(
        user_id=actor.user_id, actor=actor.label, via=actor.via, action=action,
        target=target, details=details, ip=actor.ip,
    )
    db.session.add(event)
    return event


def parse_day(text: str | None, which: str) -> date | None:
    """A filter's date (YYYY-MM-DD, as a date input sends it); None when empty, a DepotError that
    says what is wrong otherwise."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        shown = text[:40]
        raise DepotError(f"The “{which}” date “{shown}” is not a date: give it as YYYY-MM-DD, "
                         "for example 2026-12-06.", code="bad_date") from None


def check_range(since: date | None, until: date | None) -> None:
    """Refuse a range that ends before it starts."""
    if since and until and until < since:
        raise DepotError(f"The “to” date ({until}) is before the “from” date ({since}): nothing "
                         "could match.", code="bad_date")


def _filtered(actor: str | None, action: str | None, since: date | None, until: date | None):
    query = select(AuditEvent)
    if actor:
        query = query.where(AuditEvent.actor.ilike(f"%{actor}%"))
    if action:
        query = query.where(AuditEvent.action.startswith(action))
    if since:
        query = query.where(AuditEvent.created_at >= datetime.combine(since, time.min))
    if until:  # the whole day of `until` is in
        query = query.where(AuditEvent.created_at < datetime.combine(until + timedelta(days=1),
                                                                     time.min))
    return query


def search(*, actor: str | None = None, action: str | None = None, since: date | None = None,
           until: date | None = None, page: int = 1,
           per_page: int = 50) -> tuple[list[AuditEvent], int]:
    """Audit events newest first, filtered by actor email, action prefix and a date range
    (whole UTC days, both ends in); (events, total)."""
    query = _filtered(actor, action, since, until)
    total = db.session.scalar(select(db.func.count()).select_from(query.subquery()))
    events = db.session.scalars(
        query.order_by(AuditEvent.id.desc()).offset((page - 1) * per_page).limit(per_page)
    ).all()
    return list(events), total


def actors() -> list[str]:
    """Who appears in the log (for the "who" filter's suggestions), the 200 most recent."""
    latest = db.func.max(AuditEvent.id)
    return list(db.session.scalars(select(AuditEvent.actor).group_by(AuditEvent.actor)
                                   .order_by(latest.desc()).limit(200)))


def safe_cell(value) -> str:
    """A CSV cell a spreadsheet shows as text: one that starts like a formula gets a quote."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_rows(*, actor: str | None = None, action: str | None = None, since: date | None = None,
             until: date | None = None) -> Iterator[str]:
    """The filtered log as CSV text, newest first, header first, produced in batches so a large
    log streams instead of filling memory."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(CSV_COLUMNS)
    yield flush()
    query = _filtered(actor, action, since, until).order_by(AuditEvent.id.desc())
    before = None
    while True:
        batch = query if before is None else query.where(AuditEvent.id < before)
        events = list(db.session.scalars(batch.limit(CSV_BATCH)))
        if not events:
            return
        for line in audit_words.describe(events):
            e = line.event
            writer.writerow([safe_cell(v) for v in (
                e.created_at.strftime("%Y-%m-%d %H:%M:%S"), e.actor, line.sentence, e.action,
                e.target, e.via, e.ip, audit_words.compact(e))])
        yield flush()
        before = events[-1].id
