"""OneDrive DPs against a local Microsoft Graph (tests/fakes/graph.py): copies on real RQ workers,
token renewal and revocation, resumed upload sessions, Graph's fragment rules, content already in
the account, two accounts side by side, download links, deletes, paging, and secrets kept out of
what people see."""
import hashlib
import json
import logging
import os

import pytest
import requests
from sqlalchemy import select

from portal.core.errors import StorageRefused
from portal.extensions import db
from portal.models import DistributionPoint, InventoryFile, Notification, UploadSession
from portal.services import copies, job_recovery, secrets, verify
from portal.services import distribution_points as dps
from portal.storage.base import Source, UploadState
from tests.cloud.onedrive_fixtures import ONEDRIVE_CHUNK, onedrive_backend
from tests.conftest import fresh, status_at, wait_for
from tests.factories import write_file
from tests.fakes.graph import quick_xor

KIB = 1024
MB = 1024 * 1024


@pytest.fixture
def config_overrides(onedrive_config):
    return onedrive_config


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


# --- tokens --------------------------------------------------------------------------------------

def test_an_access_token_that_expires_mid_copy_is_renewed_once(central, rescan, copy, onedrive_dp,
                                                               graph_fake):
    """When Microsoft stops taking the access token between fragments, is it renewed once (the
    rotated refresh token kept for next time) and does the copy go on to the end?"""
    dp = onedrive_dp("OneDrive HQ")
    first = os.urandom(ONEDRIVE_CHUNK + 1000)
    second = os.urandom(2 * ONEDRIVE_CHUNK + 5)
    write_file(central.root, "Platform Packs/Dell/a.cab", first)
    write_file(central.root, "Platform Packs/Dell/b.cab", second)
    rescan(central)
    stored_before = json.loads(secrets.decrypt(fresh_dp(dp).secret))
    graph_fake.after_put = lambda n: n == 1 and graph_fake.expire_access_tokens()
    [job] = copy(["Platform Packs/Dell"], dp)
    assert job.state == "succeeded", job.error
    assert graph_fake.refreshes == 1
    assert graph_fake.file("alice", "Depot/Platform Packs/Dell/a.cab") == first
    assert graph_fake.file("alice", "Depot/Platform Packs/Dell/b.cab") == second
    assert status_at(dp, "Platform Packs/Dell") == "current"
    stored = json.loads(secrets.decrypt(fresh_dp(dp).secret))
    assert stored["refresh_token"] != stored_before["refresh_token"]  # Microsoft rotated it
    graph_fake.expire_access_tokens()
    backend = onedrive_backend(fresh_dp(dp))
    try:
        assert backend.account()["id"] == "alice"  # the kept refresh token is the live one
    finally:
        backend.http.close()
    assert graph_fake.refreshes == 2


def test_a_revoked_consent_fails_the_copy_asking_to_reconnect(central, rescan, copy, onedrive_dp,
                                                             graph_fake):
    """When the user withdrew Depot's access, does the copy fail saying to reconnect, the DP turn
    needs-auth, and nothing reach the account?"""
    dp = onedrive_dp("OneDrive HQ")
    write_file(central.root, "Images/a.wim", os.urandom(1000))
    rescan(central)
    graph_fake.revoke("alice")
    graph_fake.expire_access_tokens()
    [job] = copy(["Images/a.wim"], dp)
    assert job.state == "failed"
    assert "reconnect" in job.error and "OneDrive" in job.error
    assert fresh_dp(dp).status == "needs-auth"
    assert graph_fake.upload_puts() == []
    assert graph_fake.file("alice", "Depot/Images/a.wim") is None


# --- resuming ------------------------------------------------------------------------------------

