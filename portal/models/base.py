"""Helpers shared by the models."""
from datetime import datetime, timezone


def utcnow() -> datetime:
    """Naive UTC now: the same on SQLite and PostgreSQL columns without time zone."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def isoformat(value: datetime | None) -> str | None:
    """A stored naive-UTC time as ISO 8601 with a Z, for the API."""
    return value.isoformat(timespec="seconds") + "Z" if value else None
