"""Dropbox DPs against a local server that speaks Dropbox API v2 (tests/fakes/dropbox.py): copies
on real RQ workers, resumable upload sessions, token refresh and revocation, rescans of content
already in the account, links, deletes, and two accounts side by side."""
import hashlib
import json
import logging
import os

import pytest
import requests
from sqlalchemy import select

from portal.extensions import db
from portal.models import InventoryFile, UploadSession
from portal.services import copies, secrets
from portal.services import distribution_points as dps
from portal.storage.base import FileEntry, NeedsAuth, Source, StorageRefused, UploadState
from portal.storage.dropbox import MAX_REQUEST, ContentHasher, DropboxStorage
from tests.cloud.dropbox_fixtures import DROPBOX_CHUNK, dropbox_backend
from tests.copies.conftest import fresh, status_at
from tests.factories import write_file
from tests.fakes.dropbox import content_hash

MiB = 1024 * 1024


@pytest.fixture
def config_overrides(dropbox_config):
    return dropbox_config


@pytest.fixture
def rescan(admin, work):
    def _rescan(dp):
        job, _ = dps.request_rescan(dp, admin)
        work()
        done = fresh(job.id)
        assert done.state == "succeeded", done.error
        return done
    return _rescan


def copy(admin, work, key, dp):
    [job] = copies.request_copies(admin, [key], [dp.id])
    work()
    return fresh(job.id)


@pytest.fixture
def image(central, rescan):
    """A 1 MiB + 17 bytes image at central, scanned: (key, data)."""
    data = os.urandom(MiB + 17)
    write_file(central.root, "Images/Win11.wim", data)
    rescan(central)
    return "Images/Win11.wim", data


def test_copy_lands_byte_identical_and_current(dropbox_fake, dropbox_dp, image, admin, work,
                                               rescan):
    """Does a copy on a real worker go up in 150-MiB-rule pieces through one upload session, arrive
    byte-identical in the account, and turn `current` (also after a rescan)?"""
    key, data = image
    dp = dropbox_dp("Dropbox HQ")
    job = copy(admin, work, key, dp)
    assert job.state == "succeeded", job.error
    assert job.bytes_done == job.bytes_total == len(data)
    assert dropbox_fake.file("alice", "/Depot/Images/Win11.wim") == data
    starts = [u for u in dropbox_fake.uploads if u["endpoint"].endswith("start")]
    assert len(starts) == 1
    appended = dropbox_fake.appended()
    assert [offset for offset, _ in appended] == list(range(0, len(data), DROPBOX_CHUNK))
    assert all(0 < size <= DROPBOX_CHUNK for _, size in appended)
    record = json.loads(dropbox_fake.file("alice", "/Depot/.depot/manifest/Images/Win11.wim.json"))
    assert record == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                      "dropbox": content_hash(data)}
    assert status_at(dp, key) == "current"
    row = db.session.scalar(select(InventoryFile).where(InventoryFile.dp_id == dp.id))
    assert json.loads(row.hashes) == {"dropbox": content_hash(data)}
    rescan(dp)
    assert status_at(dp, key) == "current"
    [item] = dps.content(dp, "Images")
    assert item["size"] == len(data)
    again = copy(admin, work, key, dp)
    assert "0 file(s) sent, 1 already there" in again.summary
