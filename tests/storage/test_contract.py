"""The storage interface's contract (portal.storage.base.StorageBackend), run against every
backend: central's folder, a DP node, S3 on moto's server, OneDrive, Google Drive and Dropbox on
their protocol servers. What differs by design a backend says itself (`hashing`) or its place does
(tests/storage/places.py): no test here asks which provider it talks to."""
import hashlib
import os
import threading

import pytest
import requests

from portal.core.errors import DamagedInTransit, DepotError, NotFound, StorageRefused
from portal.core.files import FileEntry
from portal.core.hashes import MAKERS, Hasher
from portal.core.hashing import Reader, hash_entry
from portal.core.libraries import LIBRARIES
from portal.storage.base import UploadState
from tests.storage.places import MiB, read_all, send, source_of, upload_file

SIZE = 5 * MiB + 1000  # more than one piece everywhere (two S3 parts, nine OneDrive fragments)
CONTENT = {"Images/Win11.wim": b"w" * 10, "Reference Machines/Win11-Ref/a/b.bin": b"inner",
           "Media/Überblick – 日本.iso": b"a name beyond ASCII"}
NOT_CONTENT = {"Images/.hidden": b"h", "Images/copy.tmp": b"t", "Images/~$lock.wim": b"l",
               "Other/notes.txt": b"outside the libraries"}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def known_sha256(backend, entry) -> str | None:
    """The SHA-256 a rescan learns of a listed file without reading it."""
    if backend.hashing == "reports":
        backend.fill_hashes([entry])
    return entry.sha256


# --- checks and layout ---------------------------------------------------------------------------

def test_check_and_ping_pass_then_say_what_is_wrong_once_the_dp_is_gone(place, backend):
    """Does a working DP pass the connection check and the health check, and once it is gone
    (its server down, its folder deleted), do both fail with a message a person can act on and
    no credential in it?"""
    backend.check()
    backend.ping()
    place.break_dp()
    with place.open() as gone:  # a new backend: no connection kept from before
        for call in (gone.check, gone.ping):
            with pytest.raises(DepotError) as failed:
                call()
            assert failed.value.message
            assert not any(secret in failed.value.message for secret in place.secrets())


def test_ensure_layout_makes_missing_library_folders_again(place, backend):
    """Does ensure_layout make a library folder that went missing (where the DP has folders),
    do no harm when run twice, and leave what the other folders hold alone?"""
    place.put("Images/a.wim", b"a")
    dropped = place.drop_library("Media")
    backend.ensure_layout()
    backend.ensure_layout()
    libraries = place.libraries()
    assert dropped == (libraries is not None)
    assert libraries is None or libraries == set(LIBRARIES)
    assert place.read("Images/a.wim") == b"a"


def test_space_is_free_and_total_where_the_dp_knows_them(place, backend):
    """Is the space a DP reports unknown, or free bytes within its total, as the DP counts them
    (an account's quota less what it holds)?"""
    place.put("Images/a.wim", os.urandom(1000))
    free, total = backend.space()
    assert total is not None or free is None
    if free is not None:
        assert 0 <= free <= total
    expected = place.expected_space()
    assert expected is None or (free, total) == expected


# --- listing and hashes --------------------------------------------------------------------------

def test_walk_lists_every_library_file_and_nothing_else(place, backend):
    """Does the walk list the files under the library folders, at any depth and with names beyond
    ASCII, and leave out hidden and temporary files, anything outside the libraries and anything
    outside the DP's folder (a sibling named like it too), without a problem to report?"""
    for path, data in {**CONTENT, **NOT_CONTENT}.items():
        place.put(path, data)
    place.put_beside("Images/not-ours.wim", b"another DP's")
    problems = []
    entries = {entry.path: entry for entry in backend.walk(problems)}
    assert problems == []
    assert sorted(entries) == sorted(CONTENT)
    for path, data in CONTENT.items():
        entry = entries[path]
        assert entry.size == len(data) and entry.mtime_ns > 0
        # Only a DP that hashes its own files knows their SHA-256 from the listing alone.
        assert entry.sha256 == (sha256(data) if backend.hashing == "self" else None)


def test_walk_follows_every_page(place, backend):
    """With listings two entries a page where the DP lists page by page, does the walk still list
    every file once?"""
    paged = place.small_pages()
    names = [f"Images/img{n}.wim" for n in range(7)] + \
        [f"Platform Packs/HP/drivers/d{n}.inf" for n in range(5)]
    for name in names:
        place.put(name, name.encode())
    before = place.listings()
    found = [entry.path for entry in backend.walk([])]
    assert sorted(found) == sorted(names)
    if paged:  # Images in four pages at least, the drivers in three
        assert place.listings() - before >= 7


