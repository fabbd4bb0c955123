"""What is S3's own, against moto's server over HTTP: the connection test and what its failures
say, object keys under a prefix, listings without folder markers, our SHA-256 in the metadata,
deletes in batches, presigned links, multipart uploads (parts in parallel, resumed through
ListParts, CRC64NVME where the server keeps it) and the sweep of old ones. What every DP does
alike is in tests/storage/ (the storage contract and copies)."""
import base64
import hashlib
import logging
import os
import re
import time
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlsplit

import pytest
from awscrt.checksums import crc64nvme

from portal.core.errors import DamagedInTransit, StorageRefused, StorageUnavailable
from portal.models import DistributionPoint
from portal.services.backends import open_storage, probe_storage
from portal.storage import s3 as s3_storage
from portal.storage.answers import host_port
from portal.storage.base import Source, UploadState
from tests.cloud.s3_fixtures import BUCKET, CREDENTIALS

MiB = 1024 * 1024
PART = 5 * MiB
PREFIX = "depot/hq/"  # what s3_settings' "/depot//hq/" comes to
SECRET = CREDENTIALS["secret_access_key"]


@pytest.fixture
def config_overrides():
    return {"DEPOT_S3_PART_SIZE": PART, "DEPOT_S3_PARALLEL": 3}


@pytest.fixture
def storage(s3_dp):
    return open_storage(s3_dp)


def fresh_storage(s3_settings, credentials=CREDENTIALS, **settings):
    """A backend for the connection test, before any DP exists."""
    return probe_storage("cloud", "s3", settings={**s3_settings, **settings},
                         credentials=credentials, name="New S3")


def objects(s3_client, prefix=""):
    listed = s3_client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return {o["Key"]: o["Size"] for o in listed.get("Contents", [])}


def put(s3_client, key, data=b"x", **kw):
    s3_client.put_object(Bucket=BUCKET, Key=key, Body=data, **kw)


def source(path, data):
    return Source(path, len(data), hashlib.sha256(data).hexdigest(), {},
                  lambda offset, length: data[offset:offset + length])


def send_parts(upload, data, numbers):
    for number in numbers:
        offset = (number - 1) * upload.chunk_size
        upload.send(offset, data[offset:offset + upload.chunk_size])


def full_crc(data):
    return base64.b64encode(crc64nvme(data).to_bytes(8, "big")).decode()


# --- the connection test -----------------------------------------------------------------------

def test_check_passes_and_leaves_no_probe_behind(app, s3, s3_settings, s3_client):
    """Does the connection test list, write and delete a probe, leaving the bucket as it was?"""
    fresh_storage(s3_settings).check()
    assert s3.calls[("GET", "list")] == 1
    assert s3.calls[("PUT", "object")] == 1 and s3.calls[("DELETE", "object")] == 1
    assert objects(s3_client) == {}


def test_check_names_a_wrong_access_key_id(app, s3_settings, iam_user):
    """Is an access key id the server does not know told as such?"""
    good = iam_user(["s3:*"])
    with pytest.raises(StorageRefused, match="does not know this access key id"):
        fresh_storage(s3_settings, {**good, "access_key_id": "AKIANOSUCHKEY0000000"}).check()


def test_check_names_a_wrong_secret(app, s3_settings, iam_user):
    """Is a secret that does not belong to the key id told as such, without showing it?"""
    good = iam_user(["s3:*"])
    with pytest.raises(StorageRefused, match="secret access key does not match") as raised:
        fresh_storage(s3_settings, {**good, "secret_access_key": SECRET}).check()
    assert SECRET not in raised.value.message
    assert good["secret_access_key"] not in raised.value.message


def test_right_keys_pass_with_the_servers_checks_on(app, s3_settings, iam_user, s3_client):
    """With the server checking keys, signatures and permissions, do right keys pass?"""
    allowed = iam_user(["s3:ListBucket", "s3:PutObject", "s3:DeleteObject"])
    fresh_storage(s3_settings, allowed).check()


@pytest.mark.parametrize("allowed, denied", [
    (["s3:PutObject", "s3:DeleteObject"], "list the bucket"),
    (["s3:ListBucket"], "write objects"),
    (["s3:ListBucket", "s3:PutObject"], "delete objects"),
])
def test_check_says_which_permission_is_missing(app, s3_settings, iam_user, allowed, denied):
    """Does a key lacking one permission get told which one?"""
    with pytest.raises(StorageRefused, match=f"access denied to {denied} in bucket 'depot-test'"):
        fresh_storage(s3_settings, iam_user(allowed)).check()