@pytest.mark.parametrize("how, said", [("drop", "does not answer"), ("503", "busy or failing")])
def test_an_interrupted_upload_resumes_its_session_sending_only_the_rest(
        central, rescan, copy, onedrive_dp, graph_fake, how, said):
    """When a fragment is lost (the connection drops, or Graph answers 503), does the next try ask
    the saved session how far it got and send only the rest, in the same session, and is the
    QuickXorHash Depot computed itself (central had none) right?"""
    data = os.urandom(4 * ONEDRIVE_CHUNK + 12345)
    write_file(central.root, "Images/Win11.wim", data)
    rescan(central)  # before any OneDrive DP: central computed no QuickXorHash
    dp = onedrive_dp("OneDrive HQ")
    graph_fake.after_put = lambda n: n == 2 and graph_fake.fail_next_uploads(1, how)
    [job] = copy(["Images/Win11.wim"], dp)
    assert job.state == "succeeded", job.error
    assert any(said in w for w in job.warnings), job.warnings
    assert graph_fake.file("alice", "Depot/Images/Win11.wim") == data
    puts = graph_fake.upload_puts()
    starts = [p["range"].split(" ")[1].split("-")[0] for p in puts]
    chunk = ONEDRIVE_CHUNK
    assert starts == [str(s) for s in (0, chunk, 2 * chunk, 2 * chunk, 3 * chunk, 4 * chunk)]
    assert sum(p["length"] for p in puts if p["status"] in (200, 201, 202)) == len(data)
    calls = [(method, path) for method, path, _ in graph_fake.log]
    assert sum(path.endswith(":/createUploadSession") for _, path in calls) == 1
    assert ("GET", "/up/<session>") in calls  # the resumed try asked the session
    assert status_at(dp, "Images/Win11.wim") == "current"


def test_an_expired_session_is_started_afresh(central, rescan, copy, onedrive_dp, graph_fake):
    """When the upload session expired between two fragments, does the next try start a new one
    and end with the whole file?"""
    dp = onedrive_dp("OneDrive HQ")
    data = os.urandom(3 * ONEDRIVE_CHUNK + 7)
    write_file(central.root, "Images/Win11.wim", data)
    rescan(central)
    graph_fake.after_put = lambda n: n == 2 and graph_fake.expire_upload_sessions()
    [job] = copy(["Images/Win11.wim"], dp)
    assert job.state == "succeeded", job.error
    assert any("expired" in w for w in job.warnings), job.warnings
    assert graph_fake.file("alice", "Depot/Images/Win11.wim") == data
    calls = [path for _, path, _ in graph_fake.log]
    assert sum(path.endswith(":/createUploadSession") for path in calls) == 2


def test_a_file_damaged_in_transit_is_removed_and_sent_again(central, rescan, copy, onedrive_dp,
                                                             graph_fake):
    """When what OneDrive stored does not have central's QuickXorHash, is it deleted and sent
    again, ending identical?"""
    dp = onedrive_dp("OneDrive HQ")
    data = os.urandom(2 * ONEDRIVE_CHUNK + 99)
    write_file(central.root, "Images/Win11.wim", data)
    rescan(central)
    graph_fake.corrupt_next = 1
    [job] = copy(["Images/Win11.wim"], dp)
    assert job.state == "succeeded", job.error
    assert any("arrived damaged" in w for w in job.warnings), job.warnings
    assert graph_fake.file("alice", "Depot/Images/Win11.wim") == data
    assert len(graph_fake.upload_puts()) == 6


# --- Graph's fragment rules ----------------------------------------------------------------------

@pytest.mark.parametrize("chunk, message", [
    (300 * KIB, "DEPOT_ONEDRIVE_CHUNK must be a multiple of 320 KiB"),
    (192 * 320 * KIB, "DEPOT_ONEDRIVE_CHUNK must be under 60 MiB"),
])
def test_a_chunk_size_graph_would_refuse_is_never_sent(app, central, rescan, copy, onedrive_dp,
                                                      graph_fake, chunk, message):
    """Is a configured fragment size that breaks Graph's rules refused before anything is sent,
    with a message naming the setting?"""
    dp = onedrive_dp("OneDrive HQ")
    write_file(central.root, "Images/Win11.wim", os.urandom(1000))
    rescan(central)
    app.config["DEPOT_ONEDRIVE_CHUNK"] = chunk
    graph_fake.log.clear()
    [job] = copy(["Images/Win11.wim"], dp)
    assert job.state == "failed"
    assert message in job.error
    assert graph_fake.upload_puts() == []
    assert not any("createUploadSession" in path for _, path, _ in graph_fake.log)
    assert graph_fake.sessions == {}


