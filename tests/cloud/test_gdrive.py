"""Google Drive DPs against a local fake Drive that speaks Drive API v3 and enforces its rules:
copies on real RQ workers, token renewal, resumable uploads, listing, links and deletes."""
import hashlib
import os

import pytest

from portal.extensions import db
from portal.models import DistributionPoint, Job
from portal.services import copies
from portal.services import distribution_points as dps
from portal.storage import storage_for
from tests.cloud.gdrive_fixtures import GDRIVE_CHUNK, gdrive_settings
from tests.conftest import wait_for
from tests.factories import write_file

MB = 1024 * 1024


@pytest.fixture
def config_overrides(gdrive):
    return gdrive_settings(gdrive, DEPOT_RETRY_BASE_SECONDS=1, DEPOT_JOB_RETRIES=3)


@pytest.fixture
def rescan(admin, work):
    def _rescan(dp):
        job, _ = dps.request_rescan(dp, admin)
        work()
        done = fresh(job.id)
        assert done.state == "succeeded", done.error
        return done
    return _rescan


def fresh(job_id):
    db.session.expire_all()
    return db.session.get(Job, job_id)


def status_at(dp, key):
    db.session.expire_all()
    items = {i["key"]: i for i in dps.content(dp)}
    return items[key]["status"] if key in items else None


def copy(admin, work, key, dp):
    [job] = copies.request_copies(admin, [key], [dp.id])
    work()
    return fresh(job.id)


@pytest.fixture
def image(central, rescan):
    """A 1 MiB + 1000 bytes image at central (five chunks of 256 KiB at the fake), rescanned."""
    data = os.urandom(MB + 1000)
    write_file(central.root, "Images/Win11.wim", data)
    rescan(central)
    return data


def test_copy_to_google_drive_arrives_whole_and_current(gdrive, gdrive_dp, image, admin, work):
    """Does a copy on a real RQ worker put the exact bytes in the account and end `current`?"""
    dp = gdrive_dp()
    job = copy(admin, work, "Images/Win11.wim", dp)
    assert job.state == "succeeded", job.error
    assert job.bytes_done == job.bytes_total == len(image)
    assert gdrive.read("alice", "Depot/Images/Win11.wim") == image
    item = gdrive.find("alice", "Depot/Images/Win11.wim")
    assert item["appProperties"] == {"depot_sha256": hashlib.sha256(image).hexdigest(),
                                     "depot_md5": hashlib.md5(image).hexdigest(),
                                     "depot_size": str(len(image))}
    sizes = [c["length"] for c in gdrive.chunks]
    assert sizes == [GDRIVE_CHUNK] * 4 + [1000]  # in order, 256 KiB each but the last
    assert all(c["status"] in (308, 201) for c in gdrive.chunks)
    assert status_at(dp, "Images/Win11.wim") == "current"
    again = copy(admin, work, "Images/Win11.wim", dp)
    assert again.state == "succeeded" and "0 file(s) sent, 1 already there" in again.summary


def test_an_access_token_that_expires_mid_copy_is_renewed_once(gdrive, gdrive_dp, image, admin,
                                                                work):
    """When the access token expires between two chunks, is it renewed once (Google keeps the
    refresh token) and does the copy go on to the end?"""
    import json

    from portal.services import secrets

    dp = gdrive_dp()
    before = json.loads(secrets.decrypt(dp.secret))
    gdrive.after_chunk = lambda n: n == 2 and gdrive.expire_access_tokens()
    job = copy(admin, work, "Images/Win11.wim", dp)
    assert job.state == "succeeded", job.error
    assert gdrive.refreshes == 1
    assert gdrive.read("alice", "Depot/Images/Win11.wim") == image
    assert [c["status"] for c in gdrive.chunks] == [308, 308, 308, 308, 201]  # none refused twice
    db.session.expire_all()
    after = json.loads(secrets.decrypt(db.session.get(DistributionPoint, dp.id).secret))
    assert after["access_token"] != before["access_token"]
    assert after["refresh_token"] == before["refresh_token"]


def test_a_revoked_consent_fails_the_copy_and_asks_for_a_reconnect(gdrive, gdrive_dp, image,
                                                                    admin, work):
    """Does a refused refresh fail the copy with a reason that says to reconnect, turn the DP
    needs-auth, and leak no token?"""
    import json

    from portal.services import secrets

    dp = gdrive_dp()
    token = json.loads(secrets.decrypt(dp.secret))
    gdrive.revoke("alice")
    job = copy(admin, work, "Images/Win11.wim", dp)
    assert job.state == "failed"
    assert "reconnect" in job.error and "Home Drive" in job.error
    assert gdrive.chunks == []
    db.session.expire_all()
    assert db.session.get(DistributionPoint, dp.id).status == "needs-auth"
    for secret in (token["access_token"], token["refresh_token"]):
        assert secret not in job.error and secret not in repr(storage_for(dp))


