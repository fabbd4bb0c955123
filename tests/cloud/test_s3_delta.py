"""Delta copies to an S3 DP on moto's server: an update of the version the bucket holds becomes a
multipart upload whose unchanged runs are UploadPartCopy parts of the object already there, and
only the rest crosses the network; what goes wrong on the way (the object replaced, a copy
refused, copied bytes that are not central's, a killed worker, a stale resume record) ends
with the right object all the same. The plan itself is tested in tests/unit/test_s3_plan.py."""
import hashlib
import json

import pytest
from sqlalchemy import select

from portal.core.chunks import index_bytes
from portal.extensions import db
from portal.models import UploadSession
from portal.services import copies, dp_management, job_recovery, secrets
from portal.services.backends import open_storage
from portal.services.deltas import sent_words
from portal.storage.base import Base, Source, UploadState
from tests.cloud.s3_fixtures import BUCKET
from tests.helpers import copy_one, fresh, status_at, wait_for
from tests.images import IMAGE, append_with_header, change_in_place, image, shift, update

MiB = 1024 * 1024
PART = 8 * MiB
SIZE = 48 * MiB
KEY = "depot/hq/" + IMAGE


@pytest.fixture
def config_overrides():
    return {"DEPOT_S3_PART_SIZE": PART, "DEPOT_S3_PARALLEL": 3, "DEPOT_COPY_STREAMS": 3,
            "DEPOT_RETRY_BASE_SECONDS": 1}


@pytest.fixture
def worker_env(worker_env, app):
    """`rq worker` processes get this test's S3 settings too."""
    for name in ("DEPOT_S3_PART_SIZE", "DEPOT_S3_PARALLEL", "DEPOT_COPY_STREAMS"):
        worker_env[name] = str(app.config[name])
    return worker_env


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def at_s3(s3_client) -> bytes:
    with s3_client.get_object(Bucket=BUCKET, Key=KEY)["Body"] as stream:
        return stream.read()


def open_uploads(s3_client) -> list:
    return s3_client.list_multipart_uploads(Bucket=BUCKET).get("Uploads") or []


@pytest.fixture
def held(central, admin, rescan, s3, s3_dp, work):
    """held(data): central's image copied to the S3 DP (a whole upload), the requests forgotten."""
    def _held(data: bytes) -> None:
        update(central, rescan, IMAGE, data)
        first = copy_one(admin, work, IMAGE, s3_dp)
        assert first.state == "succeeded", first.error
        assert not s3.copies  # nothing to copy from the first time
        s3.forget_requests()
    return _held


