"""CSV downloads of what a page shows, safe to open in a spreadsheet.

A cell a spreadsheet would read as a formula (it starts with =, +, -, @, a tab or a carriage
return: an asset someone named "=HYPERLINK(...)") gets a leading apostrophe, so it is shown as
text and never run (OWASP's advice for CSV injection).
"""
import csv
import io
from collections.abc import Iterable

from flask import Response

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value) -> str:
    """The cell as text that no spreadsheet evaluates."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_response(filename: str, header: list, rows: Iterable[list]) -> Response:
    """A CSV file download (UTF-8 with a BOM, so Excel reads the names right)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([safe_cell(v) for v in header])
    writer.writerows([safe_cell(v) for v in row] for row in rows)
    response = Response("\ufeff" + buffer.getvalue(), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
