"""Google Drive DPs against a local fake Drive that speaks Drive API v3 and enforces its rules:
copies on real RQ workers, token renewal, resumable uploads, listing, links and deletes."""
import hashlib
import os
import time
from contextlib import contextmanager

import pytest

from portal.core.errors import StorageRefused
from portal.extensions import db
from portal.models import DistributionPoint
from portal.services import copies
from portal.services.backends import open_storage
from tests.cloud.gdrive_fixtures import GDRIVE_CHUNK, gdrive_settings
from tests.conftest import copy_one as copy
from tests.conftest import fresh, status_at, wait_for
from tests.factories import write_file

MB = 1024 * 1024


@pytest.fixture
def config_overrides(gdrive):
    return gdrive_settings(gdrive, DEPOT_RETRY_BASE_SECONDS=1, DEPOT_JOB_RETRIES=3)


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
        assert secret not in job.error and secret not in repr(open_storage(dp))


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
    from portal.services import copy_job, job_runs

    dp = gdrive_dp()
    gdrive.after_chunk = lambda n: n == 2 and gdrive.fail_uploads(1, "500")
    job = copy(admin, work, "Images/Win11.wim", dp)
    assert job.state == "queued" and job.retries == 1  # a passing failure: tried again later
    gdrive.expire_upload_sessions()
    job_runs.run_job(job.id, copy_job.copy_asset)
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
    from portal.core.errors import StorageRefused
    from portal.storage.base import Source, UploadState

    dp = gdrive_dp()
    data = os.urandom(MB)
    backend = open_storage(dp)
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


def test_content_already_in_the_account_is_found_by_the_first_rescan(gdrive, gdrive_dp, central,
                                                                     rescan):
    """Are files an older console put in the account listed by the first rescan with Drive's MD5,
    our recorded SHA-256 trusted only while it still describes the content, and `current` where
    central has the same file?"""
    recorded, foreign, changed = os.urandom(700_000), os.urandom(300_000), os.urandom(1000)
    for name, data in (("Recorded.wim", recorded), ("Foreign.wim", foreign),
                       ("Changed.wim", changed)):
        write_file(central.root, f"Images/{name}", data)
    dp = gdrive_dp()
    rescan(central)  # a Drive DP exists: central computes MD5s too
    sha = {n: hashlib.sha256(d).hexdigest() for n, d in (("r", recorded), ("c", changed))}
    gdrive.add_file("alice", "Depot/Images/Recorded.wim", recorded, {
        "depot_sha256": sha["r"], "depot_md5": hashlib.md5(recorded).hexdigest(),
        "depot_size": str(len(recorded))})
    gdrive.add_file("alice", "Depot/Images/Foreign.wim", foreign)  # nothing recorded
    edited = b"edited by hand" + changed[14:]  # the same size, the old record
    gdrive.add_file("alice", "Depot/Images/Changed.wim", edited, {
        "depot_sha256": sha["c"], "depot_md5": hashlib.md5(changed).hexdigest(),
        "depot_size": str(len(changed))})
    gdrive.add_file("alice", "Depot/Images/.hidden", b"not content")
    gdrive.add_file("alice", "Depot/Other/notes.txt", b"not a library")

    backend = open_storage(dp)
    problems = []
    entries = {e.path: e for e in backend.walk(problems)}
    assert sorted(entries) == ["Images/Changed.wim", "Images/Foreign.wim", "Images/Recorded.wim"]
    assert entries["Images/Foreign.wim"].hashes == {"md5": hashlib.md5(foreign).hexdigest()}
    assert entries["Images/Foreign.wim"].size == len(foreign)
    backend.fill_hashes(list(entries.values()))
    assert entries["Images/Recorded.wim"].sha256 == sha["r"]
    assert entries["Images/Foreign.wim"].sha256 is None
    assert entries["Images/Changed.wim"].sha256 is None  # the record no longer fits the MD5
    backend.http.close()

    job = rescan(db.session.get(DistributionPoint, dp.id))
    assert "3 files" in job.summary
    assert status_at(dp, "Images/Recorded.wim") == "current"
    assert status_at(dp, "Images/Foreign.wim") == "current"  # matched by path, size and MD5
    assert status_at(dp, "Images/Changed.wim") != "current"
    assert gdrive.chunks == []  # nothing uploaded, nothing downloaded to find that out


