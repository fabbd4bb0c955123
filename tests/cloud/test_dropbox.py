"""What is Dropbox's own, against a local server that speaks Dropbox API v2
(tests/fakes/dropbox.py): one upload session a file with pieces appended in order, resumed by
asking the session its offset, the 150 MiB a request rule checked before anything is sent, the
content_hash central computes checked at the end, names Dropbox cannot hold, the manifest record
beside each file, and throttling. What every DP does alike is in tests/storage/ (the storage
contract, copies, the OAuth kit)."""
import hashlib
import json
import os

import pytest
from sqlalchemy import select

from portal.core.errors import StorageRefused
from portal.extensions import db
from portal.models import InventoryFile, UploadSession
from portal.storage.base import Source, UploadState
from portal.storage.dropbox import MAX_REQUEST
from tests.cloud.dropbox_fixtures import DROPBOX_CHUNK, dropbox_backend
from tests.factories import write_file
from tests.fakes.dropbox import content_hash
from tests.helpers import copy_one as copy
from tests.helpers import status_at

MiB = 1024 * 1024


@pytest.fixture
def config_overrides(dropbox_config):
    return dropbox_config


@pytest.fixture
def image(central, rescan):
    """A 1 MiB + 17 bytes image at central, scanned: (key, data)."""
    data = os.urandom(MiB + 17)
    write_file(central.root, "Images/Win11.wim", data)
    rescan(central)
    return "Images/Win11.wim", data


def test_one_session_takes_the_pieces_in_order_and_a_record_is_kept(dropbox_fake, dropbox_dp,
                                                                   image, admin, work):
    """Does a copy go up through one upload session, in pieces of DEPOT_DROPBOX_CHUNK appended in
    order, with a manifest record of the file's size, SHA-256 and content_hash, which the
    inventory keeps as the file's provider hash?"""
    key, data = image
    dp = dropbox_dp("Dropbox HQ")
    job = copy(admin, work, key, dp)
    assert job.state == "succeeded", job.error
    starts = [u for u in dropbox_fake.uploads if u["endpoint"].endswith("start")]
    assert len(starts) == 1
    appended = dropbox_fake.appended()
    assert [offset for offset, _ in appended] == list(range(0, len(data), DROPBOX_CHUNK))
    assert all(0 < size <= DROPBOX_CHUNK for _, size in appended)
    record = json.loads(dropbox_fake.file("alice", "/Depot/.depot/manifest/Images/Win11.wim.json"))
    assert record == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                      "dropbox": content_hash(data)}
    row = db.session.scalar(select(InventoryFile).where(InventoryFile.dp_id == dp.id))
    assert json.loads(row.hashes) == {"dropbox": content_hash(data)}


def test_copy_with_central_content_hash_checks_it_at_the_end(dropbox_fake, dropbox_dp, central,
                                                             admin, work, rescan):
    """When central computed the content_hash at ingest (a Dropbox DP exists), does the copy
    compare Dropbox's answer with it, and a file that changed on the way fail as damaged?"""
    dp = dropbox_dp("Dropbox HQ")
    data = os.urandom(5 * MiB + 3)  # two 4 MiB blocks of content_hash
    write_file(central.root, "Images/Big.wim", data)
    rescan(central)
    row = db.session.scalar(select(InventoryFile).where(InventoryFile.dp_id == central.id))
    assert json.loads(row.hashes)["dropbox"] == content_hash(data)
    job = copy(admin, work, "Images/Big.wim", dp)
    assert job.state == "succeeded", job.error
    assert dropbox_fake.file("alice", "/Depot/Images/Big.wim") == data

    # Central's recorded hash disagrees with what arrives: the file is removed, the copy retried.
    with dropbox_backend(dp) as backend:
        other = os.urandom(1000)
        upload = backend.upload(Source(
            "Images/Odd.bin", len(other), hashlib.sha256(other).hexdigest(),
            {"dropbox": content_hash(b"something else")}, lambda o, n: other[o:o + n]),
            UploadState())
        upload.send(0, other)
        with pytest.raises(StorageRefused, match="arrived damaged"):
            upload.finish()
    assert dropbox_fake.file("alice", "/Depot/Images/Odd.bin") is None


