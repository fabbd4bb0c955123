"""Jobs against an S3 DP on moto's server, run by real RQ workers, in what is S3's own: parts and
PutObjects, the server dropping away mid-copy, rescans and verifies that read our metadata and
ETags instead of the objects, and an S3 DP added as the console does. Copies, deletes and killed
workers as every DP has them are in tests/storage/test_copy_contract.py."""
import hashlib
import os

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import InventoryFile, UploadSession
from portal.services import cloud_dps, copies, verify
from tests.cloud.s3_fixtures import BUCKET, CREDENTIALS
from tests.factories import write_file
from tests.helpers import fresh, status_at, wait_for

MiB = 1024 * 1024
PART = 5 * MiB
PREFIX = "depot/hq/"


@pytest.fixture
def config_overrides():
    return {"DEPOT_S3_PART_SIZE": PART, "DEPOT_S3_PARALLEL": 3, "DEPOT_COPY_STREAMS": 3,
            "DEPOT_RETRY_BASE_SECONDS": 1}


@pytest.fixture
def worker_env(worker_env, app):
    """`rq worker` processes get this test's S3 settings too."""
    for name in ("DEPOT_S3_PART_SIZE", "DEPOT_S3_PARALLEL", "DEPOT_COPY_STREAMS"):
        worker_env[name] = str(app.config[name])
    return worker_env


def head(s3_client, path):
    return s3_client.head_object(Bucket=BUCKET, Key=PREFIX + path, ChecksumMode="ENABLED")


def body(s3_client, path):
    with s3_client.get_object(Bucket=BUCKET, Key=PREFIX + path)["Body"] as stream:
        return stream.read()


def keys(s3_client):
    listed = s3_client.list_objects_v2(Bucket=BUCKET, Prefix=PREFIX)
    return sorted(o["Key"][len(PREFIX):] for o in listed.get("Contents", []))


def inventory(dp):
    db.session.expire_all()
    return {row.path: row for row in db.session.scalars(
        select(InventoryFile).where(InventoryFile.dp_id == dp.id))}


def test_copy_to_s3_makes_file_and_folder_assets_current(central, admin, rescan, s3, s3_dp,
                                                         s3_client, work):
    """Do a multipart image and a folder of small files arrive whole at the bucket, with our
    SHA-256 in their metadata, and turn `current`; is a second copy a no-op?"""
    image = os.urandom(2 * PART + 123)
    write_file(central.root, "Images/Win11.wim", image)
    write_file(central.root, "Platform Packs/Dell/drivers/a.inf", b"a driver")
    write_file(central.root, "Platform Packs/Dell/readme.txt", b"")
    rescan(central)
    started = copies.request_copies(admin, ["Images/Win11.wim", "Platform Packs/Dell"], [s3_dp.id])
    work()
    for job in started:
        assert fresh(job.id).state == "succeeded", fresh(job.id).error
    assert fresh(started[0].id).bytes_done == len(image)
    assert body(s3_client, "Images/Win11.wim") == image
    assert head(s3_client, "Images/Win11.wim")["Metadata"] == {
        "sha256": hashlib.sha256(image).hexdigest()}
    assert head(s3_client, "Images/Win11.wim")["ChecksumType"] == "FULL_OBJECT"
    assert body(s3_client, "Platform Packs/Dell/drivers/a.inf") == b"a driver"
    assert sorted(s3.parts) == [1, 2, 3]
    assert s3.calls[("PUT", "object")] == 2  # the two small files, one PutObject each
    assert status_at(s3_dp, "Images/Win11.wim") == "current"
    assert status_at(s3_dp, "Platform Packs/Dell") == "current"
    row = inventory(s3_dp)["Images/Win11.wim"]
    assert row.sha256 == hashlib.sha256(image).hexdigest() and row.size == len(image)
    assert db.session.scalar(select(UploadSession.id)) is None  # nothing left to resume
    s3.forget_requests()
    [again] = copies.request_copies(admin, ["Images/Win11.wim"], [s3_dp.id])
    work()
    assert "0 file(s) sent, 1 already there" in fresh(again.id).summary
    assert not s3.parts


@pytest.mark.slow
def test_s3_dropping_mid_copy_is_retried_and_the_upload_resumes(
        central, admin, rescan, s3, s3_dp, s3_client, start_worker):
    """When the endpoint stops answering half way and comes back, does the copy retry, resume
    the same multipart upload, and end identical?"""
    image = os.urandom(6 * PART)
    write_file(central.root, "Images/Win11.wim", image)
    rescan(central)
    s3_dp.bandwidth_limit = 6 * MiB
    db.session.commit()
    [job] = copies.request_copies(admin, ["Images/Win11.wim"], [s3_dp.id])
    start_worker()
    wait_for(lambda: (fresh(job.id).bytes_done or 0) >= 2 * PART, timeout=60,
             message="two parts to arrive")
    s3.stop()
    wait_for(lambda: fresh(job.id).retries >= 1, timeout=60, message="the copy to retry")
    assert any("Depot could not connect to" in w or "did not answer" in w
               or "closed the connection" in w for w in fresh(job.id).warnings)
    s3.start()
    [upload] = s3_client.list_multipart_uploads(Bucket=BUCKET)["Uploads"]
    wait_for(lambda: fresh(job.id).state in ("succeeded", "failed"), timeout=90,
             message="the copy to finish once S3 is back")
    done = fresh(job.id)
    assert done.state == "succeeded", done.error
    assert body(s3_client, "Images/Win11.wim") == image
    assert s3.calls[("POST", "uploads")] == 1  # the one upload, resumed rather than started again
    assert len(s3.parts) < 6 + 3  # at most the parts in flight when it dropped went twice
    assert upload["Key"] == PREFIX + "Images/Win11.wim"