def test_a_piece_graph_would_refuse_is_never_sent(onedrive_dp, graph_fake):
    """Does the upload refuse, before sending, a fragment that is not a multiple of 320 KiB, one
    out of order, and one past the end; and does abort cancel the session?"""
    dp = onedrive_dp("OneDrive HQ")
    data = os.urandom(2 * ONEDRIVE_CHUNK + 10)
    backend = onedrive_backend(dp)
    try:
        state = UploadState()
        upload = backend.upload(source_of("Images/x.wim", data), state)
        assert upload.chunk_size == ONEDRIVE_CHUNK and upload.parallel == 1
        assert state.data["url"] and upload.missing() == [(0, len(data))]
        with pytest.raises(StorageRefused, match="multiples of 320 KiB"):
            upload.send(0, data[:100 * KIB])
        with pytest.raises(StorageRefused, match="in order"):
            upload.send(ONEDRIVE_CHUNK, data[ONEDRIVE_CHUNK:2 * ONEDRIVE_CHUNK])
        with pytest.raises(StorageRefused, match="does not fit"):
            upload.send(0, data + b"more")
        assert graph_fake.upload_puts() == []
        assert len(graph_fake.sessions) == 1
        upload.abort()
        assert graph_fake.sessions == {}
    finally:
        backend.http.close()


def test_names_onedrive_refuses_fail_the_copy_clearly(central, rescan, copy, onedrive_dp,
                                                      graph_fake):
    dp = onedrive_dp("OneDrive HQ")
    write_file(central.root, "Images/what?.wim", b"data")
    rescan(central)
    [job] = copy(["Images/what?.wim"], dp)
    assert job.state == "failed"
    assert "OneDrive does not allow the name 'what?.wim'" in job.error
    assert graph_fake.upload_puts() == []


def test_an_empty_file_is_copied(central, rescan, copy, onedrive_dp, graph_fake):
    """Is a zero-byte file (which upload sessions do not take) placed and current?"""
    dp = onedrive_dp("OneDrive HQ")
    write_file(central.root, "Answer Files/empty.xml", b"")
    rescan(central)
    [job] = copy(["Answer Files/empty.xml"], dp)
    assert job.state == "succeeded", job.error
    assert graph_fake.file("alice", "Depot/Answer Files/empty.xml") == b""
    assert status_at(dp, "Answer Files/empty.xml") == "current"


# --- content already in the account --------------------------------------------------------------

def test_content_already_in_the_account_is_found_by_the_first_rescan(central, rescan, onedrive_dp,
                                                                      graph_fake):
    """Does the first rescan list what an older console put in the account, with OneDrive's own
    QuickXorHash, and find it current against central without downloading it; and skip what is
    not content (hidden, temp, outside the libraries, Depot's own records)?"""
    dp = onedrive_dp("OneDrive HQ")
    image, part = os.urandom(ONEDRIVE_CHUNK + 3), os.urandom(5000)
    write_file(central.root, "Images/Old.wim", image)
    write_file(central.root, "Reference Machines/Win11-Ref/a/b.bin", part)
    rescan(central)
    graph_fake.add_file("alice", "Depot/Images/Old.wim", image)
    graph_fake.add_file("alice", "Depot/Reference Machines/Win11-Ref/a/b.bin", part)
    graph_fake.add_file("alice", "Depot/Images/Foreign.wim", b"only in the account")
    graph_fake.add_file("alice", "Depot/Images/.hidden", b"x")
    graph_fake.add_file("alice", "Depot/Images/copy.tmp", b"x")
    graph_fake.add_file("alice", "Depot/notes.txt", b"x")
    graph_fake.add_file("alice", "Depot/.depot/manifest/Images/Gone.wim.json", b"{}")
    graph_fake.log.clear()
    rescan(dp)
    items = {i["key"]: i for i in dps.content(dp)}
    assert items["Images/Old.wim"]["status"] == "current"
    assert items["Reference Machines/Win11-Ref"]["status"] == "current"
    # Nobody recorded its SHA-256 and central has no such file: a verify hashes it once.
    assert items["Images/Foreign.wim"]["status"] == "unverified"
    assert set(items) == {"Images/Old.wim", "Reference Machines/Win11-Ref", "Images/Foreign.wim"}
    rows = {row.path: row for row in db.session.scalars(
        select(InventoryFile).where(InventoryFile.dp_id == dp.id))}
    assert set(rows) == {"Images/Old.wim", "Reference Machines/Win11-Ref/a/b.bin",
                         "Images/Foreign.wim"}
    assert json.loads(rows["Images/Old.wim"].hashes) == {"quickxor": quick_xor(image)}
    assert not any(path.startswith("/dl/") for _, path, _ in graph_fake.log)  # nothing downloaded


