"""Copies from central to a real DP node on a loopback port, run by real RQ workers."""
import hashlib
import os

import pytest

from portal.core.errors import Conflict, DepotError, NotFound, PermissionDenied
from portal.extensions import db
from portal.models import DistributionPoint, Job
from portal.services import copies, dp_management, secrets
from portal.services import distribution_points as dps
from portal.services.actors import Actor
from tests.factories import make_user, write_file
from tests.helpers import fresh, status_at, wait_for
from tests.node_fixtures import KEY

MB = 1024 * 1024


def copy(admin, work, keys, dp):
    started = copies.request_copies(admin, keys, [dp.id])
    work()
    return [fresh(job.id) for job in started]


def test_copy_makes_a_file_asset_current(central, admin, rescan, seattle, node, work):
    """Does a copied image arrive byte-identical and turn `current` at the DP?"""
    data = os.urandom(3 * MB + 17)
    write_file(central.root, "Images/Win11-23H2.wim", data)
    rescan(central)
    assert status_at(seattle, "Images/Win11-23H2.wim") == "missing"
    [job] = copy(admin, work, ["Images/Win11-23H2.wim"], seattle)
    assert job.state == "succeeded", job.error
    assert job.bytes_done == job.bytes_total == len(data)
    assert "1 file(s) sent" in job.summary
    with open(node.file("Images/Win11-23H2.wim"), "rb") as fh:
        assert fh.read() == data
    assert status_at(seattle, "Images/Win11-23H2.wim") == "current"
    [again] = copy(admin, work, ["Images/Win11-23H2.wim"], seattle)
    assert "0 file(s) sent, 1 already there" in again.summary


def test_copy_of_a_folder_asset_sends_only_what_differs(central, admin, rescan, seattle, node, work):
    """Are identical files skipped, changed ones sent, and files central no longer has removed?"""
    write_file(central.root, "Platform Packs/Dell/drivers/a.inf", b"same")
    write_file(central.root, "Platform Packs/Dell/drivers/b.sys", b"new version")
    write_file(node.root, "Platform Packs/Dell/drivers/a.inf", b"same")
    write_file(node.root, "Platform Packs/Dell/drivers/b.sys", b"old version")
    write_file(node.root, "Platform Packs/Dell/drivers/stale.cat", b"gone at central")
    rescan(central)
    rescan(seattle)
    assert status_at(seattle, "Platform Packs/Dell") == "outdated"
    [job] = copy(admin, work, ["Platform Packs/Dell"], seattle)
    assert job.state == "succeeded", job.error
    assert "1 file(s) sent, 1 already there, 1 removed" in job.summary
    assert sorted(os.listdir(node.file("Platform Packs/Dell/drivers"))) == ["a.inf", "b.sys"]
    assert status_at(seattle, "Platform Packs/Dell") == "current"
    rescan(seattle)  # what the node itself says agrees
    assert status_at(seattle, "Platform Packs/Dell") == "current"


def test_a_second_request_finds_the_first(central, admin, rescan, seattle):
    """Is a copy of the same asset to the same DP, asked twice while queued, one job?"""
    write_file(central.root, "Images/a.wim", b"a")
    rescan(central)
    first = copies.request_copies(admin, ["Images/a.wim"], [seattle.id])
    second = copies.request_copies(admin, ["Images/a.wim", "Images/a.wim"], [seattle.id, seattle.id])
    assert [j.id for j in second] == [first[0].id]
    assert status_at(seattle, "Images/a.wim") == "copying"
    assert dps.status_counts([seattle.id])[seattle.id] == {"copying": 1}
    [asset] = dps.central_assets_with_status()
    assert asset["status_by_dp"][str(seattle.id)] == "copying"


def test_copy_resumes_from_the_nodes_offset(central, admin, rescan, seattle, node, work):
    """If an earlier attempt got half-way, does the copy send only the rest?"""
    data = os.urandom(4 * MB)
    write_file(central.root, "Images/big.wim", data)
    rescan(central)
    half = node.call("POST", "/uploads", json={
        "path": "Images/big.wim", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}).json()
    node.call("PATCH", f"/uploads/{half['id']}", data=data[:2 * MB], headers={"Upload-Offset": "0"})
    [job] = copy(admin, work, ["Images/big.wim"], seattle)
    assert job.state == "succeeded", job.error
    assert job.bytes_total == len(data)
    with open(node.file("Images/big.wim"), "rb") as fh:
        assert fh.read() == data