@pytest.mark.parametrize("edit, most", [
    (lambda d: change_in_place(d, 2, 0.01), 0.30),
    (shift, 0.30),
    (append_with_header, 0.20),
    (lambda d: d[:len(d) // 2], 0.02),  # the old object larger than the new file
], ids=["in-place", "shift", "append", "shorter"])
def test_an_update_uploads_only_what_the_object_lacks(central, admin, rescan, s3, s3_dp, s3_client,
                                                      work, held, edit, most):
    """After the first copy, does each kind of update end byte-identical in the bucket, with its
    SHA-256 metadata and full-object checksum, while only a small share is uploaded (the rest
    copied at S3), and do the job's counts and words say so?"""
    old = image(SIZE, seed=1)
    held(old)
    new = edit(old)
    update(central, rescan, IMAGE, new)
    assert status_at(s3_dp, IMAGE) == "outdated"
    job = copy_one(admin, work, IMAGE, s3_dp)
    assert job.state == "succeeded", job.error
    assert at_s3(s3_client) == new
    head = s3_client.head_object(Bucket=BUCKET, Key=KEY, ChecksumMode="ENABLED")
    assert head["Metadata"] == {"sha256": sha(new)} and head["ChecksumType"] == "FULL_OBJECT"
    assert s3.copies and s3.calls[("POST", "uploads")] == 1
    assert s3.received <= most * len(new), f"{s3.received} bytes uploaded for {len(new)}"
    assert job.bytes_sent == s3.received
    assert job.bytes_done == job.bytes_total == len(new)
    assert sent_words(len(new), s3.received, len(new) - s3.received) in job.summary
    assert status_at(s3_dp, IMAGE) == "current"
    assert db.session.scalar(select(UploadSession.id)) is None and not open_uploads(s3_client)


def test_a_small_update_that_leaves_no_5_mib_run_goes_whole(central, admin, rescan, s3, s3_dp,
                                                           s3_client, work, held):
    """Changes every few MiB leave nothing S3 can copy (parts are 5 MiB at least): is the file
    uploaded whole, as before delta copies, and does the job say nothing was reused?"""
    old = image(12 * MiB, seed=2)
    held(old)
    new = change_in_place(old, 4, 0.02)
    update(central, rescan, IMAGE, new)
    job = copy_one(admin, work, IMAGE, s3_dp)
    assert job.state == "succeeded", job.error
    assert at_s3(s3_client) == new
    assert not s3.copies and s3.received == len(new)
    assert "0 B reused" in job.summary


def test_an_object_replaced_at_the_dp_before_its_parts_are_copied(central, admin, rescan, s3,
                                                                  s3_dp, s3_client, work, held):
    """Someone replaces the object between the plan and its first copy: the copy (made only if
    the object is still the one planned from) is refused, and the file goes whole at once, the
    delta's upload aborted."""
    old = image(SIZE, seed=3)
    held(old)
    new = change_in_place(old, 2, 0.01)
    update(central, rescan, IMAGE, new)

    def replace():
        client = s3.client()
        client.put_object(Bucket=BUCKET, Key=KEY, Body=b"someone else's", Metadata={})
        client.close()
    s3.before_next_copy(replace)
    job = copy_one(admin, work, IMAGE, s3_dp)
    assert job.state == "succeeded", job.error
    assert at_s3(s3_client) == new
    assert any("PreconditionFailed" in w and "sent whole" in w for w in job.warnings), \
        job.warnings
    assert s3.received >= len(new) and s3.calls[("POST", "uploads")] == 2
    assert not open_uploads(s3_client)
    assert "0 B reused" in job.summary


def test_a_copy_part_the_server_refuses_sends_the_file_whole(central, admin, rescan, s3, s3_dp,
                                                            s3_client, work, held):
    """A server (or a key) that refuses UploadPartCopy: does the copy plan again without copies
    and end identical?"""
    old = image(SIZE, seed=4)
    held(old)
    new = append_with_header(old)
    update(central, rescan, IMAGE, new)
    s3.refuse_next_copy("403 Forbidden", "AccessDenied")
    job = copy_one(admin, work, IMAGE, s3_dp)
    assert job.state == "succeeded", job.error
    assert at_s3(s3_client) == new
    assert any("refused to copy part" in w for w in job.warnings), job.warnings
    assert len(s3.copies) == 1  # the refused one; none after
    assert not open_uploads(s3_client)


@pytest.mark.parametrize("server, why", [
    ("checks-parts", "refused the parts of the delta (InvalidPart)"),
    ("checks-nothing", "another CRC64NVME checksum"),
    ("no-checksums", "is not central's bytes (MD5)"),
])
def test_copied_bytes_that_are_not_centrals_never_stay(central, admin, rescan, s3, s3_dp,
                                                       s3_client, work, server, why):
    """The object says it is the old version (its SHA-256 metadata) but bytes in it differ (one
    every 4 MiB): copies from it bring the wrong bytes. With the copies' CRC64NVME computed from
    central, the server refuses the parts at Complete (real S3), or the object's checksum
    differs after it (a server that does not check them: moto); a server without checksums has
    the copied parts' MD5 ETags compared with central's bytes. Each time the copy plans again
    and sends the file whole, and the object ends identical."""
    s3.checks_complete = server == "checks-parts"
    s3.checksums = "refuse" if server == "no-checksums" else "take"
    old = image(SIZE, seed=5)
    update(central, rescan, IMAGE, old)
    damaged = bytearray(old)
    for offset in range(MiB, SIZE, 4 * MiB):
        damaged[offset] ^= 1
    s3_client.put_object(Bucket=BUCKET, Key=KEY, Body=bytes(damaged),
                         Metadata={"sha256": sha(old)})
    rescan(s3_dp)  # takes the SHA-256 from the metadata: "current"
    assert status_at(s3_dp, IMAGE) == "current"
    new = change_in_place(old, 2, 0.01)
    update(central, rescan, IMAGE, new)
    s3.forget_requests()
    job = copy_one(admin, work, IMAGE, s3_dp)
    assert job.state == "succeeded", job.error
    assert at_s3(s3_client) == new
    assert s3.copies and s3.calls[("POST", "uploads")] == 2 * (2 if server == "no-checksums" else 1)
    assert any(why in w and "sent whole" in w for w in job.warnings), job.warnings
    assert not open_uploads(s3_client)


def test_a_server_without_checksums_gets_deltas_checked_by_md5(central, admin, rescan, s3, s3_dp,
                                                              s3_client, work, held):
    """A server that knows no CRC64NVME: is the update still a delta, its copied parts checked
    against central's bytes through their ETags, and right?"""
    s3.checksums = "ignore"
    old = image(SIZE, seed=8)
    held(old)
    new = shift(old)
    update(central, rescan, IMAGE, new)
    job = copy_one(admin, work, IMAGE, s3_dp)
    assert job.state == "succeeded", job.error
    assert at_s3(s3_client) == new and not job.warnings
    assert s3.copies and s3.received < 0.3 * len(new)


def saved_record(dp) -> dict:
    db.session.expire_all()
    row = db.session.scalar(select(UploadSession).where(UploadSession.dp_id == dp.id))
    return json.loads(secrets.decrypt(row.data))


@pytest.mark.slow
def test_a_delta_whose_worker_is_killed_resumes_the_same_parts(central, admin, rescan, s3, s3_dp,
                                                               s3_client, held, start_worker):
    """kill -9 of a real `rq worker` half way through a delta: does the recovered copy take up
    the same multipart upload and plan through ListParts (no new upload, no part sent twice but
    the ones in flight), and end identical?"""
    old = image(SIZE, seed=6)
    held(old)
    new = change_in_place(old, 3, 0.01)
    update(central, rescan, IMAGE, new)
    dp_management.update_dp(admin, s3_dp, {"bandwidth_limit": 2 * MiB})
    [job] = copies.request_copies(admin, [IMAGE], [s3_dp.id])
    worker = start_worker()
    wait_for(lambda: (fresh(job.id).bytes_sent or 0) >= 5 * MiB, timeout=60,
             message="the delta to upload its first part")
    worker.kill()
    record = saved_record(s3_dp)
    planned = record["plan"]["parts"]
    to_upload = sum(length for length, source in planned if source is None)
    assert any(source is not None for _, source in planned) and to_upload < 0.4 * SIZE
    assert at_s3(s3_client) == old  # the old version stays until Complete
    dp_management.update_dp(admin, s3_dp, {"bandwidth_limit": None})
    wait_for(lambda: job_recovery.recover_lost_jobs().get(job.id) == "requeued", timeout=30,
             message="recovery to notice the dead worker")
    start_worker()
    wait_for(lambda: fresh(job.id).state in ("succeeded", "failed"), timeout=90,
             message="the resumed delta to finish")
    done = fresh(job.id)
    assert done.state == "succeeded", done.error
    assert at_s3(s3_client) == new
    assert s3.calls[("POST", "uploads")] == 1  # the one upload, taken up again
    assert len(s3.parts) + len(s3.copies) <= len(planned) + 3  # at most those in flight again
    assert s3.received < to_upload + 3 * PART
    assert not open_uploads(s3_client)


# --- the upload itself: plans kept in the resume record -------------------------------------------

def delta_source(new: bytes, old: bytes) -> Source:
    return Source(IMAGE, len(new), sha(new), {}, lambda offset, length: new[offset:offset + length],
                  index=index_bytes(new), base=Base(sha(old), len(old), index_bytes(old)))


def send_pieces(upload, pieces) -> int:
    sent = sum(upload.send_range(offset, length, lambda n: None) for offset, length in pieces)
    upload.checkpoint()
    return sent


@pytest.fixture
def old_object(s3_client):
    """An old version in the bucket, as a copy leaves it: its bytes, with their SHA-256."""
    old = image(24 * MiB, seed=7)
    s3_client.put_object(Bucket=BUCKET, Key=KEY, Body=old, Metadata={"sha256": sha(old)})
    return old


def test_a_saved_plan_is_resumed_with_its_parts_in_another_process(app, s3, s3_dp, s3_client,
                                                                   old_object):
    """Half the pieces sent, then a new backend with only the record: are the same layout and
    the parts done taken up (ListParts), only the rest sent, the result right?"""
    new = change_in_place(old_object, 1, 0.01)
    src, state = delta_source(new, old_object), UploadState()
    first = open_storage(s3_dp).upload(src, state)
    assert first.plan is not None and first.reads_itself and state.data["plan"]
    assert first.reused == sum(p.length for p in first.plan.parts if p.source is not None)
    pieces = list(first.pieces(first.chunk_size))
    send_pieces(first, pieces[:2])
    s3.forget_requests()
    again = open_storage(s3_dp).upload(src, UploadState(dict(state.data)))
    assert again.plan == first.plan and again.upload_id == first.upload_id
    assert list(again.pieces(again.chunk_size)) == pieces[2:]
    send_pieces(again, pieces[2:])
    result = again.finish()
    assert result["sha256"] == src.sha256 and at_s3(s3_client) == new
    assert s3.calls[("POST", "uploads")] == 0


def test_a_saved_plan_whose_object_was_replaced_starts_afresh(app, s3, s3_dp, s3_client,
                                                              old_object):
    """The object planned from was replaced since: is the saved upload aborted and the file sent
    whole (nothing to copy from)?"""
    new = change_in_place(old_object, 1, 0.01)
    src, state = delta_source(new, old_object), UploadState()
    first = open_storage(s3_dp).upload(src, state)
    s3_client.put_object(Bucket=BUCKET, Key=KEY, Body=b"other")
    again = open_storage(s3_dp).upload(src, UploadState(dict(state.data)))
    assert again.plan is None and again.upload_id != first.upload_id
    assert [u["UploadId"] for u in open_uploads(s3_client)] == [again.upload_id]
    assert again.missing() == [(0, len(new))]


def test_a_record_without_a_plan_resumes_as_a_plain_upload(app, s3, s3_dp, s3_client, old_object):
    """An upload saved before delta copies (or after one planned again without copies): is it
    taken up as it was, though a plan could be made now?"""
    new = change_in_place(old_object, 1, 0.01)
    plain = Source(IMAGE, len(new), sha(new), {}, lambda offset, length: new[offset:offset + length])
    state = UploadState()
    first = open_storage(s3_dp).upload(plain, state)
    first.send(0, new[:PART])
    first.checkpoint()
    again = open_storage(s3_dp).upload(delta_source(new, old_object), UploadState(dict(state.data)))
    assert again.plan is None and again.upload_id == first.upload_id
    assert again.missing() == [(PART, len(new))]


@pytest.mark.parametrize("broken", [
    lambda plan: {**plan, "parts": plan["parts"][1:]},  # does not add up to the file
    lambda plan: {**plan, "etag": ""},
    lambda plan: "not a plan",
], ids=["parts", "etag", "shape"])
def test_a_broken_plan_in_the_record_starts_afresh(app, s3, s3_dp, s3_client, old_object, broken):
    """A record whose plan does not describe this file: is its upload aborted and a new one
    planned?"""
    new = change_in_place(old_object, 1, 0.01)
    src, state = delta_source(new, old_object), UploadState()
    first = open_storage(s3_dp).upload(src, state)
    record = {**state.data, "plan": broken(state.data["plan"])}
    again = open_storage(s3_dp).upload(src, UploadState(record))
    assert again.upload_id != first.upload_id and again.plan == first.plan
    assert [u["UploadId"] for u in open_uploads(s3_client)] == [again.upload_id]


def test_without_a_base_or_indexes_the_upload_is_as_before(app, s3, s3_dp, old_object):
    """No index (a small file), no base (nothing known at the DP), a base whose index central
    lacks, or an object that is not the base: plain uploads in parts of the part size."""
    new = change_in_place(old_object, 1, 0.01)
    full = delta_source(new, old_object)
    for src in (Source(IMAGE, len(new), sha(new), {}, full.read, index=full.index),
                Source(IMAGE, len(new), sha(new), {}, full.read, base=full.base),
                Source(IMAGE, len(new), sha(new), {}, full.read, index=full.index,
                       base=Base(full.base.sha256, full.base.size)),
                Source(IMAGE, len(new), sha(new), {}, full.read, index=full.index,
                       base=Base("0" * 64, full.base.size, full.base.index))):
        upload = open_storage(s3_dp).upload(src, UploadState())
        assert upload.plan is None and not upload.reads_itself and upload.reused == 0
        assert upload.layout[0] == (0, PART)
        upload.abort()
