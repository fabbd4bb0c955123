"""The daily sweep of partial cloud uploads nobody continued (`rq cron`: DEPOT_SWEEP_CRON)."""
import json
from datetime import timedelta

from portal.extensions import db
from portal.jobs import cron  # noqa: F401 - the schedule imports and registers cleanly
from portal.models import UploadSession, utcnow
from portal.services import secrets, transfer
from tests.cloud.s3_fixtures import BUCKET


def test_sweep_aborts_old_s3_uploads_and_forgets_old_records(app, s3_dp, s3_client):
    """Does the sweep abort the DP's abandoned multipart uploads and drop resume records older
    than DEPOT_UPLOAD_ABANDON_AFTER, keeping younger records and an old upload a copy still
    works on (a long copy under a bandwidth cap)?"""
    s3_client.create_multipart_upload(Bucket=BUCKET, Key="depot/hq/Images/old.wim")
    busy = s3_client.create_multipart_upload(Bucket=BUCKET, Key="depot/hq/Images/new.wim")
    now = utcnow()
    for path, age in (("Images/old.wim", timedelta(days=8)),
                      ("Images/new.wim", timedelta(hours=1))):
        record = json.dumps({"upload_id": busy["UploadId"]} if path == "Images/new.wim" else {})
        db.session.add(UploadSession(dp_id=s3_dp.id, path=path, size=1, sha256="0" * 64,
                                     data=secrets.encrypt(record), created_at=now - age,
                                     updated_at=now - age))
    db.session.commit()
    outcome = transfer.sweep_abandoned_uploads()
    assert outcome == {s3_dp.name: 1, "records": 1}
    left = s3_client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    assert [u["UploadId"] for u in left] == [busy["UploadId"]]
    assert [row.path for row in db.session.query(UploadSession)] == ["Images/new.wim"]


def test_a_dp_that_fails_the_sweep_does_not_stop_it(app, s3_dp, make_s3_dp, s3_client):
    """Does one DP whose provider does not answer leave the others' sweep and the records alone?"""
    make_s3_dp("Unreachable", endpoint_url="http://127.0.0.1:9")
    s3_client.create_multipart_upload(Bucket=BUCKET, Key="depot/hq/Images/old.wim")
    outcome = transfer.sweep_abandoned_uploads()
    assert outcome == {s3_dp.name: 1, "records": 0}
    assert "Unreachable" not in outcome
