"""The DP node's delta protocol over real HTTP: a chunk plan, batches of the chunks the node
lacks, assembly in order, and what the node refuses (with a 4xx and a message, changing nothing).
"""
import hashlib
import os

import pytest

from portal.core.chunks import MAGIC, RECORD, index_bytes
from tests.dpnode.node_process import start_node, wait_up
from tests.images import change_in_place, image
from tests.processes import kill_hard

MB = 1024 * 1024
PATH = "Images/Win11.wim"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def start(node, data: bytes, packed: bytes | None = None):
    """Create the upload and send its index: (upload id, the node's plan answer)."""
    created = node.call("POST", "/uploads", json={"path": PATH, "size": len(data),
                                                   "sha256": sha(data)})
    assert created.status_code in (200, 201), created.text
    uid = created.json()["id"]
    planned = node.call("PUT", f"/uploads/{uid}/index",
                        data=packed if packed is not None else index_bytes(data).pack())
    return uid, planned


def body_of(data: bytes, index, need: set, first: int, last: int) -> bytes:
    offsets = index.offsets()
    return b"".join(data[offsets[k]:offsets[k] + index.lengths[k]]
                    for k in range(first, last) if k in need)


def needed(plan: dict) -> set:
    return {k for start, end in plan["need"] for k in range(start, end)}


def send_all(node, uid, data, plan, batch=8):
    """Send every batch of `batch` chunks from where assembly stands; the last answer."""
    index, need = index_bytes(data), needed(plan)
    answer = plan
    for first in range(plan["done"], len(index), batch):
        last = min(first + batch, len(index))
        sent = node.call("POST", f"/uploads/{uid}/chunks", params={"first": first, "last": last},
                         data=body_of(data, index, need, first, last))
        assert sent.status_code == 200, sent.text
        answer = sent.json()
    return answer


def place_old_version(node, data: bytes) -> None:
    """The node holds `data` at PATH, hashed and indexed by its own scan."""
    path = node.file(PATH)
    with open(path, "wb") as fh:
        fh.write(data)
    node.inventory()


def test_a_plan_names_only_the_chunks_the_node_lacks_and_the_file_lands_identical(node):
    old = image(4 * MB, seed=1)
    place_old_version(node, old)
    new = change_in_place(old, 2, 0.02)
    uid, planned = start(node, new)
    assert planned.status_code == 200, planned.text
    plan = planned.json()
    index = index_bytes(new)
    assert plan["chunks"] == len(index) and plan["done"] == 0
    lacking = sum(index.lengths[k] for k in needed(plan))
    assert 0 < lacking < 0.2 * len(new)
    assert plan["reused_bytes"] == len(new) - lacking
    assert send_all(node, uid, new, plan)["done"] == len(index)
    with open(node.file(PATH), "rb") as fh:
        assert fh.read() == old  # the old version is served until the rename
    finished = node.call("POST", f"/uploads/{uid}/finish")
    assert finished.status_code == 200, finished.text
    with open(node.file(PATH), "rb") as fh:
        assert fh.read() == new
    assert os.listdir(os.path.join(node.root, ".depot", "uploads")) == [f"{uid}.done"]


@pytest.mark.parametrize("packed, message", [
    (b"not an index", "format mark"),
    (MAGIC + b"\0" * 35, "cut short"),
    (MAGIC + RECORD.pack(0, b"\0" * 32), "chunks are 1 to"),
    (MAGIC + RECORD.pack(300 * 1024, b"\0" * 32), "chunks are 1 to"),
    (index_bytes(os.urandom(2 * MB)).pack(), "add up to"),
])
def test_an_index_that_does_not_describe_the_file_is_refused(node, packed, message):
    data = os.urandom(2 * MB + 1)
    uid, planned = start(node, data, packed)
    assert planned.status_code == 400
    assert planned.json()["error"]["code"] == "bad_index"
    assert message in planned.json()["error"]["message"]
    assert not os.path.exists(os.path.join(node.root, ".depot", "uploads", f"{uid}.plan"))
    sent = node.call("POST", f"/uploads/{uid}/chunks", params={"first": 0, "last": 1}, data=b"x")
    assert sent.status_code == 409  # no plan, no batches
    assert "send its index first" in sent.json()["error"]["message"]


