"""Resumable, verified, atomic uploads into a DP node, over real HTTP."""
import hashlib
import os
import time

import pytest

from tests.node_fixtures import KEY

MB = 1024 * 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def create(node, path, data):
    return node.call("POST", "/uploads", json={"path": path, "size": len(data), "sha256": sha(data)})


def test_every_call_needs_the_key(node):
    """Are calls without the key, or with a wrong one, refused with 401 and a JSON reason?"""
    assert node.call("GET", "/health").json()["free_bytes"] > 0
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong-key-0123456789"},
                    {"Authorization": f"Basic {KEY}"}):
        response = node.call("GET", "/health", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
    assert node.call("POST", "/uploads", headers={"Authorization": ""}, json={}).status_code == 401


def test_upload_in_chunks_out_of_order_lands_atomically(node):
    """Do chunks sent in any order assemble into the file, invisible under its name until finish?"""
    data = os.urandom(3 * MB + 123)
    created = create(node, "Images/Win11-23H2.wim", data)
    assert created.status_code == 201
    upload = created.json()
    assert (upload["offset"], upload["size"]) == (0, len(data))
    uid = upload["id"]
    second = node.call("PATCH", f"/uploads/{uid}", data=data[MB:3 * MB],
                       headers={"Upload-Offset": str(MB)})
    assert second.json()["offset"] == 0 and second.json()["received"] == 2 * MB  # a gap at 0
    first = node.call("PATCH", f"/uploads/{uid}", data=data[:MB], headers={"Upload-Offset": "0"})
    assert first.json()["offset"] == 3 * MB
    assert not os.path.exists(node.file("Images/Win11-23H2.wim"))
    node.call("PATCH", f"/uploads/{uid}", data=data[3 * MB:], headers={"Upload-Offset": str(3 * MB)})
    assert not os.path.exists(node.file("Images/Win11-23H2.wim"))
    done = node.call("POST", f"/uploads/{uid}/finish")
    assert done.status_code == 200, done.text
    assert done.json()["sha256"] == sha(data)
    with open(node.file("Images/Win11-23H2.wim"), "rb") as fh:
        assert fh.read() == data
    assert os.listdir(os.path.join(node.root, ".depot", "uploads")) == [f"{uid}.done"]
    assert node.call("GET", f"/uploads/{uid}").status_code == 404


def test_asking_again_resumes_where_it_stopped(node):
    """Does a sender that lost track of its upload get the same one back with its offset?"""
    data = os.urandom(2 * MB)
    uid = create(node, "Media/tools.iso", data).json()["id"]
    node.call("PATCH", f"/uploads/{uid}", data=data[:MB], headers={"Upload-Offset": "0"})
    again = create(node, "Media/tools.iso", data)
    assert again.status_code == 200
    assert (again.json()["id"], again.json()["offset"]) == (uid, MB)
    assert node.call("GET", f"/uploads/{uid}").json()["offset"] == MB
    assert node.upload("Media/tools.iso", data)["size"] == 2 * MB  # sends only what is missing


def test_folder_assets_are_uploaded_file_by_file(node):
    """Are the parent folders of a file inside a folder asset created at finish?"""
    node.upload("Reference Machines/Win11-Ref/disk/part1.bin", b"D" * 300)
    node.upload("Reference Machines/Win11-Ref/machine.json", b"{}")
    assert sorted(os.listdir(node.file("Reference Machines/Win11-Ref"))) == ["disk", "machine.json"]


def test_damaged_upload_is_refused_and_discarded(node):
    """Does a finish whose bytes do not match the SHA-256 answer 422, keeping nothing?"""
    data = os.urandom(MB)
    uid = create(node, "Images/damaged.wim", data).json()["id"]
    node.call("PATCH", f"/uploads/{uid}", data=b"X" + data[1:], headers={"Upload-Offset": "0"})
    done = node.call("POST", f"/uploads/{uid}/finish")
    assert done.status_code == 422
    assert "arrived damaged" in done.json()["error"]["message"]
    assert not os.path.exists(node.file("Images/damaged.wim"))
    assert node.call("GET", f"/uploads/{uid}").status_code == 404


def test_incomplete_upload_cannot_finish(node):
    """Is a finish before every byte arrived refused with the offset, changing nothing?"""
    data = os.urandom(MB)
    uid = create(node, "Images/half.wim", data).json()["id"]
    node.call("PATCH", f"/uploads/{uid}", data=data[:1000], headers={"Upload-Offset": "0"})
    done = node.call("POST", f"/uploads/{uid}/finish")
    assert done.status_code == 409
    assert "1000 of 1048576 bytes" in done.json()["error"]["message"]
    assert node.call("GET", f"/uploads/{uid}").json()["offset"] == 1000


@pytest.mark.parametrize("offset, size", [(MB - 10, 20), (-1, 5)])
def test_chunk_outside_the_upload_is_refused(node, offset, size):
    """Is a chunk that would not fit in the declared size refused with 409?"""
    uid = create(node, "Images/small.wim", b"s" * MB).json()["id"]
    response = node.call("PATCH", f"/uploads/{uid}", data=b"x" * size,
                         headers={"Upload-Offset": str(offset)})
    assert response.status_code == 409
    assert node.call("GET", f"/uploads/{uid}").json()["received"] == 0


def test_chunk_without_its_offset_is_refused(node):
    """Is a chunk sent without Upload-Offset a 400 naming the header?"""
    uid = create(node, "Images/small.wim", b"s" * 10).json()["id"]
    response = node.call("PATCH", f"/uploads/{uid}", data=b"x")
    assert response.status_code == 400
    assert "Upload-Offset" in response.json()["error"]["message"]


def test_abort_forgets_the_upload(node):
    """Does aborting an upload forget it and remove its files?"""
    uid = create(node, "Images/gone.wim", b"g" * 10).json()["id"]
    assert node.call("DELETE", f"/uploads/{uid}").status_code == 204
    assert node.call("GET", f"/uploads/{uid}").status_code == 404
    assert os.listdir(os.path.join(node.root, ".depot", "uploads")) == []


@pytest.mark.parametrize("body, message", [
    ({"path": "Images/x.wim", "size": -1, "sha256": "0" * 64}, "size must be"),
    ({"path": "Images/x.wim", "size": "10", "sha256": "0" * 64}, "size must be"),
    ({"path": "Images/x.wim", "size": 10, "sha256": "XYZ"}, "sha256 must be"),
    ({"path": 42, "size": 10, "sha256": "0" * 64}, "path must be"),
])
def test_bad_upload_requests_are_refused(node, body, message):
    """Are wrong types and values refused with 400 and a message, creating nothing?"""
    response = node.call("POST", "/uploads", json=body)
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]
    assert os.listdir(os.path.join(node.root, ".depot", "uploads")) == []


