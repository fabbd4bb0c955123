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

from portal.core.errors import DepotError, NeedsAuth, StorageRefused
from portal.core.files import FileEntry
from portal.core.hashes import DropboxContentHash
from portal.extensions import db
from portal.models import InventoryFile, UploadSession
from portal.services import copies, secrets
from portal.services import distribution_points as dps
from portal.storage.base import Source, UploadState
from portal.storage.dropbox import MAX_REQUEST
from tests.cloud.dropbox_fixtures import DROPBOX_CHUNK, dropbox_backend
from tests.conftest import copy_one as copy
from tests.conftest import fresh, status_at
from tests.factories import write_file
from tests.fakes.dropbox import content_hash

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


def test_expired_access_token_is_renewed_mid_copy(dropbox_fake, dropbox_dp, image, admin, work):
    """When the access token expires between two pieces, is it renewed once (and stored for the
    next run) and the copy carries on without sending anything twice?"""
    key, data = image
    dp = dropbox_dp("Dropbox HQ")
    before = json.loads(secrets.decrypt(dp.secret))
    dropbox_fake.after_upload_requests(3, dropbox_fake.expire_access_tokens)  # start + 2 pieces
    job = copy(admin, work, key, dp)
    assert job.state == "succeeded", job.error
    assert dropbox_fake.refreshes == 1
    assert dropbox_fake.file("alice", "/Depot/Images/Win11.wim") == data
    assert [o for o, s in dropbox_fake.appended()] == list(range(0, len(data), DROPBOX_CHUNK))
    db.session.refresh(dp)
    after = json.loads(secrets.decrypt(dp.secret))
    assert after["access_token"] != before["access_token"]
    assert after["refresh_token"] == before["refresh_token"]  # Dropbox does not rotate it


def test_revoked_consent_fails_the_copy_asking_to_reconnect(dropbox_fake, dropbox_dp, image,
                                                            admin, work):
    """When the account withdrew Depot's access, does the copy fail at once with a reason that
    says to reconnect, the DP turn needs-auth, and nothing go up?"""
    key, _ = image
    dp = dropbox_dp("Dropbox HQ")
    token = json.loads(secrets.decrypt(dp.secret))
    dropbox_fake.revoke("alice")
    dropbox_fake.expire_access_tokens()
    job = copy(admin, work, key, dp)
    assert job.state == "failed"
    assert "reconnect" in job.error and "Dropbox" in job.error
    assert token["access_token"] not in job.error and token["refresh_token"] not in job.error
    assert dropbox_fake.uploads == []
    db.session.refresh(dp)
    assert dp.status == "needs-auth"
    with dropbox_backend(dp) as backend, pytest.raises(NeedsAuth, match="reconnect"):
        backend.check()
    assert status_at(dp, key) == "failed"


@pytest.mark.parametrize("failure", ["drop", "drop_after", "500", "429"])
def test_an_interrupted_upload_resumes_its_session_sending_only_what_is_missing(
        failure, dropbox_fake, dropbox_dp, image, admin, work):
    """When a piece's request fails (the connection drops before or after Dropbox took the data,
    a 500, or Dropbox throttles), does the retried copy resume the same session from the offset Dropbox has, without
    sending what Dropbox already took?"""
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


def test_an_expired_session_starts_afresh(dropbox_fake, dropbox_dp, image, admin, work):
    """When Dropbox no longer knows the saved session (they last 7 days), does the copy start a
    new one and still end identical?"""
    key, data = image
    dp = dropbox_dp("Dropbox HQ")

    def expire():
        dropbox_fake.fail_next(1, "500")
        dropbox_fake.expire_sessions()
    dropbox_fake.after_upload_requests(3, expire)
    job = copy(admin, work, key, dp)
    assert job.state == "succeeded", job.error
    assert dropbox_fake.file("alice", "/Depot/Images/Win11.wim") == data
    assert len([u for u in dropbox_fake.uploads if u["endpoint"].endswith("start")]) == 2


