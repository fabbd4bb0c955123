"""Uploads into central's libraries from the console: the DP node's resumable protocol over the
real test client (sign-in, CSRF, roles), into central's content root."""
import hashlib
import os

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import AuditEvent, Job
from tests.factories import write_file

URL = "/libraries/images/uploads"
DATA = bytes(range(256)) * 40  # 10,240 bytes
SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def config_overrides():
    return {"DEPOT_UPLOAD_RESERVE_BYTES": 0, "DEPOT_UPLOAD_MAX_BYTES": 1024 * 1024,
            "DEPOT_UPLOAD_CHUNK_BYTES": 4096}


@pytest.fixture
def console(login_as):
    return login_as("admin")


def start(console, path="Win11.wim", size=len(DATA), sha256=SHA, url=URL):
    return console.client.post(url, json={"path": path, "size": size, "sha256": sha256},
                               headers={"X-CSRFToken": console.csrf})


def send(console, uid, offset, data, url=URL):
    return console.client.patch(f"{url}/{uid}", data=data, headers={
        "X-CSRFToken": console.csrf, "Upload-Offset": str(offset),
        "Content-Type": "application/offset+octet-stream"})


def finish(console, uid, url=URL):
    return console.client.post(f"{url}/{uid}/finish", headers={"X-CSRFToken": console.csrf})


def test_upload_resumes_from_its_offset(console, central):
    """Does an upload interrupted after a chunk resume from the offset the server gives, and land
    in the library with its SHA-256, a rescan of central queued and an audit entry?"""
    created = start(console)
    assert created.status_code == 201, created.get_json()
    uid = created.get_json()["id"]
    assert created.get_json()["chunk_bytes"] == 4096
    assert send(console, uid, 0, DATA[:4096]).get_json()["offset"] == 4096
    # the browser lost track (a closed lid): asking again gives the same upload and its offset
    again = start(console)
    assert again.status_code == 200
    assert (again.get_json()["id"], again.get_json()["offset"]) == (uid, 4096)
    assert console.get(f"{URL}/{uid}").get_json()["offset"] == 4096
    assert not os.path.exists(os.path.join(central.root, "Images", "Win11.wim"))
    assert send(console, uid, 4096, DATA[4096:8192]).status_code == 200
    assert send(console, uid, 8192, DATA[8192:]).get_json()["offset"] == len(DATA)
    done = finish(console, uid)
    assert done.status_code == 200, done.get_json()
    assert (done.get_json()["sha256"], done.get_json()["complete"]) == (SHA, True)
    with open(os.path.join(central.root, "Images", "Win11.wim"), "rb") as fh:
        assert fh.read() == DATA
    [job] = db.session.scalars(select(Job).where(Job.kind == "rescan", Job.dp_id == central.id))
    assert job.state == "queued"
    event = db.session.scalars(select(AuditEvent).where(
        AuditEvent.action == "content.upload")).one()
    assert event.target == "Images/Win11.wim"
    # the answer lost and asked for again: it is done, nothing to send
    assert finish(console, uid).get_json()["complete"] is True
    assert start(console).get_json()["complete"] is True


def test_a_chunk_at_the_wrong_offset_is_409(console):
    """Is a chunk that does not start where the upload stands refused with 409 and the offset?"""
    uid = start(console).get_json()["id"]
    send(console, uid, 0, DATA[:4096])
    wrong = send(console, uid, 8192, DATA[8192:])
    assert wrong.status_code == 409
    assert wrong.get_json()["error"]["offset"] == 4096
    assert "resume there" in wrong.get_json()["error"]["message"]
    assert console.get(f"{URL}/{uid}").get_json()["offset"] == 4096


def test_digest_mismatch_keeps_the_old_asset(console, central):
    """Does a file whose bytes do not match the declared SHA-256 leave the old asset in place,
    say so (422) and discard the upload?"""
    old = write_file(central.root, "Images/Win11.wim", b"the old image")
    uid = start(console).get_json()["id"]
    damaged = DATA[:-1] + b"!"
    for offset in range(0, len(DATA), 4096):
        assert send(console, uid, offset, damaged[offset:offset + 4096]).status_code == 200
    answer = finish(console, uid)
    assert answer.status_code == 422
    assert answer.get_json()["error"]["code"] == "digest_mismatch"
    assert "arrived damaged" in answer.get_json()["error"]["message"]
    with open(old, "rb") as fh:
        assert fh.read() == b"the old image"
    assert console.get(f"{URL}/{uid}").status_code == 404
    assert db.session.scalar(select(Job.id).where(Job.kind == "rescan")) is None


@pytest.mark.parametrize("path", ["../escape.wim", "/etc/passwd", "a/../../b", "a\0b", "",
                                  "C:/x.wim", ".hidden.wim", "x.tmp", "a//b"])
