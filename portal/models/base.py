"""Helpers shared by the models."""
from datetime import datetime, timezone


def utcnow() -> datetime:
    """Naive UTC now: the same on SQLite and PostgreSQL columns without time zone."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def isoformat(value: datetime | None) -> str | None:
    """A stored naive-UTC time as ISO 8601 with a Z, for the API."""
    return value.isoformat(timespec="seconds") + "Z" if value else None


def percent_done(state: str, done: int, total: int | None) -> int | None:
    """A progress bar's percent: 100 once succeeded, None while the total is unknown."""
    if state == "succeeded":
        return 100
    if not total:
        return None
    return min(100, int(done * 100 / total))