def test_a_copy_of_a_file_already_in_the_account_sends_nothing(central, rescan, copy, onedrive_dp,
                                                               graph_fake):
    """When the account already holds this version (the inventory did not know), does the copy
    see it by size and QuickXorHash, record it, and send no byte?"""
    data = os.urandom(ONEDRIVE_CHUNK + 77)
    write_file(central.root, "Images/Old.wim", data)
    rescan(central)  # before any OneDrive DP: the copy computes the QuickXorHash itself
    dp = onedrive_dp("OneDrive HQ")
    graph_fake.add_file("alice", "Depot/Images/Old.wim", data)
    [job] = copy(["Images/Old.wim"], dp)
    assert job.state == "succeeded", job.error
    assert graph_fake.upload_puts() == []
    record = json.loads(graph_fake.file("alice", "Depot/.depot/manifest/Images/Old.wim.json"))
    assert record == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                      "quickxor": quick_xor(data)}
    assert status_at(dp, "Images/Old.wim") == "current"


# --- several accounts ----------------------------------------------------------------------------

def test_two_accounts_side_by_side(central, rescan, copy, onedrive_dp, graph_fake):
    """With two OneDrive DPs of two accounts (and folders), does each copy land in its own
    account only?"""
    hq = onedrive_dp("OneDrive HQ", "alice", "Depot")
    branch = onedrive_dp("OneDrive Branch", "bob", "IT/Depot")
    assert hq.settings["account_id"] == "alice" and branch.settings["account_id"] == "bob"
    data = os.urandom(ONEDRIVE_CHUNK + 1)
    write_file(central.root, "Images/a.wim", data)
    write_file(central.root, "Media/b.iso", b"media")
    rescan(central)
    [one] = copy(["Images/a.wim"], hq)
    [two] = copy(["Media/b.iso"], branch)
    assert one.state == two.state == "succeeded", (one.error, two.error)
    alice, bob = graph_fake.paths("alice"), graph_fake.paths("bob")
    assert "Depot/Images/a.wim" in alice and not any("b.iso" in p for p in alice)
    assert "IT/Depot/Media/b.iso" in bob and not any("a.wim" in p for p in bob)
    assert graph_fake.file("alice", "Depot/Images/a.wim") == data
    assert status_at(hq, "Images/a.wim") == "current" and status_at(hq, "Media/b.iso") == "missing"
    assert status_at(branch, "Media/b.iso") == "current"
    assert status_at(branch, "Images/a.wim") == "missing"
    for dp in (hq, branch):
        rescan(dp)
    assert status_at(hq, "Images/a.wim") == "current"
    assert status_at(branch, "Media/b.iso") == "current"


# --- links, deletes, listing, reading ------------------------------------------------------------

