"""Verify: corruption at a DP (or at central) is found, shown as `failed`, and repaired by a copy."""
import os

import pytest

from portal.core.errors import PermissionDenied
from portal.extensions import db
from portal.models import Notification
from portal.services import copies, verify
from portal.services import distribution_points as dps
from portal.services.actors import Actor
from tests.factories import make_user, write_file
from tests.helpers import fresh, status_at
from tests.node_fixtures import KEY


def corrupt(path: str) -> None:
    """Change a byte in place, keeping size and mtime: what a failing disk does."""
    st = os.stat(path)
    with open(path, "r+b") as fh:
        first = fh.read(1)
        fh.seek(0)
        fh.write(bytes([first[0] ^ 0xFF]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_corrupted_file_at_a_node_turns_failed_and_repair_fixes_it(central, admin, rescan, seattle,
                                                                   node, work):
    """Does verify flag a file whose bytes changed at the DP, and does a copy (Repair) fix it?"""
    data = os.urandom(100_000)
    write_file(central.root, "Images/Win11.wim", data)
    write_file(central.root, "Images/Other.wim", b"fine")
    rescan(central)
    copies.request_copies(admin, ["Images/Win11.wim", "Images/Other.wim"], [seattle.id])
    work()
    assert status_at(seattle, "Images/Win11.wim") == "current"
    corrupt(node.file("Images/Win11.wim"))

    rescan(seattle)  # a rescan trusts size and mtime: it cannot see this
    assert status_at(seattle, "Images/Win11.wim") == "current"
    job, _ = verify.request_verify(seattle, admin)
    work()
    done = fresh(job.id)
    assert done.state == "succeeded", done.error
    assert "2 file(s) verified at Seattle; 1 hash mismatch(es)" == done.summary
    [item] = [i for i in dps.content(seattle) if i["key"] == "Images/Win11.wim"]
    assert item["status"] == "failed"
    assert "hash mismatch at Seattle" in item["status_reason"]
    assert status_at(seattle, "Images/Other.wim") == "current"
    told = db.session.query(Notification).filter_by(kind="verify.failed").all()
    assert told and told[0].message == "hash mismatch at Seattle: Images/Win11.wim"

    [repair] = copies.request_copies(admin, ["Images/Win11.wim"], [seattle.id])
    work()
    assert fresh(repair.id).state == "succeeded", fresh(repair.id).error
    with open(node.file("Images/Win11.wim"), "rb") as fh:
        assert fh.read() == data
    assert status_at(seattle, "Images/Win11.wim") == "current"


def test_verify_of_central_finds_corruption_there_too(central, admin, rescan, work):
    """Does a verify of central find a file corrupted at central and mark it failed?"""
    write_file(central.root, "Media/tools.iso", b"tools" * 1000)
    rescan(central)
    corrupt(os.path.join(central.root, "Media/tools.iso"))
    job, _ = verify.request_verify(central, admin)
    work()
    assert "1 hash mismatch(es)" in fresh(job.id).summary
    assert status_at(central, "Media/tools.iso") == "failed"


def test_a_replaced_file_is_not_called_corrupt(central, admin, rescan, seattle, node, work):
    """Is a file changed with a new mtime left to rescans instead of flagged?"""
    write_file(node.root, "Images/hand.wim", b"v1")
    rescan(seattle)
    write_file(node.root, "Images/hand.wim", b"v2", mtime_ns=10**18)
    job, _ = verify.request_verify(seattle, admin)
    work()
    assert fresh(job.id).summary.endswith("all intact")


def test_viewers_cannot_verify(central, seattle):
    """Is a viewer's verify request refused?"""
    with pytest.raises(PermissionDenied):
        verify.request_verify(seattle, Actor(make_user("viewer"), via="console"))


def test_every_enabled_dp_is_verified_on_a_schedule(central, rescan, seattle, admin, work):
    """Does the weekly entry point queue a verify of central and each enabled DP, run by a worker?"""
    from rq.cron import CronScheduler

    from portal.extensions import get_queue, get_redis
    from portal.models import Job
    from portal.services import dp_management

    scheduler = CronScheduler(connection=get_redis())
    scheduler.load_config_from_file("portal.jobs.cron")
    [weekly] = [j for j in scheduler._cron_jobs
                if j.func_name == "portal.jobs.maintenance.verify_everything"]
    assert weekly.cron == "0 3 * * 0" and weekly.queue_name == "default"

    write_file(central.root, "Images/a.wim", b"a")
    rescan(central)
    down = dp_management.add_local(admin, "Spare", seattle.url, KEY, allow_plain_http=True)
    dp_management.update_dp(admin, down, {"disabled": True})
    work()
    get_queue("default").enqueue("portal.jobs.maintenance.verify_everything")
    work()
    verified = {j.dp_id: j for j in db.session.query(Job).filter_by(kind="verify")}
    assert set(verified) == {central.id, seattle.id}
    assert all(j.state == "succeeded" for j in verified.values())
