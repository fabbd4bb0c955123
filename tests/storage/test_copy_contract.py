"""Copies, rescans, verifies and deletes run as jobs (on RQ workers, in this process or killed in
their own) against every DP that takes uploads: a DP node, S3 on moto, OneDrive, Google Drive and
Dropbox on their protocol servers. The jobs talk to a DP only through the storage interface, so
what they promise holds for each alike; what a provider does its own way is in tests/cloud/."""
import hashlib
import json
import os

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import InventoryFile, UploadSession
from portal.services import copies, job_recovery, verify
from portal.services import distribution_points as dps
from tests.factories import write_file
from tests.helpers import copy_one, fresh, status_at, wait_for
from tests.storage.places import MiB

IMAGE = "Images/Win11.wim"
EMPTY = "Answer Files/Überblick – 日本.xml"  # an empty file, its name beyond ASCII


@pytest.fixture
def config_overrides():
    """A copy that failed for a passing reason is tried again at once."""
    return {"DEPOT_RETRY_BASE_SECONDS": 0}


def inventory_row(dp, path):
    db.session.expire_all()
    return db.session.scalar(select(InventoryFile).where(InventoryFile.dp_id == dp.id,
                                                         InventoryFile.path == path))


def test_a_copy_arrives_identical_and_current_and_a_delete_takes_it_away(
        uploading, central, rescan, admin, work):
    """Does a copy on a worker put the exact bytes at the DP (an empty file with a name beyond
    ASCII too) and turn the assets from `missing` to `current`, also after a rescan of the DP;
    does a second copy send nothing; and does a delete job take the file and what Depot kept
    beside it, the asset turning `missing` again and its library folder staying?"""
    dp, data = uploading.dp, os.urandom(5 * MiB + 1000)
    write_file(central.root, IMAGE, data)
    write_file(central.root, EMPTY, b"")
    rescan(central)
    assert status_at(dp, IMAGE) == status_at(dp, EMPTY) == "missing"
    started = copies.request_copies(admin, [IMAGE, EMPTY], [dp.id])
    work()
    image, empty = (fresh(job.id) for job in started)
    assert image.state == empty.state == "succeeded", (image.error, empty.error)
    assert image.bytes_done == image.bytes_total == len(data)
    assert uploading.read(IMAGE) == data and uploading.read(EMPTY) == b""
    assert status_at(dp, IMAGE) == status_at(dp, EMPTY) == "current"
    assert db.session.scalar(select(UploadSession.id)) is None  # nothing left to resume
    rescan(dp)  # what the DP itself says agrees
    assert status_at(dp, IMAGE) == status_at(dp, EMPTY) == "current"
    items = {item["key"]: item for item in dps.content(dp)}
    assert sorted(items) == sorted([EMPTY, IMAGE]) and items[IMAGE]["size"] == len(data)
    again = copy_one(admin, work, IMAGE, dp)
    assert "0 file(s) sent, 1 already there" in again.summary
    deleted = copies.request_delete(admin, dp, IMAGE)
    work()
    assert fresh(deleted.id).state == "succeeded", fresh(deleted.id).error
    assert status_at(dp, IMAGE) == "missing"
    left = uploading.files()
    assert EMPTY in left and not any("Win11" in path for path in left)
    assert uploading.libraries() is None or "Images" in uploading.libraries()


def test_content_already_there_is_found_by_the_first_rescan_without_a_download(
        uploading, central, rescan):
    """Does the first rescan of a DP list what an older console (or a person) put there, take a
    file with central's very bytes as `current` without downloading it (a folder asset too), and
    leave out hidden, temporary and non-library files?"""
    dp, image, part = uploading.dp, os.urandom(700_000), os.urandom(5000)
    write_file(central.root, "Images/Old.wim", image)
    write_file(central.root, "Reference Machines/Win11-Ref/a/b.bin", part)
    rescan(central)  # with the DP there, central computes the provider's hash too
    for path, data in (("Images/Old.wim", image), ("Reference Machines/Win11-Ref/a/b.bin", part),
                       ("Images/Foreign.wim", b"only at the DP"), ("Images/.hidden", b"h"),
                       ("Images/copy.tmp", b"t"), ("Other/notes.txt", b"n")):
        uploading.put(path, data)
    downloads = uploading.downloads()
    rescan(dp)
    items = {item["key"]: item for item in dps.content(dp)}
    assert set(items) == {"Images/Old.wim", "Reference Machines/Win11-Ref", "Images/Foreign.wim"}
    assert items["Images/Old.wim"]["status"] == "current"
    assert items["Reference Machines/Win11-Ref"]["status"] == "current"
    # Content nobody recorded and central does not have: hashed where the DP hashes, else once
    # by a verify.
    hashes_itself = uploading.kind == "node"
    assert items["Images/Foreign.wim"]["status"] == ("only-here" if hashes_itself
                                                     else "unverified")
    row = inventory_row(dp, "Images/Old.wim")
    assert row.sha256 == hashlib.sha256(image).hexdigest()
    with uploading.open() as backend:
        [listed] = [e for e in backend.walk([]) if e.path == "Images/Old.wim"]
    assert json.loads(row.hashes or "{}") == listed.hashes  # the provider's own hash, kept
    assert uploading.downloads() == downloads  # nothing downloaded to find that out


