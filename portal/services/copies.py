"""Copies: make an asset at a DP identical to central's, file by file, resumable and verified.

A copy sends only files whose size or SHA-256 differ at the DP, in chunks, as many in flight as the
DP allows, through the storage interface (`Upload`). What a backend needs to resume an upload in
another process (an S3 UploadId, a provider's session URL) is kept in `upload_sessions`; a DP node
keeps its own. So a copy that starts again (a killed worker, a dropped connection, the whole server
restarted) continues where the DP's upload stopped. The DP checks size and hash before the file
takes its final name; files the asset no longer has are then deleted at the DP, and the DP's
inventory and statuses are brought up to date.
"""
import json
import logging
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, or_, select

from portal.core.errors import (
    Conflict,
    DamagedInTransit,
    DepotError,
    JobCancelled,
    NeedsAuth,
    NotFound,
    StorageUnavailable,
)
from portal.core.libraries import LIBRARIES
from portal.core.names import unescape_component
from portal.extensions import db
from portal.models import Asset, DistributionPoint, InventoryFile, Job, UploadSession, utcnow
from portal.services import jobs as jobs_service
from portal.services import secrets
from portal.services.actors import Actor
from portal.services.backends import open_storage
from portal.services.inventory import central_dp, rebuild_assets, refresh_statuses
from portal.services.job_runs import Progress, RetryLater
from portal.services.jobs import dp_of
from portal.services.permissions import can_see_dp, require
from portal.storage.base import Source, Upload, UploadState

MAX_ITEMS = 1000
log = logging.getLogger(__name__)


def _asset_files(dp_id: int, key: str) -> list:
    """The inventory rows that make up asset `key` at a DP (one for a file, all under a folder)."""
    return list(db.session.execute(
        select(InventoryFile.id, InventoryFile.path, InventoryFile.size, InventoryFile.mtime_ns,
               InventoryFile.sha256, InventoryFile.hashes)
        .where(InventoryFile.dp_id == dp_id,
               or_(InventoryFile.path == key, InventoryFile.path.startswith(key + "/", autoescape=True)))
        .order_by(InventoryFile.path)))


def request_copies(actor: Actor, asset_keys, dp_ids) -> list[Job]:
    """One copy job per (asset, DP); a pair already queued or running gives its job back."""
    require(actor.user, "copy")
    if not isinstance(asset_keys, list) or not asset_keys or not all(isinstance(k, str) for k in asset_keys):
        raise DepotError("asset_keys must be a non-empty list of asset keys like Images/Win11.wim")
    if not isinstance(dp_ids, list) or not dp_ids or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in dp_ids):
        raise DepotError("dp_ids must be a non-empty list of distribution point ids")
    if len(asset_keys) * len(dp_ids) > MAX_ITEMS:
        raise DepotError(f"at most {MAX_ITEMS} copies at once")
    central = central_dp()
    assets = {a.key: a for a in db.session.scalars(
        select(Asset).where(Asset.dp_id == central.id, Asset.key.in_(asset_keys)))}
    for key in asset_keys:
        if key not in assets:
            raise NotFound(f"{key} is not at central")
        if assets[key].digest is None:
            raise Conflict(f"{key} is not hashed at central yet: rescan central first")
    targets = []
    for dp_id in dict.fromkeys(dp_ids):
        dp = db.session.get(DistributionPoint, dp_id)
        if dp is None or not can_see_dp(actor.user, dp):
            raise NotFound(f"no distribution point {dp_id}")
        if dp.is_central:
            raise DepotError("central is where copies come from, not a target")
        if dp.disabled:
            raise Conflict(f"{dp.name} is disabled for maintenance")
        targets.append(dp)
    started = []
    for dp in targets:
        for key in dict.fromkeys(asset_keys):
            job, _ = jobs_service.start_job("copy", actor, dp_id=dp.id, asset_key=key,
                                            dedup_key=f"copy:{dp.id}:{key}")
            started.append(job)
    return started


