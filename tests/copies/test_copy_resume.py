"""Copies that are interrupted: a worker killed with SIGKILL half-way, and a cancel."""
import os

import pytest

from portal.services import copies, dp_management, job_recovery, jobs
from portal.services import distribution_points as dps
from tests.factories import write_file
from tests.helpers import fresh, wait_for

pytestmark = pytest.mark.slow
MB = 1024 * 1024
SIZE = 6 * MB


@pytest.fixture
def config_overrides():
    return {"DEPOT_COPY_CHUNK": 256 * 1024, "DEPOT_RETRY_BASE_SECONDS": 1}


@pytest.fixture
def slow_copy(central, admin, rescan, seattle):
    """A 6 MiB image at central and a DP that takes copies at 1 MiB/s: (dp, data)."""
    data = os.urandom(SIZE)
    write_file(central.root, "Images/Win11.wim", data)
    rescan(central)
    dp_management.update_dp(admin, seattle, {"bandwidth_limit": 1 * MB})
    return seattle, data


def test_copy_whose_worker_is_killed_resumes_and_ends_identical(slow_copy, admin, node, received,
                                                               start_worker):
    """After SIGKILL half-way, is the copy recovered, continued from the node's offset, and intact?"""
    dp, data = slow_copy
    [job] = copies.request_copies(admin, ["Images/Win11.wim"], [dp.id])
    worker = start_worker()
    wait_for(lambda: (fresh(job.id).bytes_done or 0) >= 2 * MB, timeout=60,
             message="the copy to get a third of the way")
    worker.kill()
    sent_before = received["bytes"]
    assert not os.path.exists(node.file("Images/Win11.wim"))  # never a partial under its name
    kinds = {os.path.splitext(name)[1] for name in os.listdir(os.path.join(node.root, ".depot",
                                                                          "uploads"))}
    assert {".part", ".json"} <= kinds  # the partial upload and its record (and its chunk plan)
    dp_management.update_dp(admin, dp, {"bandwidth_limit": None})  # the rest need not be slow

    wait_for(lambda: job_recovery.recover_lost_jobs().get(job.id) == "requeued", timeout=30,
             message="recovery to notice the dead worker")
    start_worker()
    wait_for(lambda: fresh(job.id).state in ("succeeded", "failed"), timeout=60,
             message="the resumed copy to finish")
    done = fresh(job.id)
    assert done.state == "succeeded", done.error
    with open(node.file("Images/Win11.wim"), "rb") as fh:
        assert fh.read() == data
    assert any("worker stopped answering" in w for w in done.warnings)
    # The second attempt sent what was missing, not the whole file again.
    assert received["bytes"] - sent_before < SIZE - 1 * MB
    assert dps.content(dp, "Images")[0]["status"] == "current"


def test_a_delta_whose_worker_is_killed_resumes_where_assembly_stands(
        central, rescan, slow_copy, admin, node, received, start_worker):
    """An update of an image the node holds, its worker killed half-way through sending what
    changed: does it resume at chunk granularity, send only the rest, and end identical while the
    old version stays served until the rename?"""
    dp, old = slow_copy
    write_file(node.root, "Images/Win11.wim", old)  # the node holds last month's image
    rescan(dp)
    new = old[:2 * MB] + os.urandom(3 * MB) + old[5 * MB:]
    write_file(central.root, "Images/Win11.wim", new)
    rescan(central)
    [job] = copies.request_copies(admin, ["Images/Win11.wim"], [dp.id])
    worker = start_worker()
    wait_for(lambda: (fresh(job.id).bytes_sent or 0) >= 1 * MB, timeout=60,
             message="the copy to send a third of what changed")
    worker.kill()
    with open(node.file("Images/Win11.wim"), "rb") as fh:
        assert fh.read() == old  # still last month's, whole
    sent_before = received["bytes"]
    dp_management.update_dp(admin, dp, {"bandwidth_limit": None})
    wait_for(lambda: job_recovery.recover_lost_jobs().get(job.id) == "requeued", timeout=30,
             message="recovery to notice the dead worker")
    start_worker()
    wait_for(lambda: fresh(job.id).state in ("succeeded", "failed"), timeout=60,
             message="the resumed copy to finish")
    done = fresh(job.id)
    assert done.state == "succeeded", done.error
    with open(node.file("Images/Win11.wim"), "rb") as fh:
        assert fh.read() == new
    assert received["bytes"] - sent_before < 3 * MB - 512 * 1024  # the rest, not all again
    assert received["bytes"] <= 3 * MB + 1 * MB


def test_cancel_stops_a_copy_and_aborts_its_upload(slow_copy, admin, node, start_worker):
    """Does cancelling a running copy stop it within seconds and leave nothing at the node?"""
    dp, _ = slow_copy
    [job] = copies.request_copies(admin, ["Images/Win11.wim"], [dp.id])
    start_worker()
    wait_for(lambda: (fresh(job.id).bytes_done or 0) > 0, timeout=60, message="the copy to start")
    jobs.cancel_job(job.id, admin)
    wait_for(lambda: fresh(job.id).state == "cancelled", timeout=60, message="the copy to stop")
    assert not os.path.exists(node.file("Images/Win11.wim"))
    wait_for(lambda: os.listdir(os.path.join(node.root, ".depot", "uploads")) == [], timeout=60,
             message="the upload to be aborted")


def test_a_node_that_drops_mid_copy_is_retried_and_the_copy_resumes(slow_copy, admin, node,
                                                                    received, start_worker):
    """When the DP node goes away half-way (the WAN drops) and comes back, does the copy retry,
    continue from the node's offset, and end identical?"""
    dp, data = slow_copy
    [job] = copies.request_copies(admin, ["Images/Win11.wim"], [dp.id])
    start_worker()
    wait_for(lambda: (fresh(job.id).bytes_done or 0) >= 2 * MB, timeout=60,
             message="the copy to get a third of the way")
    node.stop()
    wait_for(lambda: fresh(job.id).retries >= 1, timeout=30, message="the copy to retry")
    assert fresh(job.id).state in ("queued", "running")
    sent_before = received["bytes"]
    dp_management.update_dp(admin, dp, {"bandwidth_limit": None})  # the rest need not be slow
    node.start()
    wait_for(lambda: fresh(job.id).state in ("succeeded", "failed"), timeout=90,
             message="the copy to finish once the node is back")
    done = fresh(job.id)
    assert done.state == "succeeded", done.error
    assert any("Depot could not connect to" in w or "did not answer" in w for w in done.warnings)
    with open(node.file("Images/Win11.wim"), "rb") as fh:
        assert fh.read() == data
    assert received["bytes"] - sent_before < SIZE - 1 * MB
