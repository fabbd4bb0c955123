"""Resumable uploads into a DP node's root, in the spirit of tus.

An upload is named by what it will become (path, size, SHA-256), so a sender that lost track of
it (a worker killed, the central server restarted) asks for the same upload again and learns how
far it got. Its bytes live in `<root>/.depot/uploads/`, outside the library folders and on the
same file system, beside a small JSON record of the byte ranges received. Chunks may arrive in
any order and more than one at a time; `offset` is where the first gap starts. `finish` checks
size and SHA-256, fsyncs, and renames into place atomically, so a partial file is never visible
under its final name.

Space: every upload under way sets aside what it has still to write (its declared size less the
bytes received), and a new upload is refused (507) unless the disk's free space, less what is set
aside, holds its size and the node's reserve. The uploads' records (`<id>.json`) are the ledger:
finish, abort and the sweep of abandoned uploads remove the record and so release what it set
aside, and a worker that dies mid-upload leaves nothing the sweep does not clear. A create checks
and records under one lock for the whole node (`.depot/uploads.lock`, flock across gunicorn's
workers, or between waitress's threads on Windows), so two uploads that each fit but not
together cannot both start.
"""
import errno
import hashlib
import json
import os
import re
import shutil
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from typing import Callable

from portal.core import fileio, locks
from portal.core.errors import Conflict, DepotError, DigestMismatch, InsufficientStorage, NotFound
from portal.core.numbers import MAX_BIGINT
from portal.core.paths import confine
from portal.core.units import human_bytes

STATE_DIR = ".depot"
UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
READ_CHUNK = 1024 * 1024


@dataclass
class Upload:
    id: str
    path: str
    size: int
    sha256: str
    ranges: list[list[int]] = field(default_factory=list)  # received [start, end), merged, sorted
    created_at: float = 0.0
    updated_at: float = 0.0
    delta: bool = False  # built from a chunk plan (portal.dpnode.assembly), in order
    assembled: int = 0  # a delta upload: chunks built so far
    halted: bool = False  # a delta batch failed: later batches are refused until one resumes

    @property
    def offset(self) -> int:
        """Bytes received without a gap from the start: where a sender resumes."""
        return self.ranges[0][1] if self.ranges and self.ranges[0][0] == 0 else 0

    @property
    def received(self) -> int:
        return sum(end - start for start, end in self.ranges)

    def to_dict(self) -> dict:
        return {"id": self.id, "path": self.path, "size": self.size, "sha256": self.sha256,
                "offset": self.offset, "received": self.received}


@contextmanager
def part_shared(path: str, uid: str):
    """The upload's part, open for writing and shared with other chunks being written; finish,
    abort and a new plan take it exclusively. NotFound if there is no such upload."""
    with ExitStack() as stack:
        try:
            held = stack.enter_context(locks.open_locked(path, os.O_RDWR, shared=True))
        except FileNotFoundError:
            raise NotFound(f"no upload {uid}") from None
        yield held.fd


def chunk_offset(headers, content_length: int | None) -> int:
    """Where a PATCHed chunk goes: its Upload-Offset header (the node's route and central's
    upload route read it alike); DepotError when that header or the Content-Length is missing."""
    try:
        offset = int(headers["Upload-Offset"])
    except (KeyError, ValueError):
        raise DepotError("send the chunk's position in an Upload-Offset header") from None
    if content_length is None:
        raise DepotError("send a Content-Length with every chunk")
    return offset


def upload_id(path: str, size: int, sha256: str) -> str:
    """The upload's name, from what it will become."""
    return hashlib.sha256(f"{path}\0{size}\0{sha256}".encode()).hexdigest()[:32]


def valid_upload_id(uid: str) -> bool:
    """Whether `uid` has the shape upload_id gives (and so is safe in a file name)."""
    return isinstance(uid, str) and UPLOAD_ID.fullmatch(uid) is not None


def _merge(ranges: list[list[int]], start: int, end: int) -> list[list[int]]:
    merged: list[list[int]] = []
    for lo, hi in sorted([*ranges, [start, end]]):
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return merged


