"""Copies and verifies: an admin, central rescans, and a DP node added as the local DP Seattle."""
import pytest

from portal.extensions import db
from portal.models import DistributionPoint, Job
from portal.services import dp_management
from portal.services import distribution_points as dps
from portal.services.actors import Actor
from tests.factories import make_user
from tests.node_fixtures import KEY


@pytest.fixture
def admin(app):
    return Actor(make_user("admin"), via="console")


@pytest.fixture
def rescan(admin, work):
    def _rescan(dp):
        job, _ = dps.request_rescan(dp, admin)
        work()
        assert fresh(job.id).state == "succeeded", fresh(job.id).error
    return _rescan


@pytest.fixture
def seattle(app, admin, node, work):
    """The node added as a local DP, its first rescan done."""
    dp = dp_management.add_local(admin, "Seattle", node.url, KEY, "Seattle office")
    work()
    return db.session.get(DistributionPoint, dp.id)


def fresh(job_id):
    db.session.expire_all()
    return db.session.get(Job, job_id)


def status_at(dp, key):
    db.session.expire_all()
    items = {i["key"]: i for i in dps.content(dp)}
    return items[key]["status"] if key in items else None