def test_an_interrupted_upload_resumes_its_session_and_sends_only_the_rest(
        gdrive, gdrive_dp, central, rescan, admin, gdrive_worker_env, start_worker, tmp_path):
    """When the connection drops in the middle of a chunk, does the next try ask Drive how much of
    the same session it kept and send only the rest, on a real worker with its scheduler?"""
    dp = gdrive_dp()
    data = os.urandom(2 * MB + 5)
    write_file(central.root, "Images/Big.wim", data)
    rescan(central)  # with a Drive DP in place, central computes the MD5 too
    gdrive_worker_env["DEPOT_GDRIVE_CHUNK"] = str(512 * 1024)
    gdrive.after_chunk = lambda n: n == 2 and gdrive.fail_uploads(1, "drop")
    [job] = copies.request_copies(admin, ["Images/Big.wim"], [dp.id])
    start_worker()
    wait_for(lambda: fresh(job.id).state in ("succeeded", "failed"), timeout=60,
             message="the copy to end")
    done = fresh(job.id)
    assert done.state == "succeeded", done.error
    assert any("does not answer" in w for w in done.warnings)
    assert gdrive.read("alice", "Depot/Images/Big.wim") == data
    sent = [(c["start"], c["length"], c["status"]) for c in gdrive.chunks]
    half = 256 * 1024
    # the third chunk was cut off: Drive kept its first 256 KiB; the resume sent from there
    assert sent == [(0, 2 * half, 308), (2 * half, 2 * half, 308), (4 * half, 2 * half, "dropped"),
                    (5 * half, half, 308), (6 * half, 2 * half, 308), (8 * half, 5, 201)]
    assert len({c["upload_id"] for c in gdrive.chunks}) == 1  # the same session, resumed
    assert ("PUT", "/upload/drive/v3/files", 0) in gdrive.log  # the status query
    assert gdrive.upload_bytes() - len(data) == half  # only the part Drive dropped, again
    assert status_at(dp, "Images/Big.wim") == "current"
    with open(tmp_path / "worker-0.log", "rb") as fh:
        log = fh.read()
    for upload_id in {c["upload_id"] for c in gdrive.chunks}:
        assert upload_id.encode() not in log
    for token in gdrive.access_tokens:
        assert token.encode() not in log


def test_an_expired_session_starts_the_upload_again(gdrive, gdrive_dp, image, admin, work):
    """When Drive has forgotten the saved session, does the next try start a new one and finish?"""
    from portal.services import jobs as jobs_service

    dp = gdrive_dp()
    gdrive.after_chunk = lambda n: n == 2 and gdrive.fail_uploads(1, "500")
    job = copy(admin, work, "Images/Win11.wim", dp)
    assert job.state == "queued" and job.retries == 1  # a passing failure: tried again later
    gdrive.expire_upload_sessions()
    jobs_service.run_job(job.id, copies.copy_asset)
    done = fresh(job.id)
    assert done.state == "succeeded", done.error
    assert gdrive.read("alice", "Depot/Images/Win11.wim") == image
    assert len({c["upload_id"] for c in gdrive.chunks}) == 2
    assert [c["start"] for c in gdrive.chunks if c["upload_id"] == gdrive.chunks[-1]["upload_id"]] \
        == [0, GDRIVE_CHUNK, 2 * GDRIVE_CHUNK, 3 * GDRIVE_CHUNK, 4 * GDRIVE_CHUNK]


def test_a_chunk_size_drive_would_refuse_is_never_sent(gdrive, gdrive_dp, image, admin, work, app):
    """Is DEPOT_GDRIVE_CHUNK that is not a multiple of 256 KiB refused before anything is sent?"""
    dp = gdrive_dp()
    app.config["DEPOT_GDRIVE_CHUNK"] = 300 * 1024
    calls = len(gdrive.log)
    job = copy(admin, work, "Images/Win11.wim", dp)
    assert job.state == "failed"
    assert "DEPOT_GDRIVE_CHUNK must be a multiple of 256 KiB" in job.error
    assert gdrive.log[calls:] == [] and gdrive.sessions == {} and gdrive.chunks == []


def test_a_piece_drive_would_refuse_is_never_sent(gdrive, gdrive_dp, app):
    """Does the upload refuse, before sending, a piece that breaks Drive's 256 KiB rule?"""
    from portal.storage.base import Source, StorageRefused, UploadState

    dp = gdrive_dp()
    data = os.urandom(MB)
    backend = storage_for(dp)
    upload = backend.upload(Source("Images/x.wim", len(data), hashlib.sha256(data).hexdigest(), {},
                                   lambda o, n: data[o:o + n]), UploadState())
    with pytest.raises(StorageRefused, match="not a multiple of 256 KiB"):
        upload.send(0, data[:1000])
    with pytest.raises(StorageRefused, match="out of order"):
        upload.send(GDRIVE_CHUNK, data[GDRIVE_CHUNK:2 * GDRIVE_CHUNK])
    assert gdrive.chunks == []
    upload.abort()
    assert gdrive.sessions == {}
    backend.http.close()


def test_a_file_damaged_on_the_way_is_deleted_and_sent_again(gdrive, gdrive_dp, image, admin,
                                                             work):
    """When Drive's MD5 of the finished upload is not central's, is the file deleted there and
    the copy tried again?"""
    dp = gdrive_dp()
    gdrive.damage_next_upload()
    job = copy(admin, work, "Images/Win11.wim", dp)
    assert job.state == "queued"
    assert any("arrived damaged" in w for w in job.warnings)
    assert gdrive.find("alice", "Depot/Images/Win11.wim") is None
