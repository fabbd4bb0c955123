from datetime import datetime

import pytest

from portal.services.copy_job import in_allowed_hours


@pytest.mark.parametrize("hours, now, wait", [
    (None, "12:00", 0),
    ("22-06", "23:30", 0),
    ("22-06", "05:59", 0),
    ("22-06", "06:00", 16 * 3600),
    ("22-06", "21:30", 1800),
    ("09-17", "08:00", 3600),
    ("09-17", "17:30", 15.5 * 3600),
    ("09-17", "12:00", 0),
])
def test_copies_wait_for_their_window(hours, now, wait):
    """Is the wait until the allowed hours open right, across midnight too?"""
    hour, minute = (int(x) for x in now.split(":"))
    assert in_allowed_hours(hours, datetime(2026, 11, 25, hour, minute)) == wait