def test_paths_outside_the_library_are_refused(console, central, path):
    """Are traversal, absolute paths, NUL and names a rescan ignores refused before any file?"""
    answer = start(console, path=path)
    assert answer.status_code == 400, answer.get_json()
    assert answer.get_json()["error"]["code"] in ("bad_path", "nul_character")
    pending = os.path.join(central.root, ".depot", "uploads")
    assert not os.path.isdir(pending) or os.listdir(pending) == []


def test_a_folder_keeps_its_relative_paths(console, central):
    """Does a file of a folder upload land at its relative path inside the folder asset?"""
    rel = "Win11-Ref/drivers/net.inf"
    uid = start(console, path=rel, url="/libraries/reference-machines/uploads").get_json()["id"]
    send(console, uid, 0, DATA[:4096], url="/libraries/reference-machines/uploads")
    assert console.get(f"{URL}/{uid}").status_code == 404  # not an upload of Images
    for offset in range(4096, len(DATA), 4096):
        send(console, uid, offset, DATA[offset:offset + 4096],
             url="/libraries/reference-machines/uploads")
    assert finish(console, uid, url="/libraries/reference-machines/uploads").status_code == 200
    assert os.path.isfile(os.path.join(central.root, "Reference Machines", "Win11-Ref", "drivers",
                                       "net.inf"))


def test_size_cap_and_chunk_cap_are_413(console):
    """Is a file past DEPOT_UPLOAD_MAX_BYTES refused with 413 saying the limit, and a chunk past
    DEPOT_UPLOAD_CHUNK_BYTES too?"""
    big = start(console, size=2 * 1024 * 1024)
    assert big.status_code == 413
    assert "DEPOT_UPLOAD_MAX_BYTES" in big.get_json()["error"]["message"]
    large = DATA * 10
    uid = start(console, size=len(large), sha256=hashlib.sha256(large).hexdigest()).get_json()["id"]
    refused = send(console, uid, 0, large[:4096 + 65 * 1024])
    assert refused.status_code == 413
    assert refused.get_json()["error"]["code"] == "too_large"
    assert console.get(f"{URL}/{uid}").get_json()["offset"] == 0


def test_no_space_is_507(console, app):
    """Is an upload that would eat into the reserve of free space refused (507)?"""
    app.config["DEPOT_UPLOAD_RESERVE_BYTES"] = 1024 ** 5  # a petabyte: no disk keeps that free
    app.extensions.pop("depot_central_uploads", None)
    answer = start(console)
    assert answer.status_code == 507
    assert answer.get_json()["error"]["code"] == "insufficient_storage"


@pytest.mark.parametrize("role", ["viewer", "technician"])
def test_who_may_not_edit_content_gets_403(login_as, role, console):
    """Does a viewer or a technician get 403 from every upload route, and nothing is written?"""
    uid = start(console).get_json()["id"]
    other = login_as(role)
    assert start(other).status_code == 403
    assert other.get(f"{URL}/{uid}").status_code == 403
    assert send(other, uid, 0, DATA[:4096]).status_code == 403
    assert finish(other, uid).status_code == 403
    assert console.get(f"{URL}/{uid}").get_json()["offset"] == 0


def test_csrf_token_required(console):
    """Is an upload request without the CSRF token refused (400), chunks too?"""
    no_token = console.client.post(URL, json={"path": "a.wim", "size": 1, "sha256": SHA})
    assert no_token.status_code == 400
    assert no_token.get_json()["error"]["code"] == "csrf_failed"
    uid = start(console).get_json()["id"]
    chunk = console.client.patch(f"{URL}/{uid}", data=DATA[:4096],
                                 headers={"Upload-Offset": "0"})
    assert chunk.status_code == 400
    assert console.get(f"{URL}/{uid}").get_json()["offset"] == 0


def test_signed_out_is_refused(client):
    """Does someone signed out get nothing (no upload made)?"""
    answer = client.post(URL, json={"path": "a.wim", "size": 1, "sha256": SHA})
    assert answer.status_code in (302, 400, 401)


def test_the_library_page_offers_upload_only_to_who_may(login_as, console):
    """Does the Images page carry the upload panel (and its scripts) for an admin, and not for a
    technician or a viewer?"""
    page = console.get("/libraries/images").get_data(as_text=True)
    assert 'aria-labelledby="upload-title"' in page and "Upload to Central" in page
    assert f'data-upload-url="{URL}"' in page and "depot-upload.js" in page
    for role in ("technician", "viewer"):
        other = login_as(role).get("/libraries/images").get_data(as_text=True)
        assert "Upload to Central" not in other and "depot-upload.js" not in other