@pytest.mark.slow
def test_a_copy_whose_worker_is_killed_resumes_the_saved_session(
        dropbox_fake, dropbox_dp, central, rescan, admin, start_worker):
    """After SIGKILL of the worker half-way, does the recovered copy (another process) resume the
    session kept in the database instead of starting again?"""
    from portal.services import job_recovery
    from tests.conftest import wait_for

    data = os.urandom(4 * MiB)
    write_file(central.root, "Images/Win11.wim", data)
    rescan(central)
    dp = dropbox_dp("Dropbox HQ")
    dp.bandwidth_limit = 1 * MiB
    db.session.commit()
    [job] = copies.request_copies(admin, ["Images/Win11.wim"], [dp.id])
    worker = start_worker()
    wait_for(lambda: (fresh(job.id).bytes_done or 0) >= 1 * MiB, timeout=60,
             message="the copy to get a quarter of the way")
    worker.kill()
    saved = db.session.scalar(select(UploadSession).where(UploadSession.dp_id == dp.id))
    session_id = json.loads(secrets.decrypt(saved.data))["session_id"]
    assert session_id not in saved.data  # encrypted at rest
    sent_before = sum(u["size"] for u in dropbox_fake.uploads)
    assert dropbox_fake.file("alice", "/Depot/Images/Win11.wim") is None  # never a partial
    wait_for(lambda: job_recovery.recover_lost_jobs().get(job.id) == "requeued", timeout=30,
             message="recovery to notice the dead worker")
    start_worker()
    wait_for(lambda: fresh(job.id).state in ("succeeded", "failed"), timeout=60,
             message="the resumed copy to finish")
    assert fresh(job.id).state == "succeeded", fresh(job.id).error
    assert dropbox_fake.file("alice", "/Depot/Images/Win11.wim") == data
    assert len([u for u in dropbox_fake.uploads if u["endpoint"].endswith("start")]) == 1
    assert sum(u["size"] for u in dropbox_fake.uploads) - sent_before < len(data) - 1 * MiB + \
        DROPBOX_CHUNK


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


def test_content_already_in_the_account_is_found_by_the_first_rescan(dropbox_fake, dropbox_dp,
                                                                     central, rescan):
    """Are files an older console put in the account listed by the first rescan with their
    content_hash, matched with central's by path, size and content_hash (`current`) without any
    upload, and hidden, temp and non-library entries left out?"""
    image, driver = os.urandom(5 * MiB + 3), os.urandom(3000)
    write_file(central.root, "Images/Win11.wim", image)
    write_file(central.root, "Reference Machines/Win11-Ref/a/b.bin", driver)
    dp = dropbox_dp("Dropbox HQ")
    rescan(central)
    dropbox_fake.put_file("alice", "/Depot/Images/Win11.wim", image)
    dropbox_fake.put_file("alice", "/Depot/Reference Machines/Win11-Ref/a/b.bin", driver)
    dropbox_fake.put_file("alice", "/Depot/Images/Other.iso", b"only in the account")
    dropbox_fake.put_file("alice", "/Depot/Images/~$Win11.wim", b"a lock file")
    dropbox_fake.put_file("alice", "/Depot/Images/.hidden", b"hidden")
    dropbox_fake.put_file("alice", "/Depot/Notes/readme.txt", b"not a library")
    dropbox_fake.put_file("alice", "/Elsewhere/Images/x.wim", b"outside the DP's folder")

    with dropbox_backend(dp) as backend:
        problems = []
        entries = {e.path: e for e in backend.walk(problems)}
    assert sorted(entries) == ["Images/Other.iso", "Images/Win11.wim",
                               "Reference Machines/Win11-Ref/a/b.bin"]
    assert entries["Images/Win11.wim"].hashes == {"dropbox": content_hash(image)}
    assert entries["Images/Win11.wim"].size == len(image)
    assert entries["Images/Win11.wim"].handle.startswith("id:")
    assert problems == []

    uploads_before = list(dropbox_fake.uploads)
    rescan(dp)
    assert status_at(dp, "Images/Win11.wim") == "current"
    assert status_at(dp, "Reference Machines/Win11-Ref") == "current"
    assert status_at(dp, "Images/Other.iso") == "unverified"
    assert dropbox_fake.uploads == uploads_before  # nothing uploaded
    row = db.session.scalar(select(InventoryFile).where(InventoryFile.dp_id == dp.id,
                                                        InventoryFile.path == "Images/Win11.wim"))
    assert json.loads(row.hashes) == {"dropbox": content_hash(image)}