def test_download_links_are_short_lived_and_carry_no_account_token(central, rescan, copy,
                                                                  onedrive_dp, graph_fake):
    """Can an endpoint GET the file (and a range of it) with a plain request, without any token of
    the account, until the link dies?"""
    dp = onedrive_dp("OneDrive HQ")
    data = os.urandom(100 * KIB)
    write_file(central.root, "Images/a.wim", data)
    rescan(central)
    copy(["Images/a.wim"], dp)
    backend = onedrive_backend(dp)
    try:
        link = backend.download_link("Images/a.wim", 600)
        token = backend.token
        with pytest.raises(StorageRefused, match="is not in"):
            backend.download_link("Images/nope.wim", 600)
    finally:
        backend.http.close()
    assert token["access_token"] not in link and token["refresh_token"] not in link
    with requests.get(link, timeout=10) as answer:
        assert answer.status_code == 200 and answer.content == data
    with requests.get(link, headers={"Range": "bytes=10-19"}, timeout=10) as answer:
        assert answer.status_code == 206 and answer.content == data[10:20]
    graph_fake.expire_download_links()
    with requests.get(link, timeout=10) as answer:
        assert answer.status_code == 401 and answer.content != data


def test_delete_removes_files_folders_and_their_records(central, rescan, copy, admin, work,
                                                        onedrive_dp, graph_fake):
    """Does deleting a folder asset or a file asset remove it and its manifest records, absent
    being fine, and does a delete job bring the DP's statuses up to date?"""
    dp = onedrive_dp("OneDrive HQ")
    write_file(central.root, "Reference Machines/Ref/a/b.bin", b"b")
    write_file(central.root, "Reference Machines/Ref/c.bin", b"c")
    write_file(central.root, "Images/a.wim", b"a")
    rescan(central)
    copy(["Reference Machines/Ref"], dp)
    copy(["Images/a.wim"], dp)
    assert "Depot/.depot/manifest/Reference Machines/Ref/a/b.bin.json" in graph_fake.paths("alice")
    backend = onedrive_backend(dp)
    try:
        backend.delete("Reference Machines/Ref")
        backend.delete("Reference Machines/Ref")  # absent is fine
        backend.delete("Images/never-there.wim")
    finally:
        backend.http.close()
    left = graph_fake.paths("alice")
    assert not any("Ref" in p for p in left), left
    assert "Depot/Images/a.wim" in left
    job = copies.request_delete(admin, fresh_dp(dp), "Images/a.wim")
    work()
    assert fresh(job.id).state == "succeeded", fresh(job.id).error
    assert graph_fake.paths("alice") == []
    assert graph_fake.item("alice", "Depot/Images") is not None  # the library folder stays
    assert status_at(dp, "Images/a.wim") == "missing"


def test_walk_follows_every_page(onedrive_dp, graph_fake):
    """With Graph giving three children a page, does walk list every file, folders included, and
    read each file back with readinto?"""
    dp = onedrive_dp("OneDrive HQ")
    expected = {}
    for n in range(8):
        expected[f"Images/img{n}.wim"] = os.urandom(100 + n)
    for n in range(4):
        expected[f"Platform Packs/HP/drivers/d{n}.inf"] = os.urandom(10 + n)
    for path, data in expected.items():
        graph_fake.add_file("alice", f"Depot/{path}", data)
    graph_fake.log.clear()
    backend = onedrive_backend(dp)
    try:
        problems = []
        entries = {e.path: e for e in backend.walk(problems)}
        assert problems == []
        assert set(entries) == set(expected)
        pages = [path for method, path, _ in graph_fake.log if path.endswith("/children")]
        assert len(pages) >= 3 + 1 + 1 + 2 + 4  # Images: 3 pages; HP, drivers; 2 pages; 4 empty
        entry = entries["Images/img3.wim"]
        assert entry.size == 103 and entry.hashes == {"quickxor": quick_xor(expected[entry.path])}
        buf, got = bytearray(7), b""
        with backend.open_read(entry) as fh:
            while n := fh.readinto(buf):
                got += bytes(buf[:n])
        assert got == expected[entry.path]
        assert backend.stat(entry) == (entry.size, entry.mtime_ns)
        graph_fake.add_file("alice", "Depot/Images/img3.wim", b"changed")
        assert backend.stat(entry)[0] == 7
    finally:
        backend.http.close()


