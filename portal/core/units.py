"""Sizes in words people read: one way for the console, job summaries and the CLI."""
import math
from decimal import Decimal


def human_bytes(value: float | None) -> str:
    """1536 -> "1.5 KiB"; None, and anything that is not a finite number of bytes (a value
    stored before answers were read typed), -> "—"."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        return "—"
    try:
        size = float(value)
    except (OverflowError, ValueError):
        return "—"
    if not math.isfinite(size) or size < 0:
        return "—"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