def test_a_file_put_there_by_hand_is_hashed_the_way_the_dp_says(place, backend):
    """For a file Depot did not write: does a DP that hashes itself report its SHA-256 (again
    with verify), one that reports hashes give none of ours but its own hash, the one central
    computes too, and can everything else be hashed by reading it through open_read?"""
    data = os.urandom(300_000)
    place.put("Images/Hand.wim", data)
    [entry] = backend.walk([])
    if backend.hashing == "self":
        assert entry.sha256 == sha256(data)
        assert [e.sha256 for e in backend.walk([], verify=True)] == [sha256(data)]
        return
    assert known_sha256(backend, entry) is None  # nobody recorded it
    if backend.hashing == "reports":
        provider = {k: v for k, v in entry.hashes.items() if k in MAKERS}
        assert provider, "a provider hash central can compute, to match content without reading"
        hasher = Hasher(tuple(provider))
        hasher.update(data)
        assert hasher.hashes() == provider
    reader = Reader(0, threading.Event())
    hashed = hash_entry(backend, entry, reader, bytearray(64 * 1024))
    assert (hashed.sha256, hashed.error, reader.bytes_read) == (sha256(data), None, len(data))


def test_open_read_streams_a_file_and_stat_follows_it(place, backend):
    """Does open_read give a file's bytes (read and readinto alike), stat its size and time as
    listed, then its new size once it changed, and both tell a file that is gone (the hasher
    notes it vanished)? A DP that hashes its own files is never read from here."""
    data = os.urandom(3 * MiB + 5)
    place.put("Images/r.wim", data)
    [entry] = backend.walk([])
    if backend.hashing == "self":
        with pytest.raises(DepotError, match="cannot be read from here"):
            backend.open_read(entry)
        return
    with backend.open_read(entry) as stream:
        assert stream.read(10) == data[:10]
    assert read_all(backend.open_read(entry)) == data
    assert backend.stat(entry) == (entry.size, entry.mtime_ns)
    place.put("Images/r.wim", b"changed")
    assert backend.stat(entry)[0] == 7
    place.remove("Images/r.wim")
    assert backend.stat(entry) is None
    with pytest.raises(FileNotFoundError):
        backend.open_read(entry)
    assert hash_entry(backend, entry, Reader(0, threading.Event())).vanished
    if backend.hashing == "reports":  # a cloud DP finds a file by its path too
        with pytest.raises(FileNotFoundError):
            backend.open_read(FileEntry("Images/r.wim", 1, 1))


# --- uploads -------------------------------------------------------------------------------------

def test_a_dp_that_takes_no_uploads_says_so(place, backend):
    """Does every DP either take an upload or refuse it, before anything is written, saying so?"""
    data = os.urandom(1000)
    if place.uploads:
        assert upload_file(backend, "Images/a.wim", data)["sha256"] == sha256(data)
        assert place.read("Images/a.wim") == data
        return
    with pytest.raises(DepotError, match="does not take uploads"):
        backend.upload(source_of("Images/a.wim", data), UploadState())
    assert place.read("Images/a.wim") is None


def test_an_upload_lands_whole_and_is_listed_as_finish_said(uploading, receiver):
    """Does a file sent in pieces land byte-identical under a name beyond ASCII, with finish
    reporting the size, time, SHA-256 and provider hash the next walk lists (a rescan after a
    copy then hashes nothing again), and its SHA-256 known there without reading the file?"""
    data, path = os.urandom(SIZE), "Images/Überblick – 日本.wim"
    upload = receiver.upload(source_of(path, data), UploadState())
    assert upload.done is None and upload.missing() == [(0, SIZE)]
    send(upload, data)
    result = upload.finish()
    assert (result["size"], result["sha256"]) == (SIZE, sha256(data))
    assert uploading.read(path) == data
    downloads = uploading.downloads()
    [entry] = receiver.walk([])
    assert (entry.path, entry.size, entry.mtime_ns) == (path, SIZE, result["mtime_ns"])
    reported = result.get("hashes") or {}
    assert {k: v for k, v in reported.items() if k in entry.hashes} == \
        {k: v for k, v in entry.hashes.items() if k in reported}
    assert known_sha256(receiver, entry) == sha256(data)
    assert uploading.downloads() == downloads  # nothing read to know it