@pytest.mark.parametrize("keys, dp_ids, error, message", [
    ([], None, DepotError, "asset_keys must be"),
    ("Images/a.wim", None, DepotError, "asset_keys must be"),
    (["Images/a.wim"], [], DepotError, "dp_ids must be"),
    (["Images/a.wim"], ["1"], DepotError, "dp_ids must be"),
    (["Images/nope.wim"], None, NotFound, "Images/nope.wim is not at central"),
    (["Images/a.wim"], [999999], NotFound, "no distribution point 999999"),
])
def test_bad_copy_requests_are_refused(central, admin, rescan, seattle, keys, dp_ids, error, message):
    """Are bad lists, unknown assets and unknown DPs refused with a message, queueing nothing?"""
    write_file(central.root, "Images/a.wim", b"a")
    rescan(central)
    before = db.session.query(Job).count()
    with pytest.raises(error, match=message):
        copies.request_copies(admin, keys, dp_ids if dp_ids is not None else [seattle.id])
    assert db.session.query(Job).count() == before


def test_copies_to_central_or_a_disabled_dp_and_by_viewers_are_refused(central, admin, rescan,
                                                                      seattle):
    """Are copies to central, to a DP disabled for maintenance, and by a viewer refused?"""
    write_file(central.root, "Images/a.wim", b"a")
    rescan(central)
    with pytest.raises(DepotError, match="central is where copies come from"):
        copies.request_copies(admin, ["Images/a.wim"], [central.id])
    with pytest.raises(PermissionDenied):
        copies.request_copies(Actor(make_user("viewer"), via="console"), ["Images/a.wim"], [seattle.id])
    dp_management.update_dp(admin, seattle, {"disabled": True})
    with pytest.raises(Conflict, match="disabled for maintenance"):
        copies.request_copies(admin, ["Images/a.wim"], [seattle.id])



def test_copy_to_a_full_dp_fails_with_the_reason(full_disk, central, admin, rescan, seattle,
                                                 node, work):
    """Does a copy that would not fit fail at once, saying so, with nothing left at the DP?"""
    write_file(central.root, "Images/huge.wim", os.urandom(4 * MB))
    rescan(central)
    [job] = copy(admin, work, ["Images/huge.wim"], seattle)
    assert job.state == "failed"
    assert "not enough space for Images/huge.wim" in job.error
    assert not os.path.exists(node.file("Images/huge.wim"))
    [item] = [i for i in dps.content(seattle) if i["key"] == "Images/huge.wim"]
    assert item["status"] == "failed" and "not enough space" in item["status_reason"]
    assert os.listdir(os.path.join(node.root, ".depot", "uploads")) == []


def test_central_file_changed_since_its_scan_is_not_sent(central, admin, rescan, seattle, node, work):
    """Does a copy of a file changed at central since its scan fail, sending nothing?"""
    write_file(central.root, "Images/moving.wim", b"v1")
    rescan(central)
    write_file(central.root, "Images/moving.wim", b"version 2", mtime_ns=10**18)
    [job] = copy(admin, work, ["Images/moving.wim"], seattle)
    assert job.state == "failed"
    assert "changed at central since its last scan" in job.error
    assert not os.path.exists(node.file("Images/moving.wim"))


@pytest.fixture
def config_overrides():
    return {"DEPOT_JOB_RETRIES": 2, "DEPOT_RETRY_BASE_SECONDS": 1}


@pytest.mark.slow
def test_a_dp_that_does_not_answer_is_retried_then_fails(central, admin, rescan, app, start_worker,
                                                         refused_url):
    """Is a copy to a DP that is down tried again with growing waits, then failed with the reason?"""
    down = DistributionPoint(name="Down", kind="local", site="", url=refused_url,
                             secret=secrets.encrypt(KEY), status="online", allow_plain_http=True)
    db.session.add(down)
    db.session.commit()
    write_file(central.root, "Images/a.wim", b"a")
    rescan(central)
    [job] = copies.request_copies(admin, ["Images/a.wim"], [down.id])
    start_worker()
    wait_for(lambda: fresh(job.id).state == "failed", timeout=60, message="the copy to give up")
    failed = fresh(job.id)
    assert failed.retries == 2
    assert failed.error.startswith("gave up after 3 tries: Depot could not connect to 127.0.0.1:")
    assert failed.error.endswith("(connection refused)")
    assert sum("try " in w for w in failed.warnings) == 2


def test_delete_from_a_dp_removes_the_asset_there_only(central, admin, rescan, seattle, node, work,
                                                       api_as):
    """Does Delete from this DP remove the asset at the DP, keep central's, and show `missing`?"""
    write_file(central.root, "Images/old.wim", b"old")
    rescan(central)
    copy(admin, work, ["Images/old.wim"], seattle)
    api = api_as("admin")
    response = api.delete(f"/api/v1/distribution-points/{seattle.id}/assets?key=Images/old.wim")
    assert response.status_code == 202
    work()
    assert fresh(response.get_json()["job"]["id"]).state == "succeeded"
    assert not os.path.exists(node.file("Images/old.wim"))
    assert os.path.exists(os.path.join(central.root, "Images/old.wim"))
    assert status_at(seattle, "Images/old.wim") == "missing"