def test_rescan_of_an_s3_dp_takes_hashes_from_metadata_without_downloading(
        central, admin, rescan, s3, s3_dp, s3_client, work):
    """Does a rescan find what Depot wrote as current (SHA-256 from the metadata, no GetObject),
    and what others put there as unverified?"""
    image = os.urandom(PART + 7)
    write_file(central.root, "Images/Win11.wim", image)
    rescan(central)
    copies.request_copies(admin, ["Images/Win11.wim"], [s3_dp.id])
    work()
    s3_client.put_object(Bucket=BUCKET, Key=PREFIX + "Media/by-someone-else.iso", Body=b"iso")
    db.session.execute(InventoryFile.__table__.delete().where(InventoryFile.dp_id == s3_dp.id))
    db.session.commit()  # forget what the copy recorded: the rescan must find it all by itself
    s3.forget_requests()
    job = rescan(s3_dp)
    assert "2 files" in job.summary
    assert s3.calls[("GET", "object")] == 0  # nothing downloaded
    assert s3.calls[("GET", "list")] == 1 + 6  # the connection check, then each library folder
    assert s3.calls[("HEAD", "object")] == 2
    rows = inventory(s3_dp)
    assert rows["Images/Win11.wim"].sha256 == hashlib.sha256(image).hexdigest()
    assert rows["Media/by-someone-else.iso"].sha256 is None
    assert status_at(s3_dp, "Images/Win11.wim") == "current"
    assert status_at(s3_dp, "Media/by-someone-else.iso") == "unverified"
    s3.forget_requests()
    rescan(s3_dp)  # only the object nobody recorded is looked at again
    assert s3.calls[("HEAD", "object")] == 1 and s3.calls[("GET", "object")] == 0


def test_content_put_there_by_others_matches_central_by_its_md5_etag(central, admin, rescan, s3,
                                                                     s3_dp, s3_client):
    """A file someone uploaded in one PUT (its ETag is its MD5) with central's very bytes: is it
    current after a rescan, with nothing downloaded from S3?"""
    answer = b"<unattend>same bytes as central</unattend>"
    write_file(central.root, "Answer Files/unattend.xml", answer)
    rescan(central)
    s3_client.put_object(Bucket=BUCKET, Key=PREFIX + "Answer Files/unattend.xml", Body=answer)
    s3_client.put_object(Bucket=BUCKET, Key=PREFIX + "Answer Files/other.xml", Body=b"other")
    s3.forget_requests()
    rescan(s3_dp)
    assert s3.calls[("GET", "object")] == 0
    row = inventory(s3_dp)["Answer Files/unattend.xml"]
    assert row.sha256 == hashlib.sha256(answer).hexdigest()
    assert status_at(s3_dp, "Answer Files/unattend.xml") == "current"
    assert status_at(s3_dp, "Answer Files/other.xml") == "unverified"


def test_verify_of_an_s3_dp_downloads_only_what_nobody_recorded(central, admin, rescan, s3, s3_dp,
                                                                s3_client, work):
    """Is what Depot wrote vouched for by its unchanged ETag, and a foreign object downloaded and
    hashed once?"""
    image = os.urandom(PART + 3)
    write_file(central.root, "Images/Win11.wim", image)
    rescan(central)
    copies.request_copies(admin, ["Images/Win11.wim"], [s3_dp.id])
    work()
    s3_client.put_object(Bucket=BUCKET, Key=PREFIX + "Media/tools.iso", Body=b"tools")
    rescan(s3_dp)
    s3.forget_requests()
    job, _ = verify.request_verify(s3_dp, admin)
    work()
    done = fresh(job.id)
    assert done.state == "succeeded", done.error
    assert "2 file(s) verified" in done.summary and "all intact" in done.summary
    assert "1 hashed for the first time" in done.summary
    assert s3.calls[("GET", "object")] == 1  # the foreign object only
    assert inventory(s3_dp)["Media/tools.iso"].sha256 == hashlib.sha256(b"tools").hexdigest()


def test_an_s3_dp_added_like_the_console_does_finds_what_an_older_console_put_there(
        central, admin, rescan, s3, s3_settings, s3_client, work):
    """Objects with our SHA-256 in their metadata already in the bucket: after "Add cloud" (its
    connection test, then its first rescan), are they current without any upload?"""
    image = os.urandom(1000)
    write_file(central.root, "Images/Win11.wim", image)
    rescan(central)
    s3_client.put_object(Bucket=BUCKET, Key="depot/branch/Images/Win11.wim", Body=image,
                         Metadata={"sha256": hashlib.sha256(image).hexdigest()})
    s3.forget_requests()
    dp = cloud_dps.add_s3(admin, {"name": "Older", **s3_settings, "prefix": "depot/branch",
                                  **CREDENTIALS})
    work()
    assert status_at(dp, "Images/Win11.wim") == "current"
    assert s3.calls[("PUT", "object")] == 1  # the probe of the connection test; rescans only list
    assert not s3.parts and s3.calls[("GET", "object")] == 0