def library_assets(library) -> list[str]:
    """Every asset of a library at central: what "copy the whole library" copies."""
    if library not in LIBRARIES:
        raise DepotError(f"library must be one of: {', '.join(LIBRARIES)}")
    keys = list(db.session.scalars(select(Asset.key).where(
        Asset.dp_id == central_dp().id, Asset.library == library).order_by(Asset.key)))
    if not keys:
        raise DepotError(f"{library} is empty at central: nothing to copy")
    return keys


def missing_or_outdated(dp: DistributionPoint) -> list[str]:
    """Central's hashed assets that are missing, outdated or failed at the DP."""
    central = central_dp()
    here = dict(db.session.execute(select(Asset.key, Asset.digest).where(Asset.dp_id == dp.id)).all())
    return [key for key, digest in db.session.execute(
        select(Asset.key, Asset.digest).where(Asset.dp_id == central.id, Asset.digest.is_not(None))
        .order_by(Asset.key)) if here.get(key, "missing") != digest]


# --- the job ---------------------------------------------------------------------------------

def in_allowed_hours(hours: str | None, now: datetime) -> float:
    """0 when copies may run now under 'HH-HH', else the seconds until the window opens."""
    if not hours:
        return 0
    start, end = (int(h) for h in hours.split("-"))
    hour = now.hour
    inside = start <= hour < end if start < end else (hour >= start or hour < end)
    if inside:
        return 0
    opens = now.replace(hour=start, minute=0, second=0, microsecond=0)
    wait_s = (opens - now).total_seconds()
    return wait_s if wait_s > 0 else wait_s + 86400


class _Throttle:
    """Keeps the bytes sent by all streams under a DP's bandwidth limit; a cancel ends the wait."""

    def __init__(self, limit: int | None, cancelled: threading.Event):
        self.limit, self.sent, self.started = limit, 0, time.monotonic()
        self.cancelled = cancelled
        self.lock = threading.Lock()

    def take(self, n: int) -> None:
        if not self.limit:
            return
        with self.lock:
            self.sent += n
            ahead = self.sent / self.limit - (time.monotonic() - self.started)
        if ahead > 0 and self.cancelled.wait(ahead):
            raise JobCancelled()


def copy_asset(job: Job, progress: Progress) -> str:
    """Make the job's asset at its DP identical to central's (the RQ job `copy`)."""
    dp = dp_of(job)
    if dp.disabled:
        raise DepotError(f"{dp.name} is disabled for maintenance")
    wait_s = in_allowed_hours(dp.allowed_hours, datetime.now())
    if wait_s:
        raise RetryLater(f"{dp.name} takes copies only {dp.allowed_hours} h", delay=wait_s, counts=False)
    central = central_dp()
    key, dp_id = job.asset_key, dp.id
    sources = _asset_files(central.id, key)
    if not sources:
        raise DepotError(f"{key} is no longer at central")
    if any(row.sha256 is None for row in sources):
        raise DepotError(f"{key} is not fully hashed at central: rescan central, then copy again")
    here = {row.path: row for row in _asset_files(dp_id, key)}
    with open_storage(dp) as backend:
        backend.cancelled = progress.cancelled
        return _copy(dp, backend, central, key, sources, here, progress)