def test_recorded_sha256_is_taken_only_for_the_version_it_was_recorded_for(dropbox_fake,
                                                                           dropbox_dp):
    """Does fill_hashes take the SHA-256 from the file's manifest record while size and
    content_hash are the file's, and ignore a record of an older version?"""
    dp = dropbox_dp("Dropbox HQ")
    good, old = os.urandom(700), os.urandom(700)
    for name, data, recorded in (("Good.wim", good, good), ("Changed.wim", good, old)):
        dropbox_fake.put_file("alice", f"/Depot/Images/{name}", data)
        dropbox_fake.put_file("alice", f"/Depot/.depot/manifest/Images/{name}.json", json.dumps({
            "size": len(recorded), "sha256": hashlib.sha256(recorded).hexdigest(),
            "dropbox": content_hash(recorded)}).encode())
    dropbox_fake.put_file("alice", "/Depot/Images/Unrecorded.wim", good)
    with dropbox_backend(dp) as backend:
        entries = {e.path: e for e in backend.walk([])}
        assert sorted(entries) == ["Images/Changed.wim", "Images/Good.wim",
                                   "Images/Unrecorded.wim"]  # .depot is not content
        backend.fill_hashes(list(entries.values()))
    assert entries["Images/Good.wim"].sha256 == hashlib.sha256(good).hexdigest()
    assert entries["Images/Changed.wim"].sha256 is None
    assert entries["Images/Unrecorded.wim"].sha256 is None


def test_walk_follows_the_cursor_through_small_pages(dropbox_fake, dropbox_dp):
    """With Dropbox answering two entries a page, does the walk still list every file?"""
    dp = dropbox_dp("Dropbox HQ")
    dropbox_fake.page_size = 2
    names = [f"Images/file-{i}.bin" for i in range(7)] + ["Media/Clips/x/y.mp4"]
    for name in names:
        dropbox_fake.put_file("alice", f"/Depot/{name}", name.encode())
    dropbox_fake.log.clear()
    with dropbox_backend(dp) as backend:
        found = sorted(e.path for e in backend.walk([]))
    assert found == sorted(names)
    continues = [p for _, p, _ in dropbox_fake.log if p.endswith("list_folder/continue")]
    assert len(continues) >= 4


def test_two_accounts_side_by_side(dropbox_fake, dropbox_dp, image, admin, work):
    """Do two Dropbox DPs with two accounts (and two folders) each get the copy in their own
    account, and each walk see only its own?"""
    key, data = image
    hq = dropbox_dp("Dropbox HQ", "alice", folder="Depot")
    branch = dropbox_dp("Dropbox Branch", "bob", folder="Branches/Seattle")
    assert hq.settings["account_id"] != branch.settings["account_id"]
    assert branch.settings["account"] == "bob@example.test"
    [a, b] = copies.request_copies(admin, [key], [hq.id, branch.id])
    work()
    assert fresh(a.id).state == fresh(b.id).state == "succeeded"
    assert dropbox_fake.paths("alice") == ["/Depot/.depot/manifest/Images/Win11.wim.json",
                                           "/Depot/Images/Win11.wim"]
    assert dropbox_fake.paths("bob") == [
        "/Branches/Seattle/.depot/manifest/Images/Win11.wim.json",
        "/Branches/Seattle/Images/Win11.wim"]
    assert dropbox_fake.file("bob", "/Branches/Seattle/Images/Win11.wim") == data
    assert status_at(hq, key) == status_at(branch, key) == "current"
    dropbox_fake.put_file("bob", "/Branches/Seattle/Media/only-bob.mp4", b"b")
    with dropbox_backend(hq) as hq_backend, dropbox_backend(branch) as branch_backend:
        assert [e.path for e in hq_backend.walk([])] == ["Images/Win11.wim"]
        assert sorted(e.path for e in branch_backend.walk([])) == ["Images/Win11.wim",
                                                                   "Media/only-bob.mp4"]


def test_check_says_what_is_wrong(dropbox_fake, dropbox_dp, app):
    """Does check() name a missing folder, and a reconnect to another account?"""
    dp = dropbox_dp("Dropbox HQ")
    with dropbox_backend(dp) as backend:
        backend.check()
        with pytest.raises(DepotError, match="inside a library"):
            backend.delete("Images")  # a whole library folder is never deleted through Depot
        backend.rpc("files/delete_v2", {"path": "/Depot"})
        with pytest.raises(StorageRefused, match="folder /Depot is not in"):
            backend.check()
        backend.settings["account_id"] = "dbid:someone-else"
        with pytest.raises(StorageRefused, match="another Dropbox account"):
            backend.check()
        free, total = backend.space()
        assert total == dropbox_fake.quota and 0 <= free <= total