def test_a_chunk_whose_bytes_do_not_match_is_refused_and_nothing_advances(node):
    data = image(2 * MB, seed=2)
    uid, planned = start(node, data)
    plan = planned.json()
    index = index_bytes(data)
    body = bytearray(body_of(data, index, needed(plan), 0, 4))
    body[-1] ^= 0xFF  # the last chunk of the batch is damaged on the way
    sent = node.call("POST", f"/uploads/{uid}/chunks", params={"first": 0, "last": 4},
                     data=bytes(body))
    assert sent.status_code == 422
    assert "chunk 3 arrived damaged" in sent.json()["error"]["message"]
    status = node.call("GET", f"/uploads/{uid}").json()
    assert status["offset"] == sum(index.lengths[:3])  # the good chunks before it stay
    later = node.call("POST", f"/uploads/{uid}/chunks", params={"first": 4, "last": 8},
                      data=body_of(data, index, needed(plan), 4, 8))
    assert later.status_code == 409  # a batch after a failed one does not wait: resend from 3
    assert later.json()["error"]["code"] == "out_of_turn"
    again = node.call("PUT", f"/uploads/{uid}/index", data=index.pack()).json()
    assert again["done"] == 3
    send_all(node, uid, data, again)
    assert node.call("POST", f"/uploads/{uid}/finish").status_code == 200
    with open(node.file(PATH), "rb") as fh:
        assert fh.read() == data