def _copy(dp: DistributionPoint, backend, central: DistributionPoint, key: str, sources: list,
          here: dict, progress: Progress) -> str:
    """The copy itself, once the backend is open: changed files sent, stale ones removed."""
    dp_id = dp.id
    central_has_file = [row.path for row in sources] == [key]
    if here and central_has_file != (key in here):  # a file became a folder, or the other way
        _run_at_dp(backend.delete, key)  # its files cannot be placed over the old shape
        _record(dp_id, [], list(here))
        here = {}
    to_send = [row for row in sources
               if not (row.path in here and here[row.path].sha256 == row.sha256
                       and here[row.path].size == row.size)]
    stale = sorted(set(here) - {row.path for row in sources})
    progress.update(phase="copying", files_total=len(to_send), files_done=0,
                    bytes_total=sum(row.size for row in to_send), bytes_done=0, force=True)

    throttle = _Throttle(dp.bandwidth_limit, progress.cancelled)
    chunk = current_app.config["DEPOT_COPY_CHUNK"]
    streams = max(1, current_app.config["DEPOT_COPY_STREAMS"])
    central_root, done_bytes, sent = central.root, 0, []
    moved = _Moved()  # bytes this run got to the DP: if any, it made progress
    try:
        for number, row in enumerate(to_send, 1):
            progress.update(phase=f"copying {row.path}"[:64], files_done=number - 1, force=True)
            result = _send_file(backend, central_root, row, chunk, streams, throttle, progress,
                                done_bytes, moved, dp_id)
            sent.append((row, result))
            done_bytes += row.size
        for path in stale:
            progress.check()
            backend.delete(path)
    except StorageUnavailable as exc:
        _record(dp_id, sent, [])
        raise RetryLater(exc.message, delay=exc.retry_after, progressed=moved.bytes > 0) from None
    except BaseException:
        _record(dp_id, sent, [])
        raise
    _record(dp_id, sent, stale)
    progress.update(files_done=len(to_send), bytes_done=done_bytes, phase=None, force=True)
    skipped = len(sources) - len(to_send)
    return (f"{key} is current at {dp.name}: {len(to_send)} file(s) sent, {skipped} already there"
            + (f", {len(stale)} removed" if stale else ""))


def _run_at_dp(call, *args):
    """A call to the DP outside the sending loop: a DP not answering is a passing failure."""
    try:
        return call(*args)
    except StorageUnavailable as exc:
        raise RetryLater(exc.message, delay=exc.retry_after) from None


class _Moved:
    """Bytes the DP acknowledged in this run (chunk threads add to it)."""

    def __init__(self):
        self.bytes = 0


class _SavedState(UploadState):
    """An upload's resume record, kept in `upload_sessions` (encrypted) between runs."""

    def __init__(self, dp_id: int, row):
        self.dp_id, self.row = dp_id, row
        saved = db.session.scalar(select(UploadSession).where(
            UploadSession.dp_id == dp_id, UploadSession.path == row.path))
        try:
            data = json.loads(secrets.decrypt(saved.data)) if saved else None
        except (DepotError, ValueError):  # the key it was stored with is gone: start afresh
            log.warning("the resume record of %s cannot be read; the upload starts afresh", row.path)
            saved = data = None
        same = saved is not None and (saved.size, saved.sha256) == (row.size, row.sha256)
        super().__init__(data if same else None, None if same else data)

    def save(self, data: dict) -> None:
        super().save(data)
        now = utcnow()
        db.session.execute(delete(UploadSession).where(UploadSession.dp_id == self.dp_id,
                                                       UploadSession.path == self.row.path))
        db.session.add(UploadSession(dp_id=self.dp_id, path=self.row.path, size=self.row.size,
                                     sha256=self.row.sha256, data=secrets.encrypt(json.dumps(data)),
                                     created_at=now, updated_at=now))
        db.session.commit()

    def clear(self) -> None:
        super().clear()
        self.stale = None
        db.session.execute(delete(UploadSession).where(UploadSession.dp_id == self.dp_id,
                                                       UploadSession.path == self.row.path))
        db.session.commit()


