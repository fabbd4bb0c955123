"""OneDrive DPs against a local Microsoft Graph (tests/fakes/graph.py): copies on real RQ workers,
token renewal and revocation, resumed upload sessions, Graph's fragment rules, content already in
the account, two accounts side by side, download links, deletes, paging, and secrets kept out of
what people see."""
import hashlib
import os

import pytest

from portal.extensions import db
from portal.models import Job
from portal.services import copies
from portal.services import distribution_points as dps
from tests.cloud.onedrive_fixtures import ONEDRIVE_CHUNK, onedrive_backend
from tests.factories import write_file

KIB = 1024
MB = 1024 * 1024


@pytest.fixture
def config_overrides(onedrive_config):
    return onedrive_config


def fresh(job_id):
    db.session.expire_all()
    return db.session.get(Job, job_id)


def status_at(dp, key):
    db.session.expire_all()
    items = {i["key"]: i for i in dps.content(dp)}
    return items[key]["status"] if key in items else None


@pytest.fixture
def rescan(admin, work):
    def _rescan(dp):
        job, _ = dps.request_rescan(dp, admin)
        work()
        assert fresh(job.id).state == "succeeded", fresh(job.id).error
        return fresh(job.id)
    return _rescan


@pytest.fixture
def copy(admin, work):
    def _copy(keys, dp):
        started = copies.request_copies(admin, keys, [dp.id])
        work()
        return [fresh(job.id) for job in started]
    return _copy


def test_copy_to_onedrive_arrives_identical_and_current(central, rescan, copy, onedrive_dp,
                                                        graph_fake):
    """Does a copied image arrive byte-identical in the account, in 640 KiB fragments, and turn
    `current`, with its SHA-256 recorded beside it?"""
    dp = onedrive_dp("OneDrive HQ")
    data = os.urandom(3 * MB + 17)
    write_file(central.root, "Images/Win11-23H2.wim", data)
    rescan(central)
    assert status_at(dp, "Images/Win11-23H2.wim") == "missing"
    [job] = copy(["Images/Win11-23H2.wim"], dp)
    assert job.state == "succeeded", job.error
    assert job.bytes_done == job.bytes_total == len(data)
    assert graph_fake.file("alice", "Depot/Images/Win11-23H2.wim") == data
    puts = graph_fake.upload_puts()
    assert [p["length"] for p in puts] == [ONEDRIVE_CHUNK] * 4 + [len(data) - 4 * ONEDRIVE_CHUNK]
    assert [p["status"] for p in puts] == [202] * 4 + [201]
    assert status_at(dp, "Images/Win11-23H2.wim") == "current"
    record = graph_fake.file("alice", "Depot/.depot/manifest/Images/Win11-23H2.wim.json")
    assert hashlib.sha256(data).hexdigest().encode() in record
    rescan(dp)  # what the account itself says (the manifest record) agrees
    assert status_at(dp, "Images/Win11-23H2.wim") == "current"
    assert not any(".depot" in item["key"] for item in dps.content(dp))
    [again] = copy(["Images/Win11-23H2.wim"], dp)
    assert "0 file(s) sent, 1 already there" in again.summary
    assert len(graph_fake.upload_puts()) == len(puts)