def test_download_link_needs_no_credential_and_expires(dropbox_fake, dropbox_dp, image, admin,
                                                       work):
    """Can an endpoint GET the file with the link alone, and not after the link expired?"""
    key, data = image
    dp = dropbox_dp("Dropbox HQ")
    assert copy(admin, work, key, dp).state == "succeeded"
    with dropbox_backend(dp) as backend:
        link = backend.download_link(key, 3600)
        with pytest.raises(StorageRefused, match="not at"):
            backend.download_link("Images/Nope.wim", 3600)
    token = json.loads(secrets.decrypt(dp.secret))
    assert token["access_token"] not in link and token["refresh_token"] not in link
    with requests.get(link, timeout=10) as got:
        assert got.status_code == 200 and got.content == data
    dropbox_fake.expire_links()
    with requests.get(link, timeout=10) as got:
        assert got.status_code == 410


def test_open_read_streams_the_content(dropbox_fake, dropbox_dp):
    """Does open_read give the bytes through readinto, and stat the file as listed?"""
    dp = dropbox_dp("Dropbox HQ")
    data = os.urandom(3 * MiB + 5)
    dropbox_fake.put_file("alice", "/Depot/Media/Clip.mp4", data)
    with dropbox_backend(dp) as backend:
        [entry] = list(backend.walk([]))
        digest, buf = hashlib.sha256(), bytearray(MiB)
        with backend.open_read(entry) as fh:
            while n := fh.readinto(buf):
                digest.update(buf[:n])
        assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
        assert backend.stat(entry) == (entry.size, entry.mtime_ns)
        dropbox_fake.users["alice"].files.pop("/depot/media/clip.mp4")
        assert backend.stat(entry) is None
        with pytest.raises(FileNotFoundError):
            backend.open_read(FileEntry("Media/Clip.mp4", 1, 1))


def test_delete_removes_files_folders_and_their_records(dropbox_fake, dropbox_dp, central,
                                                        rescan, admin, work):
    """Does deleting a file asset and a folder asset remove them and their manifest records at
    Dropbox, and is deleting what is absent fine?"""
    write_file(central.root, "Images/Win11.wim", b"image")
    write_file(central.root, "Platform Packs/Dell/drivers/a.inf", b"a")
    write_file(central.root, "Platform Packs/Dell/b.sys", b"b")
    rescan(central)
    dp = dropbox_dp("Dropbox HQ")
    for key in ("Images/Win11.wim", "Platform Packs/Dell"):
        assert copy(admin, work, key, dp).state == "succeeded"
    assert len(dropbox_fake.paths("alice")) == 6  # three files, three records
    for key in ("Images/Win11.wim", "Platform Packs/Dell"):
        job = copies.request_delete(admin, dp, key)
        work()
        assert fresh(job.id).state == "succeeded", fresh(job.id).error
    assert dropbox_fake.paths("alice") == []
    assert status_at(dp, "Images/Win11.wim") == status_at(dp, "Platform Packs/Dell") == "missing"
    with dropbox_backend(dp) as backend:
        backend.delete("Images/Win11.wim")  # absent: fine


