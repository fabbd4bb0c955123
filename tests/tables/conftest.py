"""Rows the list tests share: a hashed asset at central without scanning anything."""
import pytest

from portal.extensions import db
from portal.models import Asset


@pytest.fixture
def central_asset(central):
    """central_asset(key) -> an Asset row at central, hashed, as a rescan leaves it."""
    def _add(key="Images/Win11.wim", digest="a" * 64):
        asset = Asset(dp_id=central.id, key=key, library=key.split("/")[0],
                      name=key.split("/", 1)[1], kind="file", size=10, digest=digest,
                      status="current")
        db.session.add(asset)
        db.session.commit()
        return asset
    return _add