def test_malformed_json_is_refused(node):
    """Is a body that is not JSON a 400 malformed_json?"""
    response = node.call("POST", "/uploads", data=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"



def test_upload_that_does_not_fit_is_refused_up_front(full_disk, node):
    """Does an upload larger than the free space above the reserve get 507 and a message?"""
    response = create(node, "Images/huge.wim", b"h" * (8 * MB))
    assert response.status_code == 507
    message = response.json()["error"]["message"]
    assert "not enough space for Images/huge.wim" in message and "reserve" in message
    assert os.listdir(os.path.join(node.root, ".depot", "uploads")) == []


@pytest.fixture
def short_lived(node_settings):
    node_settings["DEPOT_DP_UPLOAD_MAX_AGE"] = 3600
    return node_settings


def test_abandoned_uploads_are_cleaned_after_their_age(short_lived, node):
    """Is a partial upload nobody touched for longer than the limit removed, and a fresh one kept?"""
    import json

    old = create(node, "Images/old.wim", b"o" * 10).json()["id"]
    uploads = os.path.join(node.root, ".depot", "uploads")
    meta = os.path.join(uploads, f"{old}.json")
    with open(meta) as fh:
        record = json.load(fh)
    record["updated_at"] = time.time() - 7200
    with open(meta, "w") as fh:
        json.dump(record, fh)
    for name in (f"{old}.json", f"{old}.part"):
        os.utime(os.path.join(uploads, name), (time.time() - 7200,) * 2)
    fresh = create(node, "Images/fresh.wim", b"f" * 10).json()["id"]  # creating sweeps
    assert sorted(os.listdir(uploads)) == sorted([f"{fresh}.json", f"{fresh}.part"])


def test_a_chunk_cut_off_mid_way_is_not_counted(node):
    """If the connection drops in the middle of a chunk, is none of it recorded as received?"""
    import socket
    from urllib.parse import urlsplit

    uid = create(node, "Images/cut.wim", b"c" * 1000).json()["id"]
    host, port = urlsplit(node.url).hostname, urlsplit(node.url).port
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall((f"PATCH /dp/v1/uploads/{uid} HTTP/1.1\r\nHost: {host}\r\n"
                      f"Authorization: Bearer {KEY}\r\nUpload-Offset: 0\r\n"
                      "Content-Length: 1000\r\n\r\n").encode() + b"c" * 10)
        sock.shutdown(socket.SHUT_WR)
        sock.recv(4096)  # the node answers (or closes) once it sees the body end early
    assert node.call("GET", f"/uploads/{uid}").json()["received"] == 0
    sent = node.call("PATCH", f"/uploads/{uid}", data=b"c" * 1000, headers={"Upload-Offset": "0"})
    assert sent.json()["offset"] == 1000


def test_a_finish_whose_answer_was_lost_is_answered_again(node):
    """If the sender asks again after the node finished (its answer lost to a timeout), does it
    learn the file is in place instead of sending it all again?"""
    data = os.urandom(MB)
    first = node.upload("Images/done.wim", data)
    uid = create(node, "Images/done.wim", data).json()["id"]  # asked again: complete, same id
    again = create(node, "Images/done.wim", data).json()
    assert again["complete"] is True and again["offset"] == MB and again["mtime_ns"] == first["mtime_ns"]
    assert node.call("POST", f"/uploads/{uid}/finish").json() == first
    with open(node.file("Images/done.wim"), "wb") as fh:  # replaced since: no longer "done"
        fh.write(b"other")
    assert create(node, "Images/done.wim", data).status_code == 201


def test_a_chunk_after_finish_cannot_touch_the_placed_file(node):
    """Is a chunk that arrives once the upload is finished refused, leaving the file as checked?"""
    data = os.urandom(1000)
    uid = create(node, "Images/late.wim", data).json()["id"]
    node.call("PATCH", f"/uploads/{uid}", data=data, headers={"Upload-Offset": "0"})
    node.call("POST", f"/uploads/{uid}/finish")
    late = node.call("PATCH", f"/uploads/{uid}", data=b"X" * 10, headers={"Upload-Offset": "0"})
    assert late.status_code == 404
    with open(node.file("Images/late.wim"), "rb") as fh:
        assert fh.read() == data