def test_secrets_stay_out_of_repr_errors_and_logs(dropbox_fake, dropbox_dp, image, admin, work,
                                                  app):
    """Do tokens and upload session ids stay out of reprs, job errors and warnings, the log, and
    (unencrypted) the database?"""
    key, _ = image
    dp = dropbox_dp("Dropbox HQ")
    app.config["DEPOT_JOB_RETRIES"] = 0
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    handler = Keep(level=logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        dropbox_fake.after_upload_requests(3, lambda: dropbox_fake.fail_next(1, "500"))
        job = copy(admin, work, key, dp)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    assert job.state == "failed" and "busy or failing" in job.error
    [session_id] = list(dropbox_fake.sessions)
    saved = db.session.scalar(select(UploadSession).where(UploadSession.dp_id == dp.id))
    assert json.loads(secrets.decrypt(saved.data))["session_id"] == session_id
    token = json.loads(secrets.decrypt(dp.secret))
    with dropbox_backend(dp) as backend:
        upload = backend.upload(Source(key, 1, "0" * 64, {}, lambda o, n: b"x"), UploadState(
            json.loads(secrets.decrypt(saved.data))))
        shown = [repr(backend), repr(upload), str(backend.__dict__.get("name"))]
    secret_values = [session_id, token["access_token"], token["refresh_token"]]
    texts = [job.error, *(job.warnings or []), *records, *shown, saved.data, dp.config]
    for value in secret_values:
        assert not any(value in text for text in texts if text)
    assert records  # the log did say something about the failed job


def test_names_beyond_ascii_and_empty_files_go_up(dropbox_fake, dropbox_dp, central, rescan,
                                                  admin, work):
    """Do non-ASCII names travel in the (ASCII-only) Dropbox-API-Arg header, does an empty file
    go up, and is a name Dropbox cannot hold refused with the reason?"""
    write_file(central.root, "Images/Überblick – 日本.wim", b"unicode name")
    write_file(central.root, "Answer Files/empty.xml", b"")
    write_file(central.root, "Media/back\\slash.mp4", b"x")
    rescan(central)
    dp = dropbox_dp("Dropbox HQ")
    for key in ("Images/Überblick – 日本.wim", "Answer Files/empty.xml"):
        job = copy(admin, work, key, dp)
        assert job.state == "succeeded", job.error
        assert status_at(dp, key) == "current"
    assert dropbox_fake.file("alice", "/Depot/Images/Überblick – 日本.wim") == b"unicode name"
    assert dropbox_fake.file("alice", "/Depot/Answer Files/empty.xml") == b""
    job = copy(admin, work, "Media/back\\\\slash.mp4", dp)
    assert job.state == "failed" and "Dropbox cannot hold this name" in job.error


@pytest.mark.parametrize("size", [0, 1, 4 * MiB - 1, 4 * MiB, 4 * MiB + 1, 9 * MiB + 7])
def test_content_hasher_fed_in_pieces_is_dropbox_content_hash(size):
    """Does the client's running content_hash, fed in pieces that straddle the 4 MiB blocks,
    equal Dropbox's (the fake's one-shot reference)?"""
    data = os.urandom(size)
    hasher = DropboxContentHash()
    for start in range(0, size, 3 * MiB + 5):
        hasher.update(data[start:start + 3 * MiB + 5])
    assert hasher.hexdigest() == content_hash(data)


def test_verify_trusts_matching_content_hashes_and_flags_a_corrupted_file(
        dropbox_fake, dropbox_dp, central, rescan, admin, work):
    """Does a verify of a Dropbox DP pass files whose content_hash is the recorded one without
    downloading them, flag a file changed at Dropbox, and does a copy repair it?"""
    from portal.services import verify

    good, bad = os.urandom(300_000), os.urandom(300_000)
    write_file(central.root, "Images/Good.wim", good)
    write_file(central.root, "Images/Bad.wim", bad)
    rescan(central)
    dp = dropbox_dp("Dropbox HQ")
    copies.request_copies(admin, ["Images/Good.wim", "Images/Bad.wim"], [dp.id])
    work()
    assert status_at(dp, "Images/Good.wim") == status_at(dp, "Images/Bad.wim") == "current"
    dropbox_fake.corrupt("alice", "/Depot/Images/Bad.wim")
    dropbox_fake.log.clear()
    job, _ = verify.request_verify(dp, admin)
    work()
    assert fresh(job.id).state in ("succeeded", "failed"), fresh(job.id).error
    assert status_at(dp, "Images/Good.wim") == "current"
    assert status_at(dp, "Images/Bad.wim") == "failed"
    downloads = [p for _, p, _ in dropbox_fake.log if p.endswith("files/download")]
    assert len(downloads) == 1  # the changed file only; the intact one is not read
    [repair] = copies.request_copies(admin, ["Images/Bad.wim"], [dp.id])
    work()
    assert fresh(repair.id).state == "succeeded", fresh(repair.id).error
    assert dropbox_fake.file("alice", "/Depot/Images/Bad.wim") == bad
    assert status_at(dp, "Images/Bad.wim") == "current"


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