def test_check_names_a_missing_bucket(app, s3_settings):
    with pytest.raises(StorageRefused, match="bucket 'no-such-bucket' does not exist"):
        fresh_storage(s3_settings, bucket="no-such-bucket").check()


def test_check_of_an_endpoint_that_does_not_answer_is_quick_and_unavailable(app, s3_settings,
                                                                            refused_url):
    """A closed port: StorageUnavailable (worth trying later), said within seconds."""
    url = refused_url
    start = time.monotonic()
    with pytest.raises(StorageUnavailable, match=re.escape(
            f"Depot could not connect to {host_port(url)} (connection refused)")):
        fresh_storage(s3_settings, endpoint_url=url).check()
    assert time.monotonic() - start < 10


def test_check_names_clock_skew(app, s3, s3_settings):
    """A server whose clock is an hour ahead refuses requests as S3 does: is the clock named?"""
    s3.clock_offset = 3600
    with pytest.raises(StorageRefused, match="clock differs .* by more than 15 minutes"):
        fresh_storage(s3_settings).check()


@pytest.mark.parametrize("settings, credentials, message", [
    ({"bucket": ""}, CREDENTIALS, "a bucket name is required"),
    ({}, {"access_key_id": "AKIA", "secret_access_key": ""}, "both required"),
    ({}, {}, "both required"),
    ({"endpoint_url": "ftp://files.example.com"}, CREDENTIALS, "must start with https://"),
])
def test_unusable_settings_are_refused_before_any_call(app, s3, s3_settings, settings, credentials,
                                                        message):
    with pytest.raises(StorageRefused, match=message):
        fresh_storage(s3_settings, credentials, **settings)
    assert not s3.calls


def test_the_secret_never_shows_in_repr_messages_or_logs(app, s3_settings, s3_dp, iam_user,
                                                        refused_url):
    """Across failures and work, with every logger at DEBUG (botocore's too), is the secret key
    absent from reprs, error messages and log lines?"""
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    backend = open_storage(s3_dp)
    upload = backend.upload(source("Images/a.wim", b"abc"), UploadState())
    send_parts(upload, b"abc", [1])
    upload.finish()
    good = iam_user(["s3:ListBucket"])  # the test's own IAM calls (they show its secret) first
    handler, root = Keep(level=logging.DEBUG), logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    messages = []
    try:
        backend = open_storage(s3_dp)
        messages.append(backend.download_link("Images/a.wim", 60))
        for credentials in ({**good, "secret_access_key": SECRET}, good):
            with pytest.raises(StorageRefused) as raised:
                fresh_storage(s3_settings, credentials).check()
            messages.append(raised.value.message)
        with pytest.raises(StorageUnavailable) as raised:
            fresh_storage(s3_settings, endpoint_url=refused_url).check()
        messages.append(raised.value.message)
        messages += [repr(backend), repr(upload), repr(backend.client), str(s3_dp.to_dict())]
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    assert any("botocore" in line or "Signature" in line for line in records)  # it did log
    for text in messages + records:
        assert SECRET not in text and good["secret_access_key"] not in text
    assert SECRET not in (s3_dp.secret or "") and SECRET not in (s3_dp.config or "")


# --- layout, listing, hashes -------------------------------------------------------------------

def test_keys_follow_the_prefix_and_refuse_what_s3_cannot_name(app, storage):
    assert storage.key("Images/Win11.wim") == PREFIX + "Images/Win11.wim"
    assert storage.key("Images/tab\\x09name.wim") == PREFIX + "Images/tab\tname.wim"
    assert storage.key("Images/back\\\\slash") == PREFIX + "Images/back\\slash"
    with pytest.raises(StorageRefused, match="must be valid UTF-8"):
        storage.key("Images/bad\\xffname.wim")
    for outside in ("Images", "Other/file", "Images/../x", "", "Images//x"):
        with pytest.raises(StorageRefused, match="not a path inside a library folder"):
            storage.key(outside)


