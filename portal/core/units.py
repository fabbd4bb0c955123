"""Sizes in words people read: one way for the console, job summaries and the CLI."""


def human_bytes(value: float | None) -> str:
    """1536 -> "1.5 KiB"; None -> "—"."""
    if value is None:
        return "—"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
