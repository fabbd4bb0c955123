"""Health checks of cloud DPs (every DEPOT_HEALTH_INTERVAL from `rq cron`): cheap, writing
nothing, and telling offline from needs-auth."""
import pytest

from portal.extensions import db
from portal.models import DistributionPoint, Notification
from portal.services import dp_management
from tests.cloud.s3_fixtures import BUCKET


@pytest.fixture
def config_overrides(onedrive_config):
    return onedrive_config


def statuses():
    db.session.expire_all()
    return {dp.name: dp.status
            for dp in db.session.query(DistributionPoint).filter_by(kind="cloud")}


def test_cloud_dps_are_checked_without_writing(app, admin, s3, s3_dp, onedrive_dp, graph_fake,
                                              s3_client):
    """Does the check find an S3 bucket that stopped answering offline, a withdrawn OneDrive
    consent needs-auth (each notified once), and both online again, writing no object?"""
    onedrive = onedrive_dp("Remote workers")
    dp_management.check_health()
    assert statuses() == {s3_dp.name: "online", "Remote workers": "online"}
    assert s3.calls.get(("PUT", "object"), 0) == 0
    assert s3_client.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0

    s3.stop()
    graph_fake.expire_access_tokens()
    graph_fake.revoke("alice")
    dp_management.check_health()
    dp_management.check_health()
    assert statuses() == {s3_dp.name: "offline", "Remote workers": "needs-auth"}
    kinds = [n.kind for n in db.session.query(Notification)]
    assert kinds.count("dp.offline") == kinds.count("dp.needs_auth") == 1
    reason = db.session.get(DistributionPoint, onedrive.id).status_reason
    assert "reconnect it" in reason

    s3.start()
    dp_management.check_health()
    assert statuses()[s3_dp.name] == "online"


def test_the_daily_sweep_passes_over_every_kind_of_cloud_dp(app, s3_dp, onedrive_dp):
    """Does the sweep run over an S3 and a OneDrive DP alike (OneDrive keeps no list of its
    sessions: nothing to abort there)?"""
    from portal.services import transfer

    onedrive = onedrive_dp("Remote workers")
    assert transfer.sweep_abandoned_uploads() == {s3_dp.name: 0, onedrive.name: 0, "records": 0}
