"""The transfer engine: sends central's files to a DP in chunks, resumable and verified there.

`Transfer` is the entry point: one per copy run, over the DP's open backend. `send_file` sends
one central file through the storage interface (`Upload`): only the ranges the DP lacks, cut in
chunks, as many in flight as the DP allows, under the DP's bandwidth limit (shared by all
streams and by every worker copying to the DP: `bandwidth.SharedThrottle`), stopping when the
job is cancelled. What a backend needs to resume an upload in another process (an S3 UploadId,
a provider's session URL) is kept encrypted in `upload_sessions` (`SavedState`); a DP node
keeps its own. So a copy that starts again (a killed
worker, a dropped connection, the whole server restarted) continues where the DP's upload
stopped. The DP checks size and hash before the file takes its final name. `Transfer.moved`
counts the bytes the DP acknowledged in this run: a run that moved some made progress.

`sweep_abandoned_uploads` (daily) aborts partial uploads nobody continued and forgets their
resume records.
"""
import json
import logging
import os
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from datetime import timedelta

from flask import current_app
from sqlalchemy import delete, select

from portal.core.chunks import ChunkIndex, wants_index
from portal.core.chunkstore import ChunkStore
from portal.core.files import open_no_follow
from portal.core.errors import (
    DamagedInTransit,
    DepotError,
    JobCancelled,
    NeedsAuth,
    PlanAgain,
    StorageUnavailable,
)
from portal.core import fileio
from portal.core.hashing import hash_fd
from portal.core.names import unescape_component
from portal.extensions import db
from portal.models import DistributionPoint, UploadSession, utcnow
from portal.services import secrets
from portal.services.backends import open_storage
from portal.services.bandwidth import SharedThrottle, Throttle
from portal.services.job_runs import Progress, RetryLater
from portal.storage.base import Base, Source, StorageBackend, Upload, UploadState

log = logging.getLogger(__name__)
MAX_PLANS = 3  # plans of one file in one run (a DP finding a part it meant to reuse damaged)


class SavedState(UploadState):
    """An upload's resume record, kept in `upload_sessions` (encrypted) between runs."""

    def __init__(self, dp_id: int, row):
        self.dp_id, self.row = dp_id, row
        saved = db.session.scalar(select(UploadSession).where(
            UploadSession.dp_id == dp_id, UploadSession.path == row.path))
        try:
            data = json.loads(secrets.decrypt(saved.data)) if saved else None
        except (DepotError, ValueError):  # the key it was stored with is gone: start afresh
            log.warning("the resume record of %s cannot be read; the upload starts afresh",
                        row.path)
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