def test_check_space_and_account(onedrive_dp, graph_fake):
    """Does check pass for a connected DP and say clearly when the folder is gone or the token
    belongs to another account; is the quota reported?"""
    dp = onedrive_dp("OneDrive HQ")
    backend = onedrive_backend(dp)
    try:
        backend.check()
        assert backend.account() == {"id": "alice", "name": "alice@example.com"}
        assert backend.space() == (graph_fake.quota_total, graph_fake.quota_total)
        backend.settings["folder"] = "Elsewhere"
        with pytest.raises(StorageRefused, match="folder Elsewhere is not in alice@example.com"):
            backend.check()
        backend.settings.update(folder="Depot", account_id="bob", account="bob@example.com")
        with pytest.raises(StorageRefused, match="reconnect it with the right account"):
            backend.check()
    finally:
        backend.http.close()


# --- secrets -------------------------------------------------------------------------------------

def test_tokens_and_session_urls_stay_out_of_reprs_errors_and_logs(central, rescan, copy,
                                                                   onedrive_dp, graph_fake):
    """After a copy that keeps failing mid-upload, are the tokens and the session URL in no repr,
    job error or warning, notification or log line, and the saved session encrypted?"""
    dp = onedrive_dp("OneDrive HQ")
    write_file(central.root, "Images/a.wim", os.urandom(3 * ONEDRIVE_CHUNK))
    rescan(central)
    graph_fake.after_put = lambda n: n == 1 and graph_fake.fail_next_uploads(50, "503")
    records = []
    handler = _Collect(records)
    root, portal_log = logging.getLogger(), logging.getLogger("portal")
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    portal_log.setLevel(logging.DEBUG)
    try:
        [job] = copy(["Images/a.wim"], dp)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        portal_log.setLevel(logging.NOTSET)
    assert job.state == "failed" and "gave up" in job.error
    token = json.loads(secrets.decrypt(fresh_dp(dp).secret))
    [session] = graph_fake.session_tokens
    secret_values = [token["access_token"], token["refresh_token"], session]
    backend = onedrive_backend(dp)
    try:
        upload = backend.upload(source_of("Images/a.wim", b"x" * 10), UploadState())
        seen = [repr(backend), repr(upload), job.error, *job.warnings, *records]
    finally:
        upload.abort()
        backend.http.close()
    seen += [n.message for n in db.session.scalars(select(Notification))]
    saved = db.session.scalars(select(UploadSession).where(UploadSession.dp_id == dp.id)).all()
    assert saved, "the failed copy keeps its session to resume"
    seen += [row.data for row in saved]
    assert records, "nothing was logged: the check would be empty"
    for text in seen:
        for value in secret_values:
            assert value not in text


class _Collect(logging.Handler):
    """Depot's and the workers' log lines (not the fake provider's own access log, werkzeug's)."""

    def __init__(self, records):
        super().__init__(logging.DEBUG)
        self.records = records

    def emit(self, record):
        if record.name != "werkzeug":
            self.records.append(self.format(record))


def fresh_dp(dp):
    db.session.expire_all()
    return db.session.get(DistributionPoint, dp.id)


def source_of(path: str, data: bytes) -> Source:
    return Source(path, len(data), hashlib.sha256(data).hexdigest(), {},
                  lambda offset, length: data[offset:offset + length])


# --- verify and a killed worker -------------------------------------------------------------------

def test_verify_downloads_only_what_onedrive_cannot_vouch_for(central, rescan, copy, admin, work,
                                                              onedrive_dp, graph_fake):
    """Does a verify trust OneDrive's hash where it still equals the recorded one, download and
    flag a file whose bytes changed there, and hash once content nobody recorded?"""
    dp = onedrive_dp("OneDrive HQ")
    data, fine = os.urandom(ONEDRIVE_CHUNK + 5), os.urandom(1000)
    write_file(central.root, "Images/Win11.wim", data)
    write_file(central.root, "Images/Fine.wim", fine)
    rescan(central)
    copy(["Images/Win11.wim"], dp)
    copy(["Images/Fine.wim"], dp)
    graph_fake.add_file("alice", "Depot/Media/foreign.iso", b"written by hand")
    rescan(dp)
    assert status_at(dp, "Media/foreign.iso") == "unverified"
    graph_fake.corrupt("alice", "Depot/Images/Win11.wim")
    graph_fake.log.clear()
    job, _ = verify.request_verify(dp, admin)
    work()
    done = fresh(job.id)
    assert done.state == "succeeded", done.error
    assert "1 hash mismatch(es)" in done.summary and "1 hashed for the first time" in done.summary
    assert status_at(dp, "Images/Win11.wim") == "failed"
    assert status_at(dp, "Images/Fine.wim") == "current"
    assert status_at(dp, "Media/foreign.iso") == "only-here"
    assert len([p for _, p, _ in graph_fake.log if p.startswith("/dl/")]) == 2  # not Fine.wim


