"""The node's disk reserve holds with uploads under way (issue 13 item 7): each upload sets aside
what it has still to write, a create that would overrun the reserve is a 507, and finish, abort
and the sweep of abandoned uploads release what was set aside. The disk is a fake of fixed size
(free space that other processes on this machine cannot change under the test)."""
import hashlib
import json
import os
import shutil
import threading
import time
from collections import namedtuple

import pytest

from portal.dpnode.uploads import UploadStore

MB = 1024 * 1024
FREE = 3 * MB
Usage = namedtuple("Usage", "total used free")
CHUNK_AT_0 = {"Upload-Offset": "0"}


@pytest.fixture
def node_settings():
    return {"DEPOT_DP_RESERVE_BYTES": MB, "DEPOT_DP_UPLOAD_MAX_AGE": 3600}


@pytest.fixture
def fixed_disk(monkeypatch):
    """The node's disk, as the node sees it: 3 MiB free of 10 MiB, whatever is written."""
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10 * MB, 7 * MB, FREE))


def body(name: str, size: int) -> tuple[bytes, dict]:
    data = name.encode()[:1] * size
    return data, {"path": f"Images/{name}.wim", "size": size,
                  "sha256": hashlib.sha256(data).hexdigest()}


def create(node, name, size):
    return node.call("POST", "/uploads", json=body(name, size)[1])


def test_two_uploads_that_fit_alone_but_not_together(fixed_disk, node):
    """With 3 MiB free and 1 MiB kept in reserve, does a second 1.5 MiB upload get 507 while the
    first is under way, with a message saying what is set aside; is health's free space less what
    is set aside; and may the first upload still be asked for again (it resumes)?"""
    first = create(node, "a", 3 * MB // 2)
    assert first.status_code == 201
    second = create(node, "b", 3 * MB // 2)
    assert second.status_code == 507
    message = second.json()["error"]["message"]
    assert "not enough space for Images/b.wim" in message
    assert "1.5 MiB of it set aside for 1 upload(s) under way" in message
    assert "reserve of 1.0 MiB" in message
    uploads = os.path.join(node.root, ".depot", "uploads")
    assert os.path.exists(os.path.join(uploads, f"{first.json()['id']}.json"))
    assert len(os.listdir(uploads)) == 2  # the first upload's record and part, nothing more
    assert node.call("GET", "/health").json()["free_bytes"] == FREE - MB - 3 * MB // 2
    again = create(node, "a", 3 * MB // 2)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]


def test_concurrent_creates_cannot_both_take_the_space(fixed_disk, node):
    """Do two creates sent at the same moment, each fitting alone, give one 201 and one 507?"""
    start = threading.Barrier(2)
    answers = {}

    def send(name):
        start.wait(timeout=30)
        answers[name] = create(node, name, 3 * MB // 2).status_code

    threads = [threading.Thread(target=send, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(answers.values()) == [201, 507]


def test_what_is_written_is_no_longer_set_aside(fixed_disk, node):
    """Does an upload set aside only what it has still to write, so that another fits once
    enough of the first has arrived (the written bytes are on the disk, not in the ledger)?"""
    data, _ = body("a", 3 * MB // 2)
    uid = create(node, "a", len(data)).json()["id"]
    assert create(node, "b", 3 * MB // 2).status_code == 507
    written = node.call("PATCH", f"/uploads/{uid}", data=data[:MB], headers=CHUNK_AT_0)
    assert written.status_code == 200, written.text
    assert create(node, "b", 3 * MB // 2).status_code == 201


@pytest.mark.parametrize("how", ["finish", "abort", "sweep"])
def test_finish_abort_and_the_sweep_release_what_was_set_aside(fixed_disk, node, how):
    """Once the first upload is finished, aborted or swept as abandoned, does the second fit?"""
    data, _ = body("a", 3 * MB // 2)
    uid = create(node, "a", len(data)).json()["id"]
    assert create(node, "b", 3 * MB // 2).status_code == 507
    if how == "finish":
        sent = node.call("PATCH", f"/uploads/{uid}", data=data, headers=CHUNK_AT_0)
        assert sent.status_code == 200
        assert node.call("POST", f"/uploads/{uid}/finish").status_code == 200
    elif how == "abort":
        assert node.call("DELETE", f"/uploads/{uid}").status_code == 204
    else:
        uploads = os.path.join(node.root, ".depot", "uploads")
        meta = os.path.join(uploads, f"{uid}.json")
        with open(meta) as fh:
            record = json.load(fh)
        record["updated_at"] = time.time() - 7200
        with open(meta, "w") as fh:
            json.dump(record, fh)
        for name in (f"{uid}.json", f"{uid}.part"):
            os.utime(os.path.join(uploads, name), (time.time() - 7200,) * 2)
    assert create(node, "b", 3 * MB // 2).status_code == 201


def test_the_ledger_is_shared_between_workers(fixed_disk, tmp_path):
    """Do two stores on one root (two gunicorn workers) see each other's set-aside space?"""
    one, two = UploadStore(str(tmp_path), MB), UploadStore(str(tmp_path), MB)
    _, meta = body("a", 3 * MB // 2)
    one.create(meta["path"], meta["size"], meta["sha256"])
    _, other = body("b", 3 * MB // 2)
    with pytest.raises(Exception, match="set aside for 1 upload") as refused:
        two.create(other["path"], other["size"], other["sha256"])
    assert refused.value.status == 507
    assert two.set_aside() == (3 * MB // 2, 1)