@pytest.mark.parametrize("failure", ["drop", "drop_after", "500", "429"])
def test_an_interrupted_upload_resumes_its_session_sending_only_what_is_missing(
        failure, dropbox_fake, dropbox_dp, image, admin, work):
    """When a piece's request fails (the connection drops before or after Dropbox took the data,
    a 500, or Dropbox throttles), does the retried copy resume the same session from the offset
    Dropbox has, without sending what Dropbox already took?"""
    key, data = image
    dp = dropbox_dp("Dropbox HQ")
    dropbox_fake.after_upload_requests(3, lambda: dropbox_fake.fail_next(1, failure))
    job = copy(admin, work, key, dp)
    assert job.state == "succeeded", job.error
    assert any("try 2" in w for w in job.warnings), job.warnings
    assert dropbox_fake.file("alice", "/Depot/Images/Win11.wim") == data
    starts = [u for u in dropbox_fake.uploads if u["endpoint"].endswith("start")]
    assert len(starts) == 1  # the same session all along
    taken = [(o, s) for o, s in dropbox_fake.appended() if s]
    assert [o for o, _ in taken] == list(range(0, len(data), DROPBOX_CHUNK))  # each byte once
    appends = [u for u in dropbox_fake.uploads if u["endpoint"].endswith("append_v2")]
    sent = sum(u["size"] for u in appends)
    # Only the piece whose data Dropbox did not take goes again; the resume probe is empty.
    assert sent == len(data) + (0 if failure == "drop_after" else DROPBOX_CHUNK)
    probe = [u for u in appends if u["size"] == 0]
    assert len(probe) == 1 and probe[0]["offset"] == 2 * DROPBOX_CHUNK
    assert probe[0]["status"] == (409 if failure == "drop_after" else 200)
    assert db.session.scalar(select(UploadSession)) is None  # the finished upload's record went
    assert status_at(dp, key) == "current"


def test_a_chunk_size_over_dropbox_limit_is_never_sent(app, dropbox_fake, dropbox_dp, image,
                                                       admin, work):
    """Is DEPOT_DROPBOX_CHUNK over 150 MiB refused with a clear reason before any request?"""
    key, _ = image
    dp = dropbox_dp("Dropbox HQ")
    app.config["DEPOT_DROPBOX_CHUNK"] = MAX_REQUEST + 1
    dropbox_fake.log.clear()
    job = copy(admin, work, key, dp)
    assert job.state == "failed"
    assert "DEPOT_DROPBOX_CHUNK" in job.error and "150 MiB" in job.error
    assert dropbox_fake.log == []


def test_a_piece_over_150_mib_is_refused_before_it_goes_out(dropbox_fake, dropbox_dp):
    """Does send() refuse a piece larger than Dropbox takes in one request without sending it,
    and a piece out of order too?"""
    dp = dropbox_dp("Dropbox HQ")

    class Huge(bytes):  # only its length is looked at before the refusal
        def __len__(self):
            return MAX_REQUEST + 1

    with dropbox_backend(dp) as backend:
        data = b"x" * 100
        upload = backend.upload(Source("Images/a.bin", 100, hashlib.sha256(data).hexdigest(), {},
                                       lambda o, n: data[o:o + n]), UploadState())
        before = list(dropbox_fake.uploads)
        with pytest.raises(StorageRefused, match="at most|more than Dropbox takes"):
            upload.send(0, Huge())
        with pytest.raises(StorageRefused, match="in order"):
            upload.send(50, data[50:])
        assert dropbox_fake.uploads == before


def test_the_fake_refuses_a_request_over_150_mib_like_dropbox(dropbox_fake, dropbox_dp):
    """(The fake's rule.) Is an append over the limit refused with payload_too_large, unread?"""
    dp = dropbox_dp("Dropbox HQ")
    dropbox_fake.max_request = 1000
    with dropbox_backend(dp) as backend:
        data = os.urandom(2000)
        upload = backend.upload(Source("Images/a.bin", 2000, hashlib.sha256(data).hexdigest(), {},
                                       lambda o, n: data[o:o + n]), UploadState())
        with pytest.raises(StorageRefused, match="payload_too_large"):
            upload.send(0, data)


def test_a_throttled_copy_waits_as_long_as_dropbox_asks(dropbox_fake, dropbox_dp, image, admin,
                                                        work):
    """When Dropbox answers 429 with Retry-After, does the copy wait that long before its next
    try (not its own shorter backoff), keeping the session?"""
    key, _ = image
    dp = dropbox_dp("Dropbox HQ")
    dropbox_fake.retry_after = 7
    dropbox_fake.after_upload_requests(2, lambda: dropbox_fake.fail_next(1, "429"))
    job = copy(admin, work, key, dp)
    assert job.state == "queued"  # waiting for its next try
    assert "try 2 in 7 s" in job.phase and "busy or failing" in job.phase + " ".join(job.warnings)
    assert 5 <= (job.retry_at - job.queued_at).total_seconds() <= 8
    assert db.session.scalar(select(UploadSession)) is not None  # the session is kept to resume

def test_a_name_dropbox_cannot_hold_fails_the_copy_clearly(dropbox_fake, dropbox_dp, central,
                                                           rescan, admin, work):
    """Is a name with a backslash, which Dropbox cannot hold, refused with the reason?"""
    write_file(central.root, "Media/back\\slash.mp4", b"x")
    rescan(central)
    dp = dropbox_dp("Dropbox HQ")
    job = copy(admin, work, "Media/back\\\\slash.mp4", dp)
    assert job.state == "failed" and "Dropbox cannot hold this name" in job.error
    assert dropbox_fake.uploads == []
