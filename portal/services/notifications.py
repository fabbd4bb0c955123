"""The bell: events fanned out to the people who can see them, read state per person.

Every kind is either news that needs someone (told to everyone who can see it) or a routine
success (told only to those who asked for them: `User.notify_successes`). A kind in neither table
is told to everyone, so a new kind of failure is never lost.
"""
from sqlalchemy import func, select, update

from portal.extensions import db
from portal.models import DistributionPoint, Notification, User, utcnow
from portal.models.jobs import JOB_KINDS
from portal.services.failures import deployment_failure
from portal.services.permissions import can_see_dp

# What rings the bell for everyone: failures and what someone has to act on. A DP back online is
# here too: it closes the alarm its going offline raised.
NEEDS_ATTENTION = {
    "dp.offline": "a distribution point went offline",
    "dp.needs_auth": "a cloud distribution point needs to be reconnected",
    "dp.online": "a distribution point that was offline is back",
    **{f"{kind}.failed": f"a {kind} failed" for kind in JOB_KINDS},
    "deployment.failed": "a deployment failed",
    "device.claim": "a new enrollment claims to be a known device (admins)",
}
# What rings it only for people who asked (Settings, Notifications).
ROUTINE = {f"{kind}.succeeded": f"a {kind} finished" for kind in JOB_KINDS}


def is_routine(kind: str) -> bool:
    """Is this kind of notification a routine success, told only to those who asked for them?"""
    return kind in ROUTINE


def notify(kind: str, message: str, *, level: str = "info", dp_id: int | None = None,
           job_id: str | None = None, deployment_id: int | None = None,
           roles: tuple[str, ...] | None = None) -> int:
    """Tell every active user who can see the DP (only those of `roles` when given; of a routine
    success, only those who asked for them); returns how many were told. Caller commits."""
    dp = db.session.get(DistributionPoint, dp_id) if dp_id else None
    query = select(User).where(User.active.is_(True))
    if is_routine(kind):
        query = query.where(User.notify_successes.is_(True))
    if roles is not None:
        query = query.where(User.role.in_(roles))
    users = db.session.scalars(query).all()
    count = 0
    for user in users:
        if dp is None or can_see_dp(user, dp):
            db.session.add(Notification(user_id=user.id, kind=kind, level=level, message=message,
                                        dp_id=dp_id, job_id=job_id,
                                        deployment_id=deployment_id))
            count += 1
    return count


def set_dp_status(dp: DistributionPoint, status: str, reason: str | None = None) -> None:
    """Set a DP's status (online, offline, needs-auth); when it changes, tell everyone who can see
    the DP. Health checks, rescans and jobs all call this, so a change is told once, whoever saw
    it first."""
    if status != dp.status:
        if status == "offline":
            notify("dp.offline", f"{dp.name} went offline: {reason}", level="error", dp_id=dp.id)
        elif status == "needs-auth":
            notify("dp.needs_auth", f"{dp.name} needs to be reconnected: {reason}", level="error",
                   dp_id=dp.id)
        elif dp.status in ("offline", "needs-auth"):
            notify("dp.online", f"{dp.name} is back online", dp_id=dp.id)
        dp.status_changed_at = utcnow()
    dp.status, dp.status_reason = status, reason[:500] if reason else reason  # its column


def deployment_failed(deployment) -> int:
    """Tell everyone who can see the deployment's DP that it failed, and why. Caller commits."""
    failure = deployment_failure(deployment.error)
    return notify("deployment.failed",
                  f"Deployment #{deployment.id} of {deployment.image} to {deployment.device_name} "
                  f"failed: {failure.summary if failure else 'no reason given'}", level="error",
                  dp_id=deployment.dp_id,
                  deployment_id=deployment.id)


def device_claimed(claim, device) -> int:
    """Tell the admins (who alone may decide) that an enrollment claims to be a known device.
    Caller commits."""
    return notify("device.claim",
                  f"A new enrollment claims to be {device.name} (serial {device.serial or '?'}, "
                  f"from {claim.remote_ip or 'an unknown address'}): approve or refuse it in "
                  "Computer Management", level="warning", roles=("admin",))


def unread_count(user_id: int) -> int:
    """How many of the user's notifications are unread."""
    return db.session.scalar(
        select(func.count()).where(Notification.user_id == user_id, Notification.read_at.is_(None))
    )


def query_for(user_id: int, *, unread_only: bool = False):
    """The user's notifications, unordered (the console's list sorts and pages them)."""
    query = select(Notification).where(Notification.user_id == user_id)
    if unread_only:
        query = query.where(Notification.read_at.is_(None))
    return query


def list_for(user_id: int, *, unread_only: bool = False, page: int = 1,
             per_page: int = 50) -> tuple[list[Notification], int]:
    """The user's notifications, newest first; (items, total)."""
    query = query_for(user_id, unread_only=unread_only)
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    items = db.session.scalars(
        query.order_by(Notification.id.desc()).offset((page - 1) * per_page).limit(per_page)
    ).all()
    return list(items), total


def latest(user_id: int, limit: int = 8) -> list[Notification]:
    """The user's newest notifications, read or not (the bell's dropdown)."""
    return list(db.session.scalars(select(Notification).where(Notification.user_id == user_id)
                                   .order_by(Notification.id.desc()).limit(limit)))


def choose_successes(user: User, wanted: bool) -> None:
    """Whether routine successes ring this user's bell from now on (their own choice)."""
    user.notify_successes = bool(wanted)
    db.session.commit()


def mark_read(user_id: int, notification_id: int | None = None) -> int:
    """Mark one notification (or all of them) read for this user; returns how many changed."""
    stmt = update(Notification).where(Notification.user_id == user_id,
                                      Notification.read_at.is_(None))
    if notification_id is not None:
        stmt = stmt.where(Notification.id == notification_id)
    result = db.session.execute(stmt.values(read_at=utcnow()))
    db.session.commit()
    return result.rowcount