def test_deleting_from_central_needs_a_second_confirmation(central, admin, rescan, seattle, work,
                                                           api_as):
    """Is a delete at central refused until confirmed a second time, then done, leaving the DP's
    copy only-here?"""
    write_file(central.root, "Images/orig.wim", b"orig")
    rescan(central)
    copy(admin, work, ["Images/orig.wim"], seattle)
    api = api_as("admin")
    refused = api.delete(f"/api/v1/distribution-points/{central.id}/assets?key=Images/orig.wim")
    assert refused.status_code == 409
    assert "confirm it a second time" in refused.get_json()["error"]["message"]
    assert os.path.exists(os.path.join(central.root, "Images/orig.wim"))
    confirmed = api.delete(
        f"/api/v1/distribution-points/{central.id}/assets?key=Images/orig.wim&confirm=central")
    assert confirmed.status_code == 202
    work()
    assert not os.path.exists(os.path.join(central.root, "Images/orig.wim"))
    assert status_at(seattle, "Images/orig.wim") == "only-here"


def test_technicians_and_viewers_cannot_delete(central, rescan, seattle, api_as):
    """Are deletes by technicians and viewers a 403, and of an asset a DP lacks a 404?"""
    write_file(central.root, "Images/keep.wim", b"keep")
    rescan(central)
    for role in ("technician", "viewer"):
        response = api_as(role).delete(f"/api/v1/distribution-points/{central.id}/assets"
                                       "?key=Images/keep.wim&confirm=central")
        assert response.status_code == 403
    assert api_as("admin").delete(f"/api/v1/distribution-points/{seattle.id}/assets"
                                  "?key=Images/nope.wim").status_code == 404


@pytest.mark.slow
def test_a_node_that_takes_no_bytes_is_not_retried_for_ever(central, admin, rescan, seattle, node,
                                                            start_worker):
    """If a node answers but fails every chunk (a bad disk), does the copy give up after its tries,
    even though the node reports an offset from an earlier attempt?"""
    import hashlib

    data = os.urandom(2 * MB)
    write_file(central.root, "Images/bad-disk.wim", data)
    rescan(central)
    earlier = node.call("POST", "/uploads", json={
        "path": "Images/bad-disk.wim", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    node.call("PATCH", f"/uploads/{earlier.json()['id']}", data=data[:MB], headers={"Upload-Offset": "0"})
    inner = node.app.wsgi_app

    def failing_chunks(environ, start_response):  # whole-file chunks and delta batches alike
        if environ["REQUEST_METHOD"] == "PATCH" or environ["PATH_INFO"].endswith("/chunks"):
            start_response("503 Service Unavailable", [("Content-Type", "application/json")])
            return [b'{"error": {"code": "io_error", "message": "Input/output error"}}']
        return inner(environ, start_response)

    node.app.wsgi_app = failing_chunks
    [job] = copies.request_copies(admin, ["Images/bad-disk.wim"], [seattle.id])
    start_worker()
    wait_for(lambda: fresh(job.id).state == "failed", timeout=60, message="the copy to give up")
    assert fresh(job.id).error == "gave up after 3 tries: Seattle failed: Input/output error"


def test_a_copy_whose_finish_answer_was_lost_sends_nothing_again(central, admin, rescan, seattle,
                                                                 node, received, work):
    """If the node placed the file but central never heard back (a timeout, a crash), does the
    next run learn it is done instead of sending it all again?"""
    data = os.urandom(2 * MB)
    write_file(central.root, "Images/placed.wim", data)
    rescan(central)
    node.upload("Images/placed.wim", data)  # what the lost run did
    sent_before = received["bytes"]
    [job] = copy(admin, work, ["Images/placed.wim"], seattle)
    assert job.state == "succeeded", job.error
    assert received["bytes"] == sent_before
    assert status_at(seattle, "Images/placed.wim") == "current"


@pytest.mark.parametrize("at_dp, at_central", [
    ({"Platform Packs/Dell": b"a file once"}, {"Platform Packs/Dell/drivers/a.inf": b"now a folder"}),
    ({"Platform Packs/Dell/drivers/a.inf": b"a folder once"}, {"Platform Packs/Dell": b"now a file"}),
])
def test_an_asset_that_changed_shape_is_copied_over_the_old_one(central, admin, rescan, seattle,
                                                                node, work, at_dp, at_central):
    """When an asset was a file at the DP and is a folder at central (or the other way), does
    the copy replace it instead of failing?"""
    for rel, data in at_dp.items():
        write_file(node.root, rel, data)
    for rel, data in at_central.items():
        write_file(central.root, rel, data)
    rescan(central)
    rescan(seattle)
    [job] = copy(admin, work, ["Platform Packs/Dell"], seattle)
    assert job.state == "succeeded", job.error
    for rel, data in at_central.items():
        with open(node.file(rel), "rb") as fh:
            assert fh.read() == data
    assert status_at(seattle, "Platform Packs/Dell") == "current"