def test_walk_lists_only_keys_under_the_prefix_and_no_folder_markers(app, storage, s3_client):
    """Are keys outside the prefix (a sibling prefix too), the probe the connection test leaves at
    its top, and the "folder" markers some consoles create left out; names escaped as central
    escapes them; the ETag of a single PUT taken as its MD5, and times in whole seconds?"""
    before = int(time.time()) * 10**9
    for key, data in [("Images/Win11.wim", b"w" * 10), ("Images/tab\tname.wim", b"t"),
                      ("Platform Packs/Dell/drivers/a.inf", b"inf"), ("Media/", b""),
                      ("Media/Sub/", b""), (".depot-probe-1", b"")]:
        put(s3_client, PREFIX + key, data)
    put(s3_client, "elsewhere/Images/not-ours.wim")
    put(s3_client, "depot/hq2/Images/not-ours.wim")
    problems = []
    entries = {e.path: e for e in storage.walk(problems)}
    assert sorted(entries) == ["Images/Win11.wim", "Images/tab\\x09name.wim",
                               "Platform Packs/Dell/drivers/a.inf"]
    win = entries["Images/Win11.wim"]
    assert (win.size, win.sha256) == (10, None)
    md5 = hashlib.md5(b"w" * 10).hexdigest()
    assert win.hashes == {"etag": md5, "md5": md5}  # a single PUT's ETag is its MD5
    assert before - 2 * 10**9 <= win.mtime_ns <= time.time_ns() and win.mtime_ns % 10**9 == 0
    assert problems == []


def test_walk_reports_a_file_shadowed_by_a_folder_of_its_name(app, storage, s3_client):
    put(s3_client, PREFIX + "Images/a")
    put(s3_client, PREFIX + "Images/a/b")
    problems = []
    assert [e.path for e in storage.walk(problems)] == ["Images/a"]
    assert problems == ["Images/a/b: a file of the same name as its folder is there too, skipped"]


def test_fill_hashes_takes_the_recorded_sha256_without_reading(app, s3, storage, s3_client):
    """Is the SHA-256 in the metadata taken when well-formed, and nothing downloaded?"""
    good = hashlib.sha256(b"one").hexdigest()
    put(s3_client, PREFIX + "Images/recorded.wim", b"one", Metadata={"sha256": good})
    put(s3_client, PREFIX + "Images/garbled.wim", b"two", Metadata={"sha256": "not-a-hash"})
    put(s3_client, PREFIX + "Images/foreign.wim", b"three")
    entries = {e.path: e for e in storage.walk([])}
    s3.forget_requests()
    storage.fill_hashes(list(entries.values()))
    assert entries["Images/recorded.wim"].sha256 == good
    assert entries["Images/garbled.wim"].sha256 is None
    assert entries["Images/foreign.wim"].sha256 is None
    assert entries["Images/foreign.wim"].hashes["etag"] == hashlib.md5(b"three").hexdigest()
    assert s3.calls == {("HEAD", "object"): 3}


def test_fill_hashes_notes_objects_gone_or_replaced_since_the_listing(app, storage, s3_client):
    put(s3_client, PREFIX + "Images/gone.wim", b"1")
    put(s3_client, PREFIX + "Images/replaced.wim", b"1")
    entries = {e.path: e for e in storage.walk([])}
    s3_client.delete_object(Bucket=BUCKET, Key=PREFIX + "Images/gone.wim")
    put(s3_client, PREFIX + "Images/replaced.wim", b"22",
        Metadata={"sha256": hashlib.sha256(b"22").hexdigest()})
    storage.fill_hashes(list(entries.values()))
    assert entries["Images/gone.wim"].error == "vanished during the scan"
    assert entries["Images/replaced.wim"].sha256 is None
    assert "changed while being scanned" in entries["Images/replaced.wim"].error


# --- deletes and links ---------------------------------------------------------------------------

def test_delete_of_a_folder_of_many_objects_goes_in_batches(app, storage, s3_client, monkeypatch):
    """Is a folder asset of more objects than one DeleteObjects call takes (1,000; 10 here, so
    the test need not make a thousand objects) deleted whole, and a folder of a name that only
    starts like it left alone?"""
    monkeypatch.setattr(s3_storage, "DELETE_BATCH", 10)
    batches = []
    delete_batch = s3_storage.S3Storage._delete_batch
    monkeypatch.setattr(s3_storage.S3Storage, "_delete_batch",
                        lambda self, objects: batches.append(len(objects)) or delete_batch(self, objects))
    keys = [f"{PREFIX}Platform Packs/Dell/drivers/{n:04}.inf" for n in range(23)]
    for key in keys:
        put(s3_client, key)
    put(s3_client, PREFIX + "Platform Packs/Dell2/keep.inf")
    storage.delete("Platform Packs/Dell")
    assert sorted(objects(s3_client)) == [PREFIX + "Platform Packs/Dell2/keep.inf"]
    assert batches == [10, 10, 3]


def test_a_presigned_link_lives_as_asked_up_to_a_week(app, storage, s3_client):
    """Does the presigned link say the lifetime asked for, and is one of no time or over a week
    (SigV4's limit) refused?"""
    put(s3_client, PREFIX + "Images/Win11.wim", b"w")
    link = storage.download_link("Images/Win11.wim", 300)
    assert parse_qs(urlsplit(link).query)["X-Amz-Expires"] == ["300"]
    for ttl in (0, 8 * 86400):
        with pytest.raises(Exception, match="link lives from 1 s"):
            storage.download_link("Images/Win11.wim", ttl)