def test_walk_follows_pages_and_reports_duplicate_names(gdrive, gdrive_dp):
    """Does the listing follow nextPageToken through small pages, go into sub-folders with escaped
    names, and report a name that repeats in a folder instead of guessing?"""
    dp = gdrive_dp()
    for n in range(8):
        gdrive.add_file("alice", f"Depot/Reference Machines/Win11-Ref/drivers/f{n}.bin", b"x" * n)
    gdrive.add_file("alice", "Depot/Media/tab\there.iso", b"tab")
    gdrive.add_file("alice", "Depot/Media/dup.iso", b"first")
    gdrive.add_file("alice", "Depot/Media/dup.iso", b"second one")
    gdrive.add_file("alice", "Depot/Media/sheet", b"",
                    mime_type="application/vnd.google-apps.spreadsheet")
    calls = len(gdrive.log)
    problems = []
    backend = open_storage(dp)
    entries = {e.path: e for e in backend.walk(problems)}
    backend.http.close()
    assert sorted(p for p in entries if p.startswith("Reference")) == [
        f"Reference Machines/Win11-Ref/drivers/f{n}.bin" for n in range(8)]
    assert entries["Media/tab\\x09here.iso"].size == 3
    assert entries["Media/dup.iso"].size == len(b"first")  # the oldest
    assert any("Media/dup.iso: more than one item" in p for p in problems)
    assert any("Media/sheet: a Google Docs item" in p for p in problems)
    lists = [entry for entry in gdrive.log[calls:] if entry[1] == "/drive/v3/files"]
    assert len(lists) >= 3 + 8 // gdrive.max_page  # pages of at most 3 items were followed


def test_two_accounts_side_by_side(gdrive, gdrive_dp, image, admin, work):
    """Do two DPs in two accounts (and folders) each get their own copy, with their own tokens?"""
    alice = gdrive_dp("Alice Drive", "alice", "Depot")
    bob = gdrive_dp("Bob Drive", "bob", "IT/Depot")
    assert alice.settings["account"] == "alice@example.com"
    assert bob.settings["account_id"] == "perm-bob" != alice.settings["account_id"]
    for dp in (alice, bob):
        job = copy(admin, work, "Images/Win11.wim", dp)
        assert job.state == "succeeded", job.error
    assert gdrive.paths("alice") == ["Depot/Images/Win11.wim"]
    assert gdrive.paths("bob") == ["IT/Depot/Images/Win11.wim"]
    assert gdrive.read("bob", "IT/Depot/Images/Win11.wim") == image
    assert status_at(alice, "Images/Win11.wim") == status_at(bob, "Images/Win11.wim") == "current"


def test_delete_removes_a_file_or_a_folder_asset(gdrive, gdrive_dp):
    """Does delete remove a file, a whole folder asset, every duplicate of the name, and accept
    what is already gone?"""
    dp = gdrive_dp()
    gdrive.add_file("alice", "Depot/Images/a.wim", b"a")
    gdrive.add_file("alice", "Depot/Images/a.wim", b"a again")
    gdrive.add_file("alice", "Depot/Platform Packs/Dell/drivers/x.inf", b"x")
    gdrive.add_file("alice", "Depot/Platform Packs/Dell/y.cat", b"y")
    gdrive.add_file("alice", "Depot/Platform Packs/HP/z.inf", b"z")
    backend = open_storage(dp)
    backend.delete("Images/a.wim")
    backend.delete("Platform Packs/Dell")
    backend.delete("Images/never-there.wim")
    backend.delete("Answer Files/missing/folder/x.xml")
    backend.http.close()
    assert gdrive.paths("alice") == ["Depot/Platform Packs/HP/z.inf"]


def test_reading_a_file_streams_it_and_stat_sees_changes(gdrive, gdrive_dp):
    """Does open_read give the content through readinto (as the verify hasher reads), and stat
    tell a vanished file?"""
    dp = gdrive_dp()
    data = os.urandom(3 * MB + 11)
    gdrive.add_file("alice", "Depot/Images/r.wim", data)
    backend = open_storage(dp)
    [entry] = backend.walk([])
    got, buf = bytearray(), bytearray(MB)
    with backend.open_read(entry) as fh:
        while n := fh.readinto(buf):
            got += buf[:n]
    assert bytes(got) == data
    assert backend.stat(entry) == (entry.size, entry.mtime_ns)
    backend.delete("Images/r.wim")
    assert backend.stat(entry) is None
    with pytest.raises(FileNotFoundError):
        backend.open_read(entry)
    backend.http.close()


def test_account_space_and_a_missing_folder(gdrive, gdrive_dp):
    """Does the backend name the account, report the quota, and say clearly when its folder is
    gone?"""
    from portal.core.errors import StorageRefused

    dp = gdrive_dp()
    gdrive.add_file("alice", "Depot/Images/s.wim", b"s" * 1000)
    backend = open_storage(dp)
    assert backend.account() == {"id": "perm-alice", "name": "alice@example.com"}
    assert backend.space() == (gdrive.quota_limit - 1000, gdrive.quota_limit)
    backend.check()
    backend.http.close()
    db.session.expire_all()
    dp = db.session.get(DistributionPoint, dp.id)
    dp.settings = {**dp.settings, "folder": "Elsewhere"}
    db.session.commit()
    backend = open_storage(dp)
    with pytest.raises(StorageRefused, match="'Elsewhere' is not in alice@example.com's Google "
                                             "Drive"):
        backend.check()
    backend.http.close()