def _send_file(backend, central_root: str, row, chunk: int, streams: int, throttle: _Throttle,
               progress: Progress, done_before: int, moved: _Moved, dp_id: int) -> dict:
    """Upload one central file to the DP, resuming where its upload stopped; verified there."""
    source = os.path.join(os.fsencode(central_root),
                          *(unescape_component(part) for part in row.path.split("/")))
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise DepotError(f"cannot read {row.path} at central: {exc.strerror}") from None
    upload = None
    try:
        state = _SavedState(dp_id, row)
        st = os.fstat(fd)
        if (st.st_size, st.st_mtime_ns) != (row.size, row.mtime_ns):
            raise DepotError(f"{row.path} changed at central since its last scan: rescan central, "
                             "then copy again")
        upload = backend.upload(Source(row.path, row.size, row.sha256, _hashes(row),
                                       lambda offset, length: os.pread(fd, length, offset)), state)
        if upload.done is not None:  # an earlier run got it there; only its answer was lost
            state.clear()
            return upload.done
        _send_chunks(upload, fd, row.size, max(1, upload.parallel or streams),
                     upload.chunk_size or chunk, throttle, progress, done_before, moved)
        try:
            result = upload.finish()
        except DamagedInTransit:
            state.clear()
            raise RetryLater(f"{row.path} arrived damaged at the DP; sending it again") from None
        state.clear()
        return result
    except (JobCancelled, DepotError) as exc:
        # Cancelled, or failed for good: the partial upload goes. A passing failure (the DP not
        # answering, RetryLater) keeps it, so the next try resumes; so does a DP that needs
        # reconnecting: its upload sessions outlive the tokens, and resume after Reconnect.
        if upload is not None and not isinstance(exc, (StorageUnavailable, RetryLater, NeedsAuth)):
            try:
                upload.abort()
                state.clear()
            except DepotError:
                pass  # the DP's (or our weekly) sweep removes it in the end
        raise
    finally:
        os.close(fd)


def _hashes(row) -> dict:
    return json.loads(row.hashes) if row.hashes else {}


