"""Central notices by itself when files change under its root, so deployments never pin a digest
that is no longer central's.

Two ways, each ending in the ordinary rescan of central (which hashes only what changed):
- `Watcher`: filesystem events (watchdog's inotify, FSEvents or ReadDirectoryChangesW observer)
  on the library folders, debounced: a file still being written keeps producing events, and
  central is rescanned only once its library folders have been quiet for DEPOT_WATCH_QUIET
  seconds. It runs in a process of its own (`flask --app wsgi watch-central`; `make run` starts
  it, docs/architecture.md says why).
- `check_central`: the safety net for what events miss (a network share, a watcher that was not
  running): every DEPOT_CENTRAL_CHECK_INTERVAL seconds `rq cron` compares what is on disk with
  the inventory by size and modification time only, and rescans central when they differ.
"""
import logging
import os
import threading
import time
from typing import Callable

from sqlalchemy import select

from portal.core.files import ContentRoot
from portal.core.libraries import LIBRARIES
from portal.extensions import db
from portal.models import Job
from portal.models.content import InventoryFile
from portal.services import jobs
from portal.services.actors import SYSTEM, Actor
from portal.services.assets import central_dp

log = logging.getLogger(__name__)


def rescan_central(actor: Actor = SYSTEM) -> Job | None:
    """Queue a rescan of central that will see what is on disk now: a new one, or the one still
    waiting in the queue. None while one is running (it may have listed the files already):
    the caller asks again once it has finished."""
    central = central_dp()
    key = f"rescan:{central.id}"
    active = jobs.active_job(key)
    if active is not None:
        return active if active.state == "queued" else None
    job, _ = jobs.start_job("rescan", actor, dp_id=central.id, dedup_key=key)
    return job


def changed_libraries() -> set[str]:
    """The libraries whose files at central differ from the inventory by path, size or
    modification time (a stat of each file, nothing read)."""
    central = central_dp()
    known = {row.path: (row.size, row.mtime_ns) for row in db.session.execute(
        select(InventoryFile.path, InventoryFile.size, InventoryFile.mtime_ns)
        .where(InventoryFile.dp_id == central.id))}
    changed: set[str] = set()
    for entry in ContentRoot(central.root).walk([]):
        library = entry.path.split("/", 1)[0]
        if known.pop(entry.path, None) != (entry.size, entry.mtime_ns):
            changed.add(library)
    changed.update(path.split("/", 1)[0] for path in known)  # gone from the disk
    return changed


def check_central() -> Job | None:
    """The periodic safety net: rescan central if a stat of its files finds a change."""
    changed = changed_libraries()
    if not changed:
        return None
    log.info("central changed on disk (%s): rescanning", ", ".join(sorted(changed)))
    return rescan_central()


class Watcher:
    """Filesystem events under central's library folders, debounced into calls of `on_quiet`
    (which returns False to be asked again later, as rescan_central does while a rescan runs)."""

    def __init__(self, root: str, on_quiet: Callable[[set[str]], bool],
                 quiet_seconds: float = 3.0):
        self.root = os.path.realpath(root)
        self.on_quiet = on_quiet
        self.quiet = quiet_seconds
        self.changed: set[str] = set()
        self.last_event = 0.0
        self.lock = threading.Lock()
        self.observer = None

    def start(self) -> None:
        """Start the observer (a thread of watchdog's) on every library folder."""
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        watcher = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event):
                if event.event_type not in ("opened", "closed_no_write"):
                    for path in (event.src_path, getattr(event, "dest_path", "")):
                        watcher.saw(path)

        self.observer = Observer()
        for library in LIBRARIES:
            folder = os.path.join(self.root, library)
            os.makedirs(folder, exist_ok=True)
            self.observer.schedule(Handler(), folder, recursive=True)
        self.observer.start()

    def stop(self) -> None:
        if self.observer is not None:
            self.observer.stop()
            self.observer.join(timeout=10)

    def saw(self, path) -> None:
        """An event on `path`: note its library and restart the quiet period."""
        if not path:
            return
        rel = os.path.relpath(os.fsdecode(path), self.root)
        library = rel.split(os.sep, 1)[0]
        if library in LIBRARIES:
            with self.lock:
                self.changed.add(library)
                self.last_event = time.monotonic()

    def pump(self) -> bool:
        """Call `on_quiet` if something changed and has been quiet long enough; True if it was
        called and took the change."""
        with self.lock:
            if not self.changed or time.monotonic() - self.last_event < self.quiet:
                return False
            changed, self.changed = self.changed, set()
        if self.on_quiet(changed):
            return True
        with self.lock:  # not taken now: ask again after another quiet period
            self.changed |= changed
            self.last_event = time.monotonic()
        return False


def watch(root: str, quiet_seconds: float, should_stop: Callable[[], bool] = lambda: False,
          tick: float = 0.5) -> None:
    """Run a Watcher on central's root until `should_stop`, rescanning central after changes
    (call it inside an app context)."""

    def on_quiet(changed: set[str]) -> bool:
        try:
            job = rescan_central()
            job_id = job.id if job is not None else None
        except Exception:  # the database or Redis away for a moment: try again later
            log.exception("could not queue a rescan of central")
            db.session.rollback()
            return False
        finally:
            db.session.remove()
        if job_id is not None:
            log.info("central changed (%s): rescan %s queued", ", ".join(sorted(changed)), job_id)
        return job_id is not None

    watcher = Watcher(root, on_quiet, quiet_seconds)
    watcher.start()
    log.info("watching %s for changes (quiet period %s s)", root, quiet_seconds)
    try:
        while not should_stop():
            watcher.pump()
            time.sleep(tick)
    finally:
        watcher.stop()