def test_sweep_aborts_old_uploads_under_the_libraries_only(app, storage, s3_client):
    """Does the sweep abort the uploads older than the limit under this DP's library folders, and
    keep other DPs' and younger ones?

    moto reports every upload as initiated on 2010-11-10, so "younger" is shown with a limit
    reaching back before that date."""
    mine = s3_client.create_multipart_upload(Bucket=BUCKET, Key=PREFIX + "Images/a.wim")
    s3_client.create_multipart_upload(Bucket=BUCKET, Key="depot/other/Images/a.wim")
    s3_client.create_multipart_upload(Bucket=BUCKET, Key=PREFIX + "Unrelated/a.bin")
    reaching_back = (datetime.now(timezone.utc) - datetime(2010, 1, 1, tzinfo=timezone.utc))
    assert storage.sweep_uploads(int(reaching_back.total_seconds())) == 0
    assert storage.sweep_uploads(7 * 86400) == 1
    left = {u["Key"] for u in s3_client.list_multipart_uploads(Bucket=BUCKET)["Uploads"]}
    assert left == {"depot/other/Images/a.wim", PREFIX + "Unrelated/a.bin"}
    assert mine["UploadId"] not in str(s3_client.list_multipart_uploads(Bucket=BUCKET))


# --- uploads -------------------------------------------------------------------------------------

def test_a_small_file_is_one_put_with_its_sha256_and_checksum(app, s3, storage, s3_client):
    data = os.urandom(PART - 1)
    src, state = source("Images/small.wim", data), UploadState()
    upload = storage.upload(src, state)
    assert upload.missing() == [(0, len(data))] and upload.chunk_size == PART
    send_parts(upload, data, [1])
    upload.checkpoint()
    result = upload.finish()
    assert result["sha256"] == src.sha256 and result["size"] == len(data)
    assert result["hashes"]["crc64nvme"] == full_crc(data)
    assert state.data is None  # nothing to resume for one request
    assert s3.calls[("POST", "uploads")] == 0 and s3.calls[("PUT", "object")] == 1
    head = s3_client.head_object(Bucket=BUCKET, Key=PREFIX + "Images/small.wim")
    assert head["Metadata"] == {"sha256": src.sha256}


def test_an_upload_resumes_in_another_process_sending_only_missing_parts(app, s3, s3_dp, s3_client):
    """Parts 1 and 3 sent and checkpointed by one "process"; does a new backend built from the
    saved state alone list the parts, send only 2 and 4, and end with the right object?"""
    data = os.urandom(3 * PART + 1234)
    src, state = source("Images/big.wim", data), UploadState()
    first = open_storage(s3_dp).upload(src, state)
    assert state.data["upload_id"] and state.data["part_size"] == PART  # saved at once
    assert first.missing() == [(0, len(data))] and first.parallel == 3
    send_parts(first, data, [1, 3])
    first.checkpoint()
    assert sorted(state.data["parts"]) == ["1", "3"]
    saved = dict(state.data)
    del first  # the worker dies here; a new one has only the database row

    second = open_storage(db_dp(s3_dp)).upload(src, UploadState(saved))
    assert second.missing() == [(PART, 2 * PART), (3 * PART, len(data))]
    send_parts(second, data, [2, 4])
    result = second.finish()
    assert s3.parts == [1, 3, 2, 4]  # every part sent once
    assert result["sha256"] == src.sha256 and result["size"] == len(data)
    assert result["hashes"]["crc64nvme"] == full_crc(data)
    assert result["hashes"]["etag"].endswith("-4") and "md5" not in result["hashes"]
    body = s3_client.get_object(Bucket=BUCKET, Key=PREFIX + "Images/big.wim")["Body"]
    with body:
        assert body.read() == data
    assert s3_client.list_multipart_uploads(Bucket=BUCKET).get("Uploads") is None


def db_dp(dp):
    """The DP as another process would load it."""
    from portal.extensions import db

    db.session.expire_all()
    return db.session.get(DistributionPoint, dp.id)


def test_parts_sent_but_never_checkpointed_are_found_by_listparts(app, s3, storage, s3_client):
    """A crash after parts arrived but before their checkpoint: does ListParts count them, and
    does finish compute their CRC from central's bytes?"""
    data = os.urandom(2 * PART + 10)
    src, state = source("Images/big.wim", data), UploadState()
    send_parts(storage.upload(src, state), data, [1, 2])  # no checkpoint
    assert "parts" not in state.data or state.data["parts"] == {}
    again = storage.upload(src, UploadState(state.data))
    assert again.missing() == [(2 * PART, len(data))]
    send_parts(again, data, [3])
    assert again.finish()["hashes"]["crc64nvme"] == full_crc(data)
    assert s3.parts == [1, 2, 3]


