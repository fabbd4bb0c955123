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