def _pieces(upload: Upload, chunk: int):
    """The missing ranges cut at multiples of `chunk`: (offset, length) in order."""
    for start, end in upload.missing():
        position = start
        while position < end:
            length = min(end, (position // chunk + 1) * chunk) - position
            yield position, length
            position += length


def _send_chunks(upload: Upload, fd: int, size: int, streams: int, chunk: int,
                 throttle: _Throttle, progress: Progress, done_before: int, moved: _Moved) -> None:
    """Send what the DP lacks in chunks, `streams` of them in flight at once."""
    pieces = list(_pieces(upload, chunk))
    acked = size - sum(length for _, length in pieces)
    pending: set = set()
    todo = iter(pieces)
    progress.update(bytes_done=done_before + acked)
    with ThreadPoolExecutor(max_workers=streams, thread_name_prefix="copy") as pool:
        try:
            while True:
                while len(pending) < streams and (piece := next(todo, None)) is not None:
                    pending.add(pool.submit(_send_chunk, upload, fd, *piece, throttle, progress))
                if not pending:
                    break
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for fut in done:
                    length = fut.result()
                    acked += length
                    moved.bytes += length
                if done:
                    upload.checkpoint()
                progress.check()
                progress.update(bytes_done=done_before + acked)
        finally:
            for fut in pending:
                fut.cancel()


def _send_chunk(upload: Upload, fd: int, offset: int, length: int, throttle: _Throttle,
                progress: Progress) -> int:
    if progress.cancelled.is_set():
        raise JobCancelled()
    data = os.pread(fd, length, offset)
    if len(data) != length:
        raise DepotError("a central file got shorter while being copied: rescan central")
    throttle.take(length)
    upload.send(offset, data)
    return length


def _record(dp_id: int, sent: list, removed: list[str]) -> None:
    """Write what the copy changed at the DP into its inventory, then its assets and statuses."""
    db.session.rollback()
    now = utcnow()
    for row, result in sent:
        db.session.execute(delete(InventoryFile).where(InventoryFile.dp_id == dp_id,
                                                       InventoryFile.path == row.path))
        db.session.add(InventoryFile(dp_id=dp_id, path=row.path, size=result["size"],
                                     mtime_ns=result["mtime_ns"], sha256=result["sha256"],
                                     hashes=json.dumps(result["hashes"]) if result.get("hashes")
                                     else None, last_seen_at=now))
    if removed:
        db.session.execute(delete(InventoryFile).where(InventoryFile.dp_id == dp_id,
                                                       InventoryFile.path.in_(removed)))
    if sent or removed:
        rebuild_assets(dp_id)
        refresh_statuses(dp_id)
    db.session.commit()


# --- upkeep ----------------------------------------------------------------------------------

def sweep_abandoned_uploads() -> dict[str, int]:
    """Abort partial uploads nobody continued for DEPOT_UPLOAD_ABANDON_AFTER (a week): at each
    cloud DP that keeps them (S3 multipart uploads), and forget their resume records.
    {DP name or "records": how many}."""
    max_age = current_app.config["DEPOT_UPLOAD_ABANDON_AFTER"]
    cutoff = utcnow() - timedelta(seconds=max_age)
    outcome = {}
    for dp in db.session.scalars(select(DistributionPoint).where(
            DistributionPoint.kind == "cloud", DistributionPoint.disabled.is_(False))).all():
        keep = _uploads_in_use(dp.id, cutoff)
        try:
            with open_storage(dp) as backend:
                outcome[dp.name] = backend.sweep_uploads(max_age, keep)
        except DepotError as exc:
            log.warning("sweeping old uploads at %s failed: %s", dp.name, exc.message)
    outcome["records"] = db.session.execute(
        delete(UploadSession).where(UploadSession.updated_at < cutoff)).rowcount
    db.session.commit()
    return outcome


def _uploads_in_use(dp_id: int, cutoff) -> frozenset:
    """The upload ids copies saved since `cutoff`: a long copy (a bandwidth cap, allowed hours)
    may work on an upload older than the limit, and keeps it."""
    ids = set()
    for data in db.session.scalars(select(UploadSession.data).where(
            UploadSession.dp_id == dp_id, UploadSession.updated_at >= cutoff)):
        try:
            record = json.loads(secrets.decrypt(data))
        except (DepotError, ValueError):
            continue
        if isinstance(record, dict) and record.get("upload_id"):
            ids.add(record["upload_id"])
    return frozenset(ids)


# --- deletes ---------------------------------------------------------------------------------

def request_delete(actor: Actor, dp: DistributionPoint, key, confirm_central: bool = False) -> Job:
    """Queue the removal of an asset from a DP; from central only with a second confirmation."""
    require(actor.user, "delete_content")
    if not can_see_dp(actor.user, dp):
        raise NotFound(f"no distribution point {dp.id}")
    if not isinstance(key, str) or not db.session.scalar(
            select(Asset.id).where(Asset.dp_id == dp.id, Asset.key == key)):
        raise NotFound(f"{key} is not at {dp.name}")
    if dp.is_central and not confirm_central:
        raise Conflict(f"deleting {key} from central removes the original: confirm it a second time")
    job, _ = jobs_service.start_job("delete", actor, dp_id=dp.id, asset_key=key,
                                    dedup_key=f"delete:{dp.id}:{key}")
    return job


def delete_asset(job: Job, progress: Progress) -> str:
    """Remove the job's asset at its DP, then bring the DP's inventory and statuses up to date."""
    dp = dp_of(job)
    try:
        with open_storage(dp) as backend:
            backend.delete(job.asset_key)
    except StorageUnavailable as exc:
        raise RetryLater(exc.message, delay=exc.retry_after) from None
    removed = [row.path for row in _asset_files(dp.id, job.asset_key)]
    _record(dp.id, [], removed)
    if dp.is_central:
        refresh_statuses(None)  # every DP's copy of it is now only-here
        db.session.commit()
    return f"{job.asset_key} deleted from {dp.name}"