class Transfer:
    """Sends central's files to one DP through its open backend, for one run of a copy job.

    The bandwidth limit holds across all the files of the run and all the runs copying to the
    DP at the time (a bucket in Redis); chunk size and streams come from
    DEPOT_COPY_CHUNK and DEPOT_COPY_STREAMS unless the backend's upload sets its own.
    """

    def __init__(self, backend: StorageBackend, dp: DistributionPoint, central_root: str,
                 progress: Progress, here: dict | None = None):
        self.backend, self.dp_id, self.central_root = backend, dp.id, central_root
        self.here = here or {}  # the DP's inventory rows by path: what a delta starts from
        self.progress = progress
        self.throttle = SharedThrottle(dp.id, dp.bandwidth_limit, progress.cancelled)
        self.chunk = current_app.config["DEPOT_COPY_CHUNK"]
        self.streams = max(1, current_app.config["DEPOT_COPY_STREAMS"])
        self.moved = 0  # bytes the DP acknowledged in this run: if any, the run made progress
        self.sent = 0  # bytes that crossed the network in this run
        self.reused = 0  # bytes the DP took from what it already held, in this run's files

    def send_file(self, row, done_before: int) -> dict:
        """Upload one central file (an inventory row of central: path, size, mtime_ns, sha256,
        hashes) to the DP, resuming where its upload stopped; verified there. Returns what the
        DP holds now ({size, mtime_ns, sha256, hashes}). `done_before`: bytes of this run's
        earlier files, so progress counts on from there."""
        source = os.path.join(os.fsencode(self.central_root),
                              *(unescape_component(part) for part in row.path.split("/")))
        try:
            fd = open_no_follow(source)
        except OSError as exc:
            raise DepotError(f"cannot read {row.path} at central: {exc.strerror}") from None
        upload = None
        try:
            state = SavedState(self.dp_id, row)
            st = os.fstat(fd)
            if (st.st_size, st.st_mtime_ns) != (row.size, row.mtime_ns):
                raise DepotError(f"{row.path} changed at central since its last scan: rescan "
                                 "central, then copy again")
            index, base = self._delta_of(row, fd)
            for plans_left in range(MAX_PLANS - 1, -1, -1):
                upload = self.backend.upload(
                    Source(row.path, row.size, row.sha256, _hashes(row),
                           lambda offset, length: fileio.pread(fd, length, offset),
                           index=index, base=base), state)
                if upload.done is not None:  # an earlier run got it there; its answer was lost
                    state.clear()
                    return upload.done
                try:
                    self._send_chunks(upload, fd, row.size, max(1, upload.parallel or self.streams),
                                      upload.chunk_size or self.chunk, done_before)
                    result = upload.finish()
                except PlanAgain as exc:
                    if not plans_left:
                        raise
                    log.warning("%s: %s", row.path, exc.message)
                    self.progress.warn(exc.message)
                    continue
                except DamagedInTransit:
                    state.clear()
                    raise RetryLater(f"{row.path} arrived damaged at the DP; sending it again") \
                        from None
                self.reused += upload.reused
                state.clear()
                return result
            raise AssertionError("unreachable: the last plan raises or returns")
        except (JobCancelled, DepotError) as exc:
            # Cancelled, or failed for good: the partial upload goes. A passing failure (the DP
            # not answering, RetryLater) keeps it, so the next try resumes; so does a DP that
            # needs reconnecting: its upload sessions outlive the tokens, and resume after
            # Reconnect.
            if upload is not None and not isinstance(exc, (StorageUnavailable, RetryLater,
                                                           NeedsAuth)):
                try:
                    upload.abort()
                    state.clear()
                except DepotError:
                    pass  # the DP's (or our weekly) sweep removes it in the end
            raise
        finally:
            os.close(fd)

    def _delta_of(self, row, fd: int) -> tuple[ChunkIndex | None, Base | None]:
        """The file's chunk index (computed now, in one read, if the last scan left none) and
        what the DP holds at its path, for a backend that sends only what changed."""
        if not (self.backend.reuses_parts and wants_index(row.size)):
            return None, None
        with ChunkStore(self.central_root) as store:
            index = store.get(row.sha256)
            if index is None:
                self.progress.update(phase=f"indexing {row.path}"[:64], force=True)
                sha256, index = hash_fd(fd, row.size, self.progress.cancelled)
                if sha256 != row.sha256:
                    raise DepotError(f"{row.path} changed at central since its last scan: rescan "
                                     "central, then copy again")
                store.put(row.sha256, index)
            old = self.here.get(row.path)
            base = None
            if old is not None and old.sha256:
                base = Base(old.sha256, old.size, store.get(old.sha256))
        return index, base

    def _send_chunks(self, upload: Upload, fd: int, size: int, streams: int, chunk: int,
                     done_before: int) -> None:
        """Send what the DP lacks in chunks, `streams` of them in flight at once."""
        progress = self.progress
        pieces = list(upload.pieces(chunk))
        acked = size - sum(length for _, length in pieces)
        pending: set = set()
        todo = iter(pieces)
        progress.update(bytes_done=done_before + acked)
        with ThreadPoolExecutor(max_workers=streams, thread_name_prefix="copy") as pool:
            try:
                while True:
                    while len(pending) < streams and (piece := next(todo, None)) is not None:
                        pending.add(pool.submit(_send_chunk, upload, fd, *piece, self.throttle,
                                                progress))
                    if not pending:
                        break
                    done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                    for fut in done:
                        length, sent = fut.result()
                        acked += length
                        self.moved += length
                        self.sent += sent
                    if done:
                        upload.checkpoint()
                    progress.check()
                    progress.update(bytes_done=done_before + acked, bytes_sent=self.sent)
            finally:
                for fut in pending:
                    fut.cancel()


def _hashes(row) -> dict:
    return json.loads(row.hashes) if row.hashes else {}


def _send_chunk(upload: Upload, fd: int, offset: int, length: int, throttle: Throttle,
                progress: Progress) -> tuple[int, int]:
    """One piece, in a thread of the pool: read at central, wait for the limit, send. (bytes of
    the file it covers, bytes that crossed the network)"""
    if progress.cancelled.is_set():
        raise JobCancelled()
    if upload.reads_itself:
        return length, upload.send_range(offset, length, throttle.take)
    data = fileio.pread(fd, length, offset)
    if len(data) != length:
        raise DepotError("a central file got shorter while being copied: rescan central")
    throttle.take(length)
    upload.send(offset, data)
    return length, length


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
