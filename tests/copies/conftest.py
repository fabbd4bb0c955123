"""Copies and verifies: an admin, central rescans, and a DP node added as the local DP Seattle."""
import pytest

from portal.extensions import db
from portal.models import Job
from portal.services import distribution_points as dps


@pytest.fixture
def rescan(admin, work):
    def _rescan(dp):
        job, _ = dps.request_rescan(dp, admin)
        work()
        assert fresh(job.id).state == "succeeded", fresh(job.id).error
    return _rescan


def fresh(job_id):
    db.session.expire_all()
    return db.session.get(Job, job_id)


def status_at(dp, key):
    db.session.expire_all()
    items = {i["key"]: i for i in dps.content(dp)}
    return items[key]["status"] if key in items else None