def test_a_file_damaged_on_the_way_is_sent_again(uploading, central, rescan, admin, work):
    """When a file arrives damaged (the DP's check at the end fails, or the DP refuses a damaged
    piece itself), is it sent again, the copy ending with the exact bytes and saying so?"""
    data = os.urandom(5 * MiB + 1000)
    write_file(central.root, IMAGE, data)
    rescan(central)
    uploading.damage_next_upload()
    job = copy_one(admin, work, IMAGE, uploading.dp)
    assert job.state == "succeeded", job.error
    assert any("arrived damaged" in warning for warning in job.warnings), job.warnings
    assert uploading.read(IMAGE) == data


def test_verify_trusts_what_the_dp_vouches_for_and_flags_a_file_changed_there(
        uploading, central, rescan, admin, work):
    """Does a verify pass the files whose bytes the DP vouches for without downloading them, hash
    once what nobody recorded, flag a file whose bytes changed there (same size and time), and
    does a copy then repair it?"""
    dp, good, bad = uploading.dp, os.urandom(300_000), os.urandom(300_000)
    write_file(central.root, "Images/Good.wim", good)
    write_file(central.root, "Images/Bad.wim", bad)
    rescan(central)
    copies.request_copies(admin, ["Images/Good.wim", "Images/Bad.wim"], [dp.id])
    work()
    uploading.put("Media/foreign.iso", b"written by hand")
    rescan(dp)
    assert status_at(dp, "Media/foreign.iso") == ("only-here" if uploading.kind == "node"
                                                  else "unverified")
    changed = uploading.corrupt("Images/Bad.wim")  # an S3 object cannot change in place
    downloads = uploading.downloads()
    job, _ = verify.request_verify(dp, admin)
    work()
    done = fresh(job.id)
    assert done.state == "succeeded", done.error
    assert status_at(dp, "Images/Good.wim") == "current"
    assert status_at(dp, "Media/foreign.iso") == "only-here"
    if downloads is not None:  # only what the provider's hash cannot vouch for is read
        read = {"Media/foreign.iso", *(["Images/Bad.wim"] if changed else [])}
        assert sorted(uploading.downloads()[len(downloads):]) == sorted(read)
        assert "1 hashed for the first time" in done.summary
    if not changed:
        assert "all intact" in done.summary
        return
    assert "1 hash mismatch(es)" in done.summary
    assert status_at(dp, "Images/Bad.wim") == "failed"
    repair = copy_one(admin, work, "Images/Bad.wim", dp)
    assert repair.state == "succeeded", repair.error
    assert uploading.read("Images/Bad.wim") == bad
    assert status_at(dp, "Images/Bad.wim") == "current"


@pytest.mark.slow
def test_a_copy_whose_worker_is_killed_resumes_its_upload_in_another_process(
        cloud, central, rescan, admin, start_worker):
    """After SIGKILL of the worker half way, with nothing partial visible under the file's name,
    does the recovered copy (another process) take up the upload saved (encrypted) in the
    database, send only what the DP lacks, and end identical? (A DP node's: in
    tests/copies/test_copy_resume.py.)"""
    data = os.urandom(8 * cloud.piece + 321)
    write_file(central.root, IMAGE, data)
    rescan(central)
    cloud.dp.bandwidth_limit = cloud.piece + cloud.piece // 2  # about six seconds in all
    db.session.commit()
    [job] = copies.request_copies(admin, [IMAGE], [cloud.dp.id])
    worker = start_worker()
    wait_for(lambda: (fresh(job.id).bytes_done or 0) >= 3 * cloud.piece, timeout=60,
             message="the copy to get three pieces there")
    worker.kill()
    assert cloud.read(IMAGE) is None  # never a partial file under its name
    held = cloud.held_bytes()
    assert 3 * cloud.piece <= held < len(data)
    saved = db.session.scalars(select(UploadSession).where(
        UploadSession.dp_id == cloud.dp.id)).all()
    assert saved, "the upload to take up again is kept in the database"
    assert not any(secret in row.data for row in saved for secret in cloud.secrets())
    wait_for(lambda: job_recovery.recover_lost_jobs().get(job.id) == "requeued", timeout=30,
             message="recovery to notice the dead worker")
    cloud.dp.bandwidth_limit = None  # the rest need not be slow
    db.session.commit()
    sent_before = cloud.sent_bytes()
    start_worker()
    wait_for(lambda: fresh(job.id).state in ("succeeded", "failed"), timeout=90,
             message="the resumed copy to finish")
    done = fresh(job.id)
    assert done.state == "succeeded", done.error
    assert cloud.read(IMAGE) == data
    assert cloud.sessions_started() == 1  # the one upload, taken up again
    assert cloud.sent_bytes() - sent_before == len(data) - held  # each missing byte once
    assert cloud.partial_uploads() in (0, None)
    assert status_at(cloud.dp, IMAGE) == "current"
