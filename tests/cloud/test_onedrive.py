"""What is OneDrive's own, against a local Microsoft Graph (tests/fakes/graph.py): fragments of
320 KiB multiples sent in order to a session that is asked how far it got, Graph's rules checked
before anything is sent, the manifest record beside each file, content already in the account
matched by QuickXorHash, and a hash Business computes late. What every DP does alike is in
tests/storage/ (the storage contract, copies, the OAuth kit)."""
import hashlib
import json
import os

import pytest

from portal.core.errors import StorageRefused
from portal.services import copies
from portal.storage.base import Source, UploadState
from tests.cloud.onedrive_fixtures import ONEDRIVE_CHUNK, onedrive_backend
from tests.factories import write_file
from tests.fakes.graph import quick_xor
from tests.helpers import fresh, status_at

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


def test_fragments_go_in_order_and_a_record_is_kept_beside_the_file(central, rescan, copy,
                                                                   onedrive_dp, graph_fake):
    """Does a copy go up in fragments of DEPOT_ONEDRIVE_CHUNK (202 until the last, 201 for it),
    and is its manifest record the file's size, SHA-256 and QuickXorHash?"""
    dp = onedrive_dp("OneDrive HQ")
    data = os.urandom(3 * MB + 17)
    write_file(central.root, "Images/Win11-23H2.wim", data)
    rescan(central)
    [job] = copy(["Images/Win11-23H2.wim"], dp)
    assert job.state == "succeeded", job.error
    puts = graph_fake.upload_puts()
    assert [p["length"] for p in puts] == [ONEDRIVE_CHUNK] * 4 + [len(data) - 4 * ONEDRIVE_CHUNK]
    assert [p["status"] for p in puts] == [202] * 4 + [201]
    record = json.loads(graph_fake.file("alice",
                                        "Depot/.depot/manifest/Images/Win11-23H2.wim.json"))
    assert record == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                      "quickxor": quick_xor(data)}


# --- resuming ------------------------------------------------------------------------------------

@pytest.mark.parametrize("how, said", [("drop", "OneDrive at 127.0.0.1:"),
                                       ("503", "busy or failing")])
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
    """Is a name OneDrive does not allow refused before anything is sent, naming it?"""
    dp = onedrive_dp("OneDrive HQ")
    write_file(central.root, "Images/what?.wim", b"data")
    rescan(central)
    [job] = copy(["Images/what?.wim"], dp)
    assert job.state == "failed"
    assert "OneDrive does not allow the name 'what?.wim'" in job.error
    assert graph_fake.upload_puts() == []


# --- content already in the account --------------------------------------------------------------

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


def source_of(path: str, data: bytes) -> Source:
    return Source(path, len(data), hashlib.sha256(data).hexdigest(), {},
                  lambda offset, length: data[offset:offset + length])