def test_an_upload_aborted_at_the_server_starts_again(app, s3, storage, s3_client):
    """The saved UploadId is gone (aborted by someone, or the sweep): a fresh upload, all parts."""
    data = os.urandom(PART + 10)
    src, state = source("Images/big.wim", data), UploadState()
    send_parts(storage.upload(src, state), data, [1])
    old = state.data["upload_id"]
    s3_client.abort_multipart_upload(Bucket=BUCKET, Key=PREFIX + "Images/big.wim", UploadId=old)
    again = storage.upload(src, state)
    assert state.data["upload_id"] != old and again.missing() == [(0, len(data))]
    send_parts(again, data, [1, 2])
    assert again.finish()["sha256"] == src.sha256


def test_a_version_already_there_is_done_without_sending(app, s3, storage):
    data = os.urandom(PART + 1)
    src = source("Images/a.wim", data)
    first = storage.upload(src, UploadState())
    send_parts(first, data, [1, 2])
    result = first.finish()
    s3.forget_requests()
    again = storage.upload(src, UploadState())
    assert again.done == result and again.missing() == []
    assert s3.calls == {("HEAD", "object"): 1}


def test_a_part_damaged_while_unrecorded_fails_the_check_and_is_removed(app, storage, s3_client):
    """Part 1 at the server differs from central's bytes and its CRC was never recorded (a crash):
    the full-object CRC64NVME, computed from central, disagrees with the server's: the object is
    deleted and DamagedInTransit raised, so the copy sends the file again."""
    data = os.urandom(PART + 10)
    src, state = source("Images/a.wim", data), UploadState()
    storage.upload(src, state)
    damaged = bytes([data[0] ^ 1]) + data[1:PART]
    s3_client.upload_part(Bucket=BUCKET, Key=PREFIX + "Images/a.wim", PartNumber=1,
                          UploadId=state.data["upload_id"], Body=damaged)
    again = storage.upload(src, UploadState(state.data))
    assert again.missing() == [(PART, len(data))]
    send_parts(again, data, [2])
    with pytest.raises(DamagedInTransit, match="CRC64NVME checksum differs"):
        again.finish()
    assert objects(s3_client) == {}


def test_without_checksums_uploads_still_check_size_and_sha256(app, s3_settings, s3_client):
    """DEPOT_S3_CHECKSUM=0 (a server that knows no CRC64NVME): no checksum asked for or sent."""
    app.config["DEPOT_S3_CHECKSUM"] = 0
    storage = fresh_storage(s3_settings)
    data = os.urandom(PART + 10)
    upload = storage.upload(source("Images/a.wim", data), UploadState())
    assert upload.checksum is False
    send_parts(upload, data, [1, 2])
    result = upload.finish()
    assert "crc64nvme" not in result["hashes"]
    assert result["sha256"] == hashlib.sha256(data).hexdigest()
    head = s3_client.head_object(Bucket=BUCKET, Key=PREFIX + "Images/a.wim", ChecksumMode="ENABLED")
    assert "ChecksumCRC64NVME" not in head


@pytest.mark.parametrize("server", ["refuse", "ignore"])
def test_a_server_without_crc64nvme_gets_uploads_without_it(app, s3, storage, s3_client, server):
    """A server that refuses the checksum headers, or ignores them: does the upload go on without
    a checksum (parts included) and still end checked by size and SHA-256?"""
    s3.checksums = server
    data = os.urandom(PART + 10)
    upload = storage.upload(source("Images/a.wim", data), UploadState())
    assert upload.checksum is False
    send_parts(upload, data, [1, 2])
    result = upload.finish()
    assert "crc64nvme" not in result["hashes"]
    assert result["sha256"] == hashlib.sha256(data).hexdigest()
    assert s3.calls[("POST", "uploads")] == (2 if server == "refuse" else 1)
    with s3_client.get_object(Bucket=BUCKET, Key=PREFIX + "Images/a.wim")["Body"] as stream:
        assert stream.read() == data


def test_a_part_that_is_not_whole_is_refused_before_sending(app, s3, storage):
    data = os.urandom(PART + 10)
    upload = storage.upload(source("Images/a.wim", data), UploadState())
    with pytest.raises(Exception, match="must be part 1 whole"):
        upload.send(0, data[:1000])
    assert s3.parts == []