class UploadStore:
    """The uploads of one DP node root."""

    def __init__(self, root: str, reserve_bytes: int = 0, max_age_seconds: int = 7 * 86400):
        self.root = root
        self.reserve = reserve_bytes
        self.max_age = max_age_seconds
        self.dir = os.path.join(root, STATE_DIR, "uploads")
        os.makedirs(self.dir, exist_ok=True)
        # Delta uploads being assembled in this process: id -> (chunks hashed, running SHA-256).
        self.running: dict = {}
        # Their chunk plans as this process last read them (portal.dpnode.assembly.Plan).
        self.plans: dict = {}
        # Delta batches gathered and waiting for their turn: id -> {first chunk: batch}; where
        # assembly stands as this process last saw it; the lock of whoever drains each upload.
        self.pending: dict = {}
        self.frontiers: dict = {}
        self.draining: dict = {}
        self.pending_lock = threading.Lock()
        # Notified when a delta batch is taken in: batches waiting for room, finish, look again.
        self.turns = threading.Condition()

    # --- files of one upload ---------------------------------------------------------------

    def _part(self, uid: str) -> str:
        return os.path.join(self.dir, f"{uid}.part")

    def _meta(self, uid: str) -> str:
        return os.path.join(self.dir, f"{uid}.json")

    def _done(self, uid: str) -> str:
        return os.path.join(self.dir, f"{uid}.done")

    @contextmanager
    def _locked(self, uid: str, shared: bool = False):
        """Hold the upload's lock (across the node's processes and threads) and yield its part's
        descriptor and its record. `shared`: beside the batches being gathered (the in-order step
        of a delta, which a lock of its own in this process keeps to one at a time), still apart
        from finish, abort and a new plan."""
        with self._held(uid, shared) as (held, upload):
            yield held.fd, upload

    @contextmanager
    def _held(self, uid: str, shared: bool = False):
        with ExitStack() as stack:
            try:
                held = stack.enter_context(locks.open_locked(self._part(uid), os.O_RDWR,
                                                             shared=shared))
            except FileNotFoundError:
                raise NotFound(f"no upload {uid}") from None
            upload = self._load(uid)
            if upload is None:  # finished or aborted while we waited for the lock
                raise NotFound(f"no upload {uid}")
            yield held, upload

    def _load(self, uid: str) -> Upload | None:
        try:
            with open(self._meta(uid)) as fh:
                return Upload(**json.load(fh))
        except (FileNotFoundError, ValueError, TypeError):
            return None

    def _save(self, upload: Upload) -> None:
        upload.updated_at = time.time()
        tmp = self._meta(upload.id) + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(asdict(upload), fh)
        os.replace(tmp, self._meta(upload.id))

    def _discard(self, uid: str) -> None:
        self.running.pop(uid, None)
        self.plans.pop(uid, None)
        with self.pending_lock:
            self.pending.pop(uid, None)
            self.frontiers.pop(uid, None)
        for path in (self._meta(uid), self._part(uid), os.path.join(self.dir, f"{uid}.plan"),
                     os.path.join(self.dir, f"{uid}.need")):
            try:
                os.remove(path)
            except FileNotFoundError:
                pass

    # --- space -----------------------------------------------------------------------------

    def space(self) -> tuple[int, int]:
        """(free, total) bytes of the root's disk, free after the configured reserve and what the
        uploads under way have set aside."""
        usage = shutil.disk_usage(self.root)
        return max(0, usage.free - self.reserve - self.set_aside()[0]), usage.total

    def set_aside(self, other_than: str | None = None) -> tuple[int, int]:
        """(bytes, uploads): what the uploads under way (but `other_than`) have still to write,
        read from their records (the ledger)."""
        total = count = 0
        for name in os.listdir(self.dir):
            uid, ext = os.path.splitext(name)
            if ext != ".json" or uid == other_than:
                continue
            upload = self._load(uid)
            if upload is not None:
                total += max(0, upload.size - upload.received)
                count += 1
        return total, count

    @contextmanager
    def _ledger(self):
        """The node's space ledger, held exclusively: what a create checks stays true until its
        record is written (across the node's processes and threads)."""
        with locks.open_locked(os.path.join(self.root, STATE_DIR, "uploads.lock"),
                               os.O_RDWR | os.O_CREAT):
            yield

    def _require_space(self, needed: int, path: str, other_than: str | None = None) -> None:
        """InsufficientStorage unless free space, less what other uploads set aside, holds
        `needed` bytes and the reserve. Call it holding the ledger."""
        free = shutil.disk_usage(self.root).free
        aside, uploads = self.set_aside(other_than)
        if needed + self.reserve > free - aside:
            held = f", {human_bytes(aside)} of it set aside for {uploads} upload(s) under way" \
                if uploads else ""
            raise InsufficientStorage(
                f"not enough space for {path}: it needs {human_bytes(needed)} ({needed} bytes) "
                f"more; the DP has {human_bytes(free)} free{held}, and keeps a reserve of "
                f"{human_bytes(self.reserve)}. Free space at the DP, wait for the other uploads "
                "to finish, or lower DEPOT_DP_RESERVE_BYTES")

    # --- the protocol ----------------------------------------------------------------------

    def create(self, path, size, sha256) -> tuple[Upload, bool]:
        """Start an upload, or return the one already under way for the same file: (upload, new)."""
        confine(self.root, path)
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_BIGINT:
            raise DepotError(f"size must be a whole number of bytes, 0 to {MAX_BIGINT}")
        if not isinstance(sha256, str) or len(sha256) != 64 or not all(
                c in "0123456789abcdef" for c in sha256):
            raise DepotError("sha256 must be 64 lowercase hex digits")
        self.sweep()
        uid = upload_id(path, size, sha256)
        with self._ledger():
            existing = self._load(uid)
            if existing is not None and os.path.exists(self._part(uid)):
                self._require_space(size - existing.received, path, other_than=uid)
                return existing, False
            self._require_space(size, path)
            with open(self._part(uid), "wb"):
                pass
            now = time.time()
            upload = Upload(uid, path, size, sha256, created_at=now, updated_at=now)
            self._save(upload)  # its entry in the ledger: what it sets aside
            return upload, True

    def get(self, uid: str) -> Upload:
        upload = self._load(uid)
        if upload is None:
            raise NotFound(f"no upload {uid}")
        return upload

    def write(self, uid: str, offset: int, length: int, read: Callable[[int], bytes]) -> Upload:
        """Write one chunk of `length` bytes at `offset`, taken from `read` as it arrives (any
        order; a chunk sent twice is harmless). The bytes go straight to the file; only the record
        of what arrived is taken under the upload's lock, so several chunks write at once."""
        upload = self.get(uid)
        if upload.delta:
            raise Conflict(f"the upload of {upload.path} is built from its chunk plan: send its "
                           "chunks in batches (POST .../chunks)")
        if offset < 0 or length < 0 or offset + length > upload.size:
            raise Conflict(f"a chunk of {length} bytes at {offset} does not fit an upload of "
                           f"{upload.size} bytes")
        try:
            # Shared with other chunks, exclusive against finish and abort; and still the upload's
            # own file once we hold it (not one that finish renamed into place meanwhile).
            with part_shared(self._part(uid), uid) as fd:
                try:
                    still_ours = os.fstat(fd).st_ino == os.stat(self._part(uid)).st_ino
                except FileNotFoundError:
                    still_ours = False
                if not still_ours or not os.path.exists(self._meta(uid)):
                    raise NotFound(f"no upload {uid}: it was finished or aborted")
                done = 0
                while done < length:
                    block = read(min(READ_CHUNK, length - done))
                    if not block:
                        raise DepotError(f"the chunk ended after {done} of its {length} bytes")
                    fileio.pwrite(fd, block, offset + done)
                    done += len(block)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise InsufficientStorage(f"the DP's disk is full while writing {upload.path}") \
                    from None
            raise
        with self._locked(uid) as (_, upload):
            if length:
                upload.ranges = _merge(upload.ranges, offset, offset + length)
            self._save(upload)
            return upload

    def completed(self, uid: str) -> dict | None:
        """What a finished upload became, while its file is still there unchanged: a sender that
        lost the answer (a timeout, a crash) asks again and learns it is done."""
        try:
            with open(self._done(uid)) as fh:
                done = json.load(fh)
            st = os.stat(confine(self.root, done["path"]))
        except (OSError, ValueError, KeyError, DepotError):
            return None
        return done if (st.st_size, st.st_mtime_ns) == (done["size"], done["mtime_ns"]) else None

    def finish(self, uid: str) -> dict:
        """Check size and SHA-256, fsync, and move the file to its final name atomically. Asked
        again once done, it answers the same."""
        try:
            return self._finish(uid)
        except NotFound:
            if done := self.completed(uid):
                return done
            raise

    def _finish(self, uid: str) -> dict:
        with self._held(uid) as (held, upload):
            if upload.ranges != ([[0, upload.size]] if upload.size else []):
                raise Conflict(f"the upload of {upload.path} is incomplete: {upload.offset} of "
                               f"{upload.size} bytes received without a gap")
            size, digest = self._whole_digest(held.fd, upload)
            if size != upload.size or digest.hexdigest() != upload.sha256:
                held.close_early()  # Windows removes no open file
                self._discard(uid)
                raise DigestMismatch(
                    f"{upload.path} arrived damaged ({size} bytes, SHA-256 {digest.hexdigest()}; "
                    f"expected {upload.size} bytes, {upload.sha256}); the upload was discarded")
            os.fsync(held.fd)
            held.close_early()
            final = confine(self.root, upload.path)
            try:
                os.makedirs(os.path.dirname(final), exist_ok=True)
                os.replace(self._part(uid), final)
            except IsADirectoryError:
                raise Conflict(f"{upload.path} is a folder at this DP; delete it first") from None
            except OSError as exc:  # a file where a folder must go, another mount, in use ...
                raise Conflict(f"cannot place {upload.path} at this DP: {exc.strerror}") from None
            fileio.fsync_dir(os.path.dirname(final))
            st = os.stat(final)
            done = {"path": upload.path, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                    "sha256": upload.sha256}
            tmp = self._done(uid) + ".tmp"
            with open(tmp, "w") as fh:
                json.dump(done, fh)
            os.replace(tmp, self._done(uid))
            self._discard(uid)  # the record and the chunk plan (the part is in place now)
            return done

    def _whole_digest(self, fd: int, upload: Upload):
        """(size, SHA-256) of the part file: a delta upload's was computed as it was assembled
        (kept by this process); anything else is read once now."""
        held = self.running.pop(upload.id, None)
        if upload.delta and held is not None and upload.ranges == [[0, upload.size]]:
            return os.fstat(fd).st_size, held[1]
        digest = hashlib.sha256()
        size = 0
        with open(self._part(upload.id), "rb", buffering=0) as fh:
            while block := fh.read(READ_CHUNK):
                digest.update(block)
                size += len(block)
        return size, digest

    def abort(self, uid: str) -> None:
        """Forget an upload and its bytes."""
        with self._held(uid) as (held, _upload):
            held.close_early()  # Windows removes no open file
            self._discard(uid)

    def sweep(self) -> list[str]:
        """Remove uploads nobody has touched for longer than the configured age."""
        cutoff = time.time() - self.max_age
        removed = []
        for name in os.listdir(self.dir):
            uid, ext = os.path.splitext(name)
            if ext in (".done", ".tmp"):  # answers kept for late askers; half-written records
                try:
                    if os.stat(os.path.join(self.dir, name)).st_mtime < cutoff:
                        os.remove(os.path.join(self.dir, name))
                except FileNotFoundError:
                    pass
                continue
            if ext not in (".json", ".part"):
                continue
            try:
                if os.stat(os.path.join(self.dir, name)).st_mtime >= cutoff:
                    continue
            except FileNotFoundError:
                continue
            upload = self._load(uid)
            if upload is None or upload.updated_at < cutoff:
                self._discard(uid)
                removed.append(uid)
        return removed