def test_an_upload_resumes_from_its_saved_state_in_another_backend(uploading, receiver):
    """After one piece went and was checkpointed, does a new backend (another process, with only
    the DP's row and the saved state) ask the DP how far it got, send only the rest, and end with
    the whole file; and is nothing visible under the file's name meanwhile?"""
    data, path, state = os.urandom(SIZE), "Images/Resumed.wim", UploadState()
    sent = send(receiver.upload(source_of(path, data), state), data, upto=1)
    assert 0 < sent < SIZE
    assert uploading.read(path) is None and list(receiver.walk([])) == []
    with uploading.open() as another:
        upload = another.upload(source_of(path, data), UploadState(state.data))
        assert upload.missing() == [(sent, SIZE)]
        send(upload, data)
        assert upload.finish()["sha256"] == sha256(data)
    assert uploading.read(path) == data


def test_a_recorded_sha256_counts_only_for_the_version_it_was_recorded_for(uploading, receiver):
    """Once the bytes of a file Depot wrote changed there by other means (in place, same size, or
    replaced where files cannot change in place), is the SHA-256 recorded for it no longer taken
    for the file, and does a DP that hashes itself find the new one?"""
    data, path = os.urandom(100_000), "Images/Changed.wim"
    upload_file(receiver, path, data)
    if not uploading.corrupt(path):  # an S3 object is replaced, never changed
        uploading.put(path, os.urandom(len(data)))
    [entry] = receiver.walk([], verify=True)
    found = known_sha256(receiver, entry)
    if receiver.hashing == "reports":
        assert found is None
    else:
        assert found not in (None, sha256(data)) and found == sha256(uploading.read(path))


def test_a_version_already_there_is_done_without_sending(uploading, receiver):
    """Asked to upload the very version Depot already put there (an earlier run's answer was
    lost), does the backend say it is done, as finish said, and open no upload?"""
    data, path = os.urandom(1000), "Images/Done.wim"
    first = upload_file(receiver, path, data)
    again = receiver.upload(source_of(path, data), UploadState())
    assert again.done is not None
    assert {k: again.done[k] for k in ("size", "sha256", "mtime_ns")} == \
        {k: first[k] for k in ("size", "sha256", "mtime_ns")}
    assert again.done.get("hashes") == first.get("hashes")
    assert uploading.partial_uploads() in (0, None)


def test_an_empty_file_is_uploaded(uploading, receiver):
    """Does a zero-byte file, which has no piece to send, arrive?"""
    upload = receiver.upload(source_of("Answer Files/empty.xml", b""), UploadState())
    assert upload.missing() == []
    result = upload.finish()
    assert (result["size"], result["sha256"]) == (0, sha256(b""))
    assert uploading.read("Answer Files/empty.xml") == b""


def test_abort_drops_the_partial_upload_and_is_fine_twice(uploading, receiver):
    """Does abort leave no file and no open upload behind (where the DP can drop one), and may
    it be called again?"""
    data, path = os.urandom(SIZE), "Images/Aborted.wim"
    upload = receiver.upload(source_of(path, data), UploadState())
    send(upload, data, upto=1)
    upload.abort()
    upload.abort()
    assert uploading.read(path) is None
    assert uploading.partial_uploads() in (0, None)


def test_a_newer_version_replaces_the_old_one_and_drops_a_stale_upload(uploading, receiver):
    """Does a new version replace the one there (listed with its size and SHA-256), and is the
    unfinished upload of another version, handed over as stale, dropped where the DP can?"""
    old, unfinished, new = os.urandom(SIZE), os.urandom(SIZE), os.urandom(SIZE - 7)
    path = "Images/Versioned.wim"
    upload_file(receiver, path, old)
    stale = UploadState()
    send(receiver.upload(source_of(path, unfinished), stale), unfinished, upto=1)
    upload = receiver.upload(source_of(path, new), UploadState(None, stale=stale.data))
    send(upload, new)
    upload.finish()
    assert uploading.read(path) == new
    [entry] = receiver.walk([])
    assert entry.size == len(new) and known_sha256(receiver, entry) == sha256(new)
    if uploading.drops_stale_uploads:
        assert uploading.partial_uploads() == 0


def test_bytes_damaged_on_the_way_never_become_the_file(uploading, receiver):
    """When the bytes arrive damaged, is the upload refused (the piece by a DP that checks each,
    the whole file at finish by the others), with no damaged file left under its name?"""
    data, path = os.urandom(SIZE), "Images/Damaged.wim"
    uploading.damage_next_upload()
    upload = receiver.upload(source_of(path, data), UploadState())
    with pytest.raises(DepotError) as refused:
        send(upload, data)
        upload.finish()
    assert isinstance(refused.value, DamagedInTransit) == (uploading.damage == "finish")
    assert uploading.read(path) is None


