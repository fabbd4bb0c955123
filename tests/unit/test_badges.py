"""The one list of each kind of status (portal/web/context.py) and the badge colours in app.css."""
from pathlib import Path

import portal
from portal.web.context import STATUSES

# The CSS family each kind of badge uses (portal/templates/_macros.html).
FAMILY = {"content": "status", "job": "state", "deployment": "state", "dp": "dp",
          "device": "device"}


def test_every_status_a_badge_can_show_has_its_colour():
    """Does app.css colour every status of every list the badges and filters take values from?"""
    css = (Path(portal.__file__).parent / "static" / "app.css").read_text()
    assert set(STATUSES) == set(FAMILY)
    uncoloured = [f"{FAMILY[kind]}-{value}" for kind, values in STATUSES.items()
                  for value in values if f".{FAMILY[kind]}-{value}" not in css]
    assert uncoloured == []