@pytest.fixture
def served(app):
    """The central server on a loopback port (for endpoints' plain HTTP), as DEPOT_PUBLIC_URL."""
    import threading

    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    app.config["DEPOT_PUBLIC_URL"] = f"http://127.0.0.1:{server.server_port}"
    yield app.config["DEPOT_PUBLIC_URL"]
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def test_a_download_link_gives_the_file_to_plain_http_and_expires(gdrive, gdrive_dp, served):
    """Can an endpoint GET (and range-GET) a file through the link with nothing but the link, is
    no Google credential in it, and is it refused once tampered with or expired?"""
    import json

    import requests

    from portal.services import secrets

    dp = gdrive_dp()
    data = os.urandom(2 * MB + 3)
    gdrive.add_file("alice", "Depot/Images/Win 11.wim", data)
    backend = open_storage(dp)
    link = backend.download_link("Images/Win 11.wim", 60)
    token = json.loads(secrets.decrypt(dp.secret))
    assert link.startswith(served + "/cloud-links/v1/") and "Win+11" in link
    assert token["access_token"] not in link and token["refresh_token"] not in link
    with requests.Session() as http:
        with http.get(link, timeout=30) as whole:
            assert whole.status_code == 200 and whole.content == data
        with http.get(link, headers={"Range": "bytes=100-199"}, timeout=30) as part:
            assert part.status_code == 206 and part.content == data[100:200]
            assert part.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
        with http.get(link.replace("Win+11", "Win+12"), timeout=30) as moved:
            assert moved.status_code == 403
        with pytest.raises(StorageRefused, match="lives from 1 s to"):
            backend.download_link("Images/Win 11.wim", 8 * 86400)
        with freeze_link_clock(-120):  # made two minutes ago, for a minute
            expired = backend.download_link("Images/Win 11.wim", 60)
        with http.get(expired, timeout=30) as late:
            assert late.status_code == 403 and "expired" in late.json()["error"]["message"]
        gone = backend.download_link("Images/nothing.wim", 60)
        with http.get(gone, timeout=30) as missing:
            assert missing.status_code == 404
    backend.http.close()


def test_a_resumed_upload_without_centrals_md5_still_checks_drives(gdrive, gdrive_dp, image,
                                                                   admin, work):
    """When central gave no MD5 and a later run resumes the session, is the MD5 of what Drive
    already kept rebuilt from central's file (no download), so the end check still holds?"""
    from portal.services import copy_job, job_runs

    dp = gdrive_dp()  # after central's scan: central has no MD5 for the image
    gdrive.after_chunk = lambda n: n == 2 and gdrive.fail_uploads(1, "drop")
    job = copy(admin, work, "Images/Win11.wim", dp)
    assert job.state == "queued"
    job_runs.run_job(job.id, copy_job.copy_asset)
    done = fresh(job.id)
    assert done.state == "succeeded", done.error
    assert len({c["upload_id"] for c in gdrive.chunks}) == 1
    assert gdrive.upload_bytes() == len(image) + GDRIVE_CHUNK  # the dropped chunk, once more
    item = gdrive.find("alice", "Depot/Images/Win11.wim")
    assert item["appProperties"]["depot_md5"] == hashlib.md5(image).hexdigest()
    assert status_at(dp, "Images/Win11.wim") == "current"


def test_an_upload_of_a_version_already_there_sends_nothing(gdrive, gdrive_dp):
    """If Drive already holds this very version (an earlier run's answer was lost), does the
    upload report it done without a session?"""
    from portal.storage.base import Source, UploadState

    dp = gdrive_dp()
    data = os.urandom(1000)
    sha = hashlib.sha256(data).hexdigest()
    gdrive.add_file("alice", "Depot/Images/done.wim", data, {
        "depot_sha256": sha, "depot_md5": hashlib.md5(data).hexdigest(), "depot_size": "1000"})
    backend = open_storage(dp)
    upload = backend.upload(Source("Images/done.wim", 1000, sha, {}, lambda o, n: data[o:o + n]),
                            UploadState())
    assert upload.done["sha256"] == sha and upload.done["hashes"] == {
        "md5": hashlib.md5(data).hexdigest()}
    assert gdrive.sessions == {}
    backend.http.close()


@contextmanager
def freeze_link_clock(offset: float):
    """Links made inside are made as if `offset` seconds from now."""
    import portal.core.signing as module

    real = time.time
    module.time = type("Clock", (), {"time": staticmethod(lambda: real() + offset)})
    try:
        yield
    finally:
        module.time = time
