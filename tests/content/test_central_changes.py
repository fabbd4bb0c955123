"""Central noticing changes under its root by itself: the watchdog watcher (real observer, real
RQ worker) and the stat-only check `rq cron` runs as the safety net."""
import os
import threading
import time

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import Asset, Job
from portal.services import central_changes
from portal.services import distribution_points as dps
from tests.factories import write_file

DEADLINE = 45  # seconds: a loaded CI machine may be slow to deliver events


def asset(dp_id, key):
    db.session.expire_all()
    return db.session.scalars(select(Asset).where(Asset.dp_id == dp_id, Asset.key == key)).first()


def scanned(central, admin, work):
    """Rescan central on the in-process worker (the state before a change)."""
    dps.request_rescan(central, admin)
    work()


def test_watcher_rescans_central_after_a_change(app, central, work):
    """Does a file written under central's root become an asset without anyone asking, through
    the real observer, a queued rescan and a real RQ worker?"""
    stop = threading.Event()

    def run():
        with app.app_context():
            central_changes.watch(central.root, 0.5, stop.is_set, tick=0.1)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + DEADLINE
        found, written = None, 0.0
        while found is None and time.monotonic() < deadline:
            # written again now and then: the observer's thread may not have its watches yet
            if time.monotonic() - written > 5:
                write_file(central.root, "Images/Dropped.wim", b"D" * 4096)
                written = time.monotonic()
            work()
            found = asset(central.id, "Images/Dropped.wim")
            if found is None:
                time.sleep(0.2)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert found is not None, "the watcher did not rescan central"
    assert found.size == 4096 and found.digest
    states = {(job.state, job.requested_by_id)
              for job in db.session.scalars(select(Job).where(Job.kind == "rescan"))}
    assert ("succeeded", None) in states  # the system's own rescan, nobody asked


def test_watcher_waits_for_quiet_and_ignores_its_own_state(tmp_path):
    """Is a file still being written not scanned before its folder is quiet, and are events
    outside the library folders (.depot/, where uploads are written) ignored?"""
    calls = []
    watcher = central_changes.Watcher(str(tmp_path), lambda changed: calls.append(changed) or True,
                                      quiet_seconds=3600)
    watcher.saw(os.path.join(tmp_path, ".depot", "uploads", "x.part"))
    watcher.saw(os.path.join(tmp_path, "Elsewhere", "x"))
    assert watcher.changed == set()
    watcher.saw(os.path.join(tmp_path, "Images", "big.wim"))
    assert watcher.pump() is False and calls == []  # still being written, as far as it knows
    watcher.quiet = 0
    assert watcher.pump() is True
    assert calls == [{"Images"}]
    assert watcher.pump() is False  # taken: nothing more to do


def test_a_running_rescan_is_asked_again_later(central, admin):
    """While a rescan runs (it may have listed the files already), is the change kept for
    later instead of being folded into it; and a queued one is reused?"""
    job, _ = dps.request_rescan(central, admin)
    assert central_changes.rescan_central().id == job.id  # still queued: it will see the change
    job.state = "running"
    db.session.commit()
    assert central_changes.rescan_central() is None
    taken = []
    watcher = central_changes.Watcher(central.root, lambda changed: taken.append(
        central_changes.rescan_central()) or taken[-1] is not None, quiet_seconds=0)
    watcher.saw(os.path.join(central.root, "Media", "x.iso"))
    assert watcher.pump() is False
    assert watcher.changed == {"Media"}  # kept, to be taken after the running rescan


def test_stat_only_check_rescans_only_on_change(central, admin, work):
    """Does the periodic check leave central alone when nothing changed, and rescan it when a
    file's size or time changed, a file appeared or one went; the rescan hashing only those?"""
    write_file(central.root, "Images/Win11.wim", b"A" * 1000)
    write_file(central.root, "Media/Tools.iso", b"T" * 500)
    scanned(central, admin, work)
    before = asset(central.id, "Images/Win11.wim").digest
    assert central_changes.changed_libraries() == set()
    assert central_changes.check_central() is None

    write_file(central.root, "Images/Win11.wim", b"B" * 1000, mtime_ns=time.time_ns() + 10**9)
    assert central_changes.changed_libraries() == {"Images"}
    job = central_changes.check_central()
    assert job is not None and job.kind == "rescan"
    work()
    db.session.expire_all()
    finished = db.session.get(Job, job.id)
    assert finished.state == "succeeded", finished.error
    assert "1 hashed" in finished.summary
    assert asset(central.id, "Images/Win11.wim").digest != before
    assert central_changes.check_central() is None

    os.remove(os.path.join(central.root, "Media", "Tools.iso"))
    assert central_changes.changed_libraries() == {"Media"}