def test_sweep_spares_the_uploads_copies_still_work_on(uploading, receiver):
    """Does the sweep of old partial uploads leave alone one a copy saved just now (its id in
    `keep`), which then finishes?"""
    data, path, state = os.urandom(SIZE), "Images/Slow.wim", UploadState()
    upload = receiver.upload(source_of(path, data), state)
    send(upload, data, upto=1)
    keep = frozenset([state.data["upload_id"]]) if state.data and "upload_id" in state.data \
        else frozenset()
    assert receiver.sweep_uploads(7 * 86400, keep) == 0
    send(upload, data)
    assert upload.finish()["sha256"] == sha256(data)
    assert uploading.read(path) == data


# --- deletes -------------------------------------------------------------------------------------

def test_delete_removes_a_file_or_a_folder_asset_and_nothing_beside(place, backend):
    """Does delete remove a file asset and a whole folder asset, accept what is not there, and
    leave the files beside them and the library folders alone?"""
    for path in ("Images/Win11.wim", "Images/Win11.wim.bak", "Platform Packs/Dell/drivers/a.inf",
                 "Platform Packs/Dell/b.sys", "Platform Packs/Dell2/keep.inf"):
        place.put(path, path.encode())
    backend.delete("Images/Win11.wim")
    backend.delete("Platform Packs/Dell")
    backend.delete("Images/never-there.wim")
    backend.delete("Answer Files/missing/folder/x.xml")
    assert place.files() == ["Images/Win11.wim.bak", "Platform Packs/Dell2/keep.inf"]
    assert sorted(e.path for e in backend.walk([])) == place.files()
    assert place.libraries() is None or place.libraries() == set(LIBRARIES)
    with pytest.raises(DepotError):
        backend.delete("Images")  # never a whole library
    assert place.read("Images/Win11.wim.bak") is not None


def test_delete_takes_what_depot_recorded_beside_the_files_along(uploading, receiver):
    """After uploads of a file asset and a folder asset, does deleting both leave nothing in the
    DP's folder, not even what Depot kept about them (manifest records)?"""
    for path in ("Images/a.wim", "Platform Packs/Dell/a.inf", "Platform Packs/Dell/x/b.sys"):
        upload_file(receiver, path, path.encode())
    receiver.delete("Images/a.wim")
    receiver.delete("Platform Packs/Dell")
    assert uploading.files() == []


# --- links ---------------------------------------------------------------------------------------

def test_a_download_link_serves_the_file_to_plain_http(place, backend):
    """Can an endpoint GET a file, and a range of it, with the link alone, which holds none of
    the DP's credentials?"""
    data = os.urandom(100 * 1024)
    place.put("Images/Linked.wim", data)
    link = backend.download_link("Images/Linked.wim", 600)
    assert not any(secret in link for secret in place.secrets())
    with requests.Session() as http:
        with http.get(link, timeout=30) as whole:
            assert whole.status_code == 200 and whole.content == data
        with http.get(link, headers={"Range": "bytes=10-19"}, timeout=30) as part:
            assert part.status_code == 206 and part.content == data[10:20]
            assert part.headers["Content-Range"] == f"bytes 10-19/{len(data)}"


def test_a_link_that_expired_or_names_no_file_gives_nothing(place, backend):
    """Is a link refused once it expired, and one to a file that is not there either refused when
    asked for or answered 404?"""
    data = os.urandom(1000)
    place.put("Images/Linked.wim", data)
    expired = place.expired_link(backend, "Images/Linked.wim")
    with requests.get(expired, timeout=30) as late:
        assert late.status_code in (401, 403, 410) and late.content != data
    try:
        link = backend.download_link("Images/Nothing.wim", 600)
    except StorageRefused as refused:  # a provider that makes links only for what it holds
        assert "Images/Nothing.wim" in refused.message
    else:
        with requests.get(link, timeout=30) as answer:
            assert answer.status_code == 404


def test_open_media_relays_a_file_only_where_links_go_through_central(place, backend):
    """Does a DP whose links lead to central's relay give a file's bytes with the status and
    headers to pass on (200, 206 for a Range, 416 past the end; FileNotFoundError for a file that
    is not there), and every other DP say it gives its own links?"""
    data = os.urandom(3000)
    place.put("Images/Relayed.wim", data)
    try:
        media = backend.open_media("Images/Relayed.wim")
    except NotFound as own:
        assert own.message == "this DP gives its own download links"
        return
    try:
        assert media.status == 200 and b"".join(media.body) == data
        assert media.headers["Content-Length"] == str(len(data))
    finally:
        media.close()
    part = backend.open_media("Images/Relayed.wim", "bytes=100-199")
    try:
        assert part.status == 206 and b"".join(part.body) == data[100:200]
        assert part.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
    finally:
        part.close()
    beyond = backend.open_media("Images/Relayed.wim", "bytes=5000-")
    beyond.close()
    assert beyond.status == 416
    with pytest.raises(FileNotFoundError):
        backend.open_media("Images/Nothing.wim")
