"""What is Google Drive's own, against a local Drive that speaks Drive API v3 and enforces its
rules (tests/fakes/gdrive.py): chunks of 256 KiB multiples sent in order to a resumable session
that may keep only part of a chunk, our hashes in each file's appProperties, names that repeat in
a folder and Google Docs items, and the download links central signs and relays. What every DP
does alike is in tests/storage/ (the storage contract, copies, the OAuth kit)."""
import hashlib
import os

import pytest

from portal.core.errors import StorageRefused
from portal.services import copies
from portal.services.backends import open_storage
from tests.cloud.gdrive_fixtures import GDRIVE_CHUNK, gdrive_settings
from tests.factories import write_file
from tests.helpers import copy_one as copy
from tests.helpers import fresh, status_at, wait_for
from tests.storage.places import link_clock

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


def test_chunks_go_in_order_and_our_hashes_go_into_app_properties(gdrive, gdrive_dp, image,
                                                                   admin, work):
    """Does a copy go up in chunks of DEPOT_GDRIVE_CHUNK, in order (308 until the last, 201 for
    it), and do our SHA-256, Drive's MD5 and the size land in the file's appProperties?"""
    dp = gdrive_dp()
    job = copy(admin, work, "Images/Win11.wim", dp)
    assert job.state == "succeeded", job.error
    item = gdrive.find("alice", "Depot/Images/Win11.wim")
    assert item["appProperties"] == {"depot_sha256": hashlib.sha256(image).hexdigest(),
                                     "depot_md5": hashlib.md5(image).hexdigest(),
                                     "depot_size": str(len(image))}
    sizes = [c["length"] for c in gdrive.chunks]
    assert sizes == [GDRIVE_CHUNK] * 4 + [1000]
    assert [c["status"] for c in gdrive.chunks] == [308] * 4 + [201]


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
    assert any("Google Drive at 127.0.0.1:" in w for w in done.warnings), done.warnings
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


def test_names_that_repeat_and_google_docs_are_reported_not_guessed(gdrive, gdrive_dp):
    """Does the listing go into sub-folders with escaped names, and report a name that repeats in
    a folder (taking the oldest) and a Google Docs item (no content) instead of guessing?"""
    dp = gdrive_dp()
    gdrive.add_file("alice", "Depot/Media/tab\there.iso", b"tab")
    gdrive.add_file("alice", "Depot/Media/dup.iso", b"first")
    gdrive.add_file("alice", "Depot/Media/dup.iso", b"second one")
    gdrive.add_file("alice", "Depot/Media/sheet", b"",
                    mime_type="application/vnd.google-apps.spreadsheet")
    problems = []
    with open_storage(dp) as backend:
        entries = {e.path: e for e in backend.walk(problems)}
    assert sorted(entries) == ["Media/dup.iso", "Media/tab\\x09here.iso"]
    assert entries["Media/tab\\x09here.iso"].size == 3
    assert entries["Media/dup.iso"].size == len(b"first")  # the oldest
    assert any("Media/dup.iso: more than one item" in p for p in problems)
    assert any("Media/sheet: a Google Docs item" in p for p in problems)


def test_delete_removes_every_item_of_the_name(gdrive, gdrive_dp):
    """Does delete remove every item of a name that repeats, so no older duplicate takes the
    deleted file's place?"""
    dp = gdrive_dp()
    gdrive.add_file("alice", "Depot/Images/a.wim", b"a")
    gdrive.add_file("alice", "Depot/Images/a.wim", b"a again")
    gdrive.add_file("alice", "Depot/Images/b.wim", b"b")
    with open_storage(dp) as backend:
        backend.delete("Images/a.wim")
    assert gdrive.paths("alice") == ["Depot/Images/b.wim"]


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


def test_relay_links_name_the_file_and_refuse_tampering_and_age(gdrive, gdrive_dp, served):
    """Does a Drive link point at central's relay (no Google credential in it), and is it refused
    once pointed at another file or past its time, its lifetime bounded to a week?"""
    import json

    import requests

    from portal.services import secrets

    dp = gdrive_dp()
    data = os.urandom(2 * MB + 3)
    gdrive.add_file("alice", "Depot/Images/Win 11.wim", data)
    with open_storage(dp) as backend, requests.Session() as http:
        link = backend.download_link("Images/Win 11.wim", 60)
        token = json.loads(secrets.decrypt(dp.secret))
        assert link.startswith(served + "/cloud-links/v1/") and "Win+11" in link
        assert token["access_token"] not in link and token["refresh_token"] not in link
        with http.get(link, timeout=30) as whole:
            assert whole.status_code == 200 and whole.content == data
        with http.get(link.replace("Win+11", "Win+12"), timeout=30) as moved:
            assert moved.status_code == 403
        with pytest.raises(StorageRefused, match="lives from 1 s to"):
            backend.download_link("Images/Win 11.wim", 8 * 86400)
        with link_clock(-120):  # made two minutes ago, for a minute
            expired = backend.download_link("Images/Win 11.wim", 60)
        with http.get(expired, timeout=30) as late:
            assert late.status_code == 403 and "expired" in late.json()["error"]["message"]


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