def test_a_reused_chunk_damaged_at_the_node_is_found_at_finish_and_sent(node):
    """Bit rot in the old version (same size and time, so the node's scan still vouches for it):
    do the batches take its chunks unchecked, does finish find the whole file's SHA-256 wrong,
    name the damaged chunk, go back to it and forget the file; and does the plan made again
    have central send it, the file then ending identical?"""
    from portal.dpnode import inventory

    old = image(4 * MB, seed=11)
    place_old_version(node, old)
    path = node.file(PATH)
    st = os.stat(path)
    with open(path, "r+b") as fh:  # flip bytes under an unchanged size and time
        fh.seek(2 * MB)
        fh.write(bytes(255 - b for b in old[2 * MB:2 * MB + 100]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    new = change_in_place(old, 1, 0.01)
    index = index_bytes(new)
    damaged = next(k for k, offset in enumerate(index.offsets())
                   if offset + index.lengths[k] > 2 * MB)
    uid, planned = start(node, new)
    plan = planned.json()
    assert damaged not in needed(plan)  # planned from the old version, as its scan indexed it
    send_all(node, uid, new, plan)
    finished = node.call("POST", f"/uploads/{uid}/finish")
    assert finished.status_code == 409, finished.text
    assert finished.json()["error"]["code"] == "chunk_unavailable"
    assert f"chunk {damaged} of {PATH} was taken from a file at this node that is damaged" in \
        finished.json()["error"]["message"]
    assert inventory.known_sha256(node.root, PATH, st.st_size, st.st_mtime_ns) is None
    again = node.call("PUT", f"/uploads/{uid}/index", data=index.pack()).json()
    assert again["done"] == damaged and damaged in needed(again)
    send_all(node, uid, new, again)
    finished = node.call("POST", f"/uploads/{uid}/finish")
    assert finished.status_code == 200, finished.text
    with open(path, "rb") as fh:
        assert fh.read() == new


def test_a_delta_whose_chunks_are_right_but_whole_file_is_not_is_discarded(node):
    """Every chunk matches the index, but the file is not the SHA-256 the upload was created
    for (a sender whose index and hash disagree): finish refuses with 422 and keeps nothing."""
    data = image(2 * MB, seed=12)
    created = node.call("POST", "/uploads", json={"path": PATH, "size": len(data),
                                                   "sha256": sha(data[::-1])})
    uid = created.json()["id"]
    plan = node.call("PUT", f"/uploads/{uid}/index", data=index_bytes(data).pack()).json()
    send_all(node, uid, data, plan)
    finished = node.call("POST", f"/uploads/{uid}/finish")
    assert finished.status_code == 422, finished.text
    assert "arrived damaged" in finished.json()["error"]["message"]
    assert not os.path.exists(node.file(PATH))


@pytest.mark.parametrize("params, body, status, text", [
    ({"first": 0, "last": 10_000}, b"", 409, "are not chunks of this upload"),
    ({"first": -1, "last": 2}, b"", 409, "are not chunks of this upload"),
    ({"first": 2, "last": 2}, b"", 409, "are not chunks of this upload"),
    ({"first": "x"}, b"", 400, "name the batch's chunks"),
    ({"first": 0, "last": 2}, b"short", 400, "the batch ended inside chunk 0"),
])
def test_batches_that_do_not_fit_the_plan_are_refused(node, params, body, status, text):
    data = image(2 * MB, seed=3)
    uid, planned = start(node, data)
    sent = node.call("POST", f"/uploads/{uid}/chunks", params=params, data=body)
    assert sent.status_code == status, sent.text
    assert text in sent.json()["error"]["message"]
    assert node.call("GET", f"/uploads/{uid}").json()["offset"] == 0


def test_a_planned_upload_takes_no_whole_file_chunks(node):
    data = image(2 * MB, seed=4)
    uid, _ = start(node, data)
    sent = node.call("PATCH", f"/uploads/{uid}", data=data[:MB], headers={"Upload-Offset": "0"})
    assert sent.status_code == 409
    assert "built from its chunk plan" in sent.json()["error"]["message"]


def test_a_batch_sent_again_after_its_answer_was_lost_changes_nothing(node):
    data = image(2 * MB, seed=5)
    uid, planned = start(node, data)
    plan, index = planned.json(), index_bytes(data)
    body = body_of(data, index, needed(plan), 0, 4)
    first = node.call("POST", f"/uploads/{uid}/chunks", params={"first": 0, "last": 4}, data=body)
    again = node.call("POST", f"/uploads/{uid}/chunks", params={"first": 0, "last": 4}, data=body)
    assert first.status_code == again.status_code == 200
    assert first.json()["done"] == again.json()["done"] == 4


def test_another_index_for_the_same_upload_starts_its_assembly_over(node):
    data = image(2 * MB, seed=6)
    uid, planned = start(node, data)
    send_all(node, uid, data, planned.json(), batch=4)
    index = index_bytes(data)
    other = index_bytes(data[:MB]).pack() + index.pack()[len(MAGIC):]  # same size, other cuts
    replanned = node.call("PUT", f"/uploads/{uid}/index", data=other)
    assert replanned.status_code == 400  # it does not add up to the file's size
    assert node.call("PUT", f"/uploads/{uid}/index", data=index.pack()).json()["done"] == \
        len(index)


@pytest.mark.slow
def test_a_node_killed_mid_delta_resumes_at_chunk_granularity(tmp_path):
    """kill -9 of the node process half-way through assembling a delta: after a restart, does the
    same plan resume where assembly stood, the file end identical, and nothing partial show?"""
    root = tmp_path / "root"
    root.mkdir()
    old = image(4 * MB, seed=7)
    (root / "Images").mkdir()
    (root / "Images" / "Win11.wim").write_bytes(old)
    new = change_in_place(old, 4, 0.10)
    index = index_bytes(new)
    proc = start_node(root, tmp_path / "node-1.log")
    try:
        node = wait_up(proc, tmp_path / "node-1.log", root)
        node.inventory()
        uid, planned = start(node, new)
        plan = planned.json()
        half = len(index) // 2
        sent = node.call("POST", f"/uploads/{uid}/chunks", params={"first": 0, "last": half},
                         data=body_of(new, index, needed(plan), 0, half))
        assert sent.status_code == 200, sent.text
    finally:
        kill_hard(proc)
    assert (root / "Images" / "Win11.wim").read_bytes() == old

    proc = start_node(root, tmp_path / "node-2.log")
    try:
        node = wait_up(proc, tmp_path / "node-2.log", root)
        again = node.call("PUT", f"/uploads/{uid}/index", data=index.pack()).json()
        assert again["done"] == half and needed(again) == {k for k in needed(plan) if k >= half}
        send_all(node, uid, new, again)
        finished = node.call("POST", f"/uploads/{uid}/finish")  # hashes the first half once
        assert finished.status_code == 200, finished.text
        assert (root / "Images" / "Win11.wim").read_bytes() == new
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_batches_that_arrive_out_of_order_are_taken_in_order(node):
    """A later batch answered before an earlier one arrives: is it held until its turn, and the
    file whole and right once the earlier one came?"""
    data = image(3 * MB, seed=9)
    uid, planned = start(node, data)
    plan, index = planned.json(), index_bytes(data)
    half = len(index) // 2
    second = node.call("POST", f"/uploads/{uid}/chunks", params={"first": half, "last": len(index)},
                       data=body_of(data, index, needed(plan), half, len(index)))
    assert second.status_code == 200, second.text
    assert second.json()["done"] == 0  # gathered and written, waiting for the chunks before it
    first = node.call("POST", f"/uploads/{uid}/chunks", params={"first": 0, "last": half},
                      data=body_of(data, index, needed(plan), 0, half))
    assert first.json()["done"] == len(index)  # the earlier batch took the later one in with it
    assert node.call("POST", f"/uploads/{uid}/finish").status_code == 200
    with open(node.file(PATH), "rb") as fh:
        assert fh.read() == data