@pytest.mark.slow
def test_a_killed_worker_resumes_the_saved_session_in_another_process(central, rescan, admin,
                                                                     onedrive_dp, graph_fake,
                                                                     start_worker):
    """After SIGKILL half-way, does another worker process take the session URL kept (encrypted)
    in the database, ask OneDrive how far it got, and send only the rest?"""
    data = os.urandom(8 * ONEDRIVE_CHUNK + 321)
    write_file(central.root, "Images/Win11.wim", data)
    rescan(central)
    dp = onedrive_dp("OneDrive HQ")
    dp.bandwidth_limit = 1 * MB  # about 5 s in all: time to kill it half-way
    db.session.commit()
    [job] = copies.request_copies(admin, ["Images/Win11.wim"], [dp.id])
    worker = start_worker()
    wait_for(lambda: (fresh(job.id).bytes_done or 0) >= 3 * ONEDRIVE_CHUNK, timeout=60,
             message="the copy to get a third of the way")
    worker.kill()
    assert graph_fake.file("alice", "Depot/Images/Win11.wim") is None  # never a partial file
    assert db.session.scalars(select(UploadSession).where(UploadSession.dp_id == dp.id)).all()
    wait_for(lambda: job_recovery.recover_lost_jobs().get(job.id) == "requeued", timeout=30,
             message="recovery to notice the dead worker")
    stored_before = sum(p["length"] for p in graph_fake.upload_puts() if p["status"] == 202)
    puts_before = len(graph_fake.upload_puts())
    assert stored_before >= 3 * ONEDRIVE_CHUNK
    start_worker()
    wait_for(lambda: fresh(job.id).state in ("succeeded", "failed"), timeout=60,
             message="the resumed copy to finish")
    done = fresh(job.id)
    assert done.state == "succeeded", done.error
    assert graph_fake.file("alice", "Depot/Images/Win11.wim") == data
    after = graph_fake.upload_puts()[puts_before:]
    assert after and after[0]["range"].startswith(f"bytes {stored_before}-")
    assert sum(p["length"] for p in after) == len(data) - stored_before
    calls = [(method, path) for method, path, _ in graph_fake.log]
    assert sum(path.endswith(":/createUploadSession") for _, path in calls) == 1
    assert ("GET", "/up/<session>") in calls
    assert status_at(dp, "Images/Win11.wim") == "current"


@pytest.mark.parametrize("hashless, status", [(2, "current"), (100, "unverified")])
def test_a_hash_onedrive_gives_late_is_waited_for_and_never_costs_the_file(
        central, rescan, copy, onedrive_dp, graph_fake, hashless, status):
    """When OneDrive answers without the file's QuickXorHash (Business computes it a moment
    later), is it asked again, and if it never comes, is the file kept, unverified, rather than
    deleted as damaged?"""
    dp = onedrive_dp("OneDrive HQ")
    data = os.urandom(MB + 5)
    write_file(central.root, "Images/Late.wim", data)
    rescan(central)
    graph_fake.hashless_answers = hashless
    [job] = copy(["Images/Late.wim"], dp)
    graph_fake.hashless_answers = 0
    assert job.state == "succeeded", job.error
    assert graph_fake.file("alice", "Depot/Images/Late.wim") == data
    assert status_at(dp, "Images/Late.wim") == status
