"""Delta uploads at a DP node: a new file built from chunks the node already holds and the ones
central sends, checked as it is built.

Central announces the new file's chunk index (`plan`); the node answers which chunks it lacks,
looking for each one in every file under its root (the old version of the same file, another
edition of the image, a hand-copied file) and earlier in the same file. Central then sends the
lacking chunks in batches that cover chunk numbers [first, last), several in flight. Each batch
gathers its chunks (from the request, or from a local file) at the same time as the others,
checks each received one against its SHA-256 and writes them at their places in the upload's
part file; then, in order, each batch's bytes go into the whole file's running SHA-256, so
`finish` needs no read-back pass. A batch done before its turn waits for the batches before it.
Chunks taken from the node's own files were checked when its scan indexed them and are not
hashed again one by one: that would be a second pass over nearly every byte of an update.

How far assembly got (`Upload.assembled`, a chunk number) is saved after every batch, so a
sender or node that was killed resumes at chunk granularity; the running hash
lives in the node's process (`UploadStore.running`), and a node that lost it (restarted) hashes
the assembled part once. A local chunk whose bytes no longer match (bit rot in the file it was
taken from, under an unchanged size and time) makes the whole file's SHA-256 wrong: finish then
reads the assembled chunks back once to find it (`check_assembled`), the node marks it needed,
goes back to it, forgets what it knew of that file (its next scan hashes it again, and a verify
reports it) and answers `chunk_unavailable`, so central plans again and sends it. A local file
that vanished or shrank is found the same way as it is read, batch by batch.
"""
import hashlib
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable

from portal.core import fileio
from portal.core.chunks import ChunkIndex
from portal.core.chunkstore import ChunkStore
from portal.core.errors import Conflict, DepotError, DigestMismatch, NotFound
from portal.core.files import open_no_follow
from portal.core.paths import confine
from portal.dpnode import inventory
from portal.dpnode.uploads import READ_CHUNK, UploadStore, part_shared

RUN_BYTES = 8 * 1024 * 1024  # chunks read (from a local file, or the body) in runs of this much
WAIT_SECONDS = 60  # how long a batch waits for room, or finish for the batches before it
MAX_PENDING = 4  # gathered batches of one upload that may wait in memory for their turn


class ChunkUnavailable(Conflict):
    """A chunk the plan took from a local file is not there as it was: central plans again."""

    code = "chunk_unavailable"


class OutOfTurn(Conflict):
    """A batch that does not start where assembly stands (its answer says where that is)."""

    code = "out_of_turn"


def _plan_path(store: UploadStore, uid: str) -> str:
    return os.path.join(store.dir, f"{uid}.plan")


def _need_path(store: UploadStore, uid: str) -> str:
    return os.path.join(store.dir, f"{uid}.need")


def _write_atomic(path: str, data: bytes) -> None:
    tmp = path + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


@dataclass
class Plan:
    """An upload's chunk plan as this process holds it: the index, which chunks central sends
    (`need`), where each chunk starts (`offsets`, the file's size last) and each digest's first
    chunk (a chunk repeated in the file is taken from its first place). `seen` is the files'
    (mtime, size) when read: another process that planned again makes it stale."""

    index: ChunkIndex
    need: bytearray
    offsets: list[int]
    firsts: dict[bytes, int]
    seen: tuple = ()

    @classmethod
    def of(cls, index: ChunkIndex, need: bytearray) -> "Plan":
        firsts: dict[bytes, int] = {}
        for number, digest in enumerate(index.digests):
            firsts.setdefault(digest, number)
        return cls(index, need, [*index.offsets(), index.size], firsts)


def _stamp(store: UploadStore, uid: str) -> tuple:
    stamps = []
    for path in (_plan_path(store, uid), _need_path(store, uid)):
        st = os.stat(path)
        stamps.append((st.st_mtime_ns, st.st_size))
    return tuple(stamps)


def _save_plan(store: UploadStore, uid: str, plan: Plan, packed: bytes | None = None) -> None:
    if packed is not None:
        _write_atomic(_plan_path(store, uid), packed)
    _write_atomic(_need_path(store, uid), bytes(plan.need))
    plan.seen = _stamp(store, uid)
    store.plans[uid] = plan


def _load_plan(store: UploadStore, uid: str) -> Plan | None:
    """The upload's plan: kept in this process while its files are unchanged, else read."""
    try:
        stamp = _stamp(store, uid)
    except OSError:
        return None
    held = store.plans.get(uid)
    if held is not None and held.seen == stamp:
        return held
    try:
        with open(_plan_path(store, uid), "rb") as fh:
            index = ChunkIndex.unpack(fh.read())
        with open(_need_path(store, uid), "rb") as fh:
            need = bytearray(fh.read())
    except (OSError, DepotError):
        return None
    if len(need) != len(index):
        return None
    plan = Plan.of(index, need)
    plan.seen = stamp
    store.plans[uid] = plan
    return plan


def _status(upload, plan: Plan) -> dict:
    """What central needs to go on: where assembly stands and which chunks to send from there."""
    ranges: list[list[int]] = []
    need = plan.need
    for number in range(upload.assembled, len(need)):
        if need[number]:
            if ranges and ranges[-1][1] == number:
                ranges[-1][1] = number + 1
            else:
                ranges.append([number, number + 1])
    reused = sum(length for length, needed in zip(plan.index.lengths, need) if not needed)
    return dict(upload.to_dict(), chunks=len(need), done=upload.assembled, need=ranges,
                reused_bytes=reused)


class Sources:
    """Where the node holds a chunk now: files under the root by the chunk store and hash cache,
    or earlier in the file being built."""

    def __init__(self, root: str, chunks: ChunkStore):
        self.root, self.chunks = root, chunks
        self.cache = inventory.HashCache(root)
        self._paths: dict[str, str | None] = {}

    def close(self) -> None:
        self.cache.close()

    def path_of(self, sha256: str) -> str | None:
        """A file under the root that holds this version now (size and time as last hashed)."""
        if sha256 not in self._paths:
            self._paths[sha256] = None
            for rel, size, mtime_ns in self.cache.conn.execute(
                    "SELECT path, size, mtime_ns FROM files WHERE sha256 = ?", (sha256,)):
                try:
                    st = os.stat(confine(self.root, rel))
                except (OSError, DepotError):
                    continue
                if (st.st_size, st.st_mtime_ns) == (size, mtime_ns):
                    self._paths[sha256] = rel
                    break
        return self._paths[sha256]

    def find(self, digests) -> dict[bytes, tuple[str, str, int]]:
        """{digest: (file SHA-256, relative path, offset)} for the chunks some file holds."""
        found = {}
        for digest, places in self.chunks.locate(digests).items():
            for sha, offset, _length in places:
                rel = self.path_of(sha)
                if rel is not None:
                    found[digest] = (sha, rel, offset)
                    break
        return found


def plan(store: UploadStore, root: str, uid: str, packed: bytes) -> dict:
    """Take the new file's chunk index for an upload and say which chunks the node lacks. The same
    index again (a sender resuming) keeps what was assembled; another one starts over."""
    with store._locked(uid) as (fd, upload):
        index = ChunkIndex.unpack(packed, upload.size)
        saved = _load_plan(store, uid)
        if saved is not None and saved.index == index and upload.delta:
            upload.halted = False
            store._save(upload)
            return _status(upload, saved)
        found = _find(root, list(index.digests))
        need, seen = bytearray(len(index)), set()
        for number, digest in enumerate(index.digests):
            need[number] = 0 if digest in found or digest in seen else 1
            seen.add(digest)
        with store.pending_lock:  # batches gathered for another plan mean nothing now
            store.pending.pop(uid, None)
        fresh = Plan.of(index, need)
        _save_plan(store, uid, fresh, packed)
        os.ftruncate(fd, 0)
        upload.delta, upload.assembled, upload.ranges, upload.halted = True, 0, [], False
        store.running.pop(uid, None)
        store._save(upload)
        return _status(upload, fresh)


def assemble(store: UploadStore, root: str, uid: str, first: int, last: int,
             read: Callable[[int], bytes]) -> dict:
    """Build chunks [first, last) of a planned upload: the ones the plan says the node lacks are
    read, in order, from `read` (the request body); the others from the node's own files.

    Two steps. First, at the same time as other batches: every chunk of the batch is gathered,
    checked against its SHA-256 and written at its place in the part file; the answer goes back
    then, so the sender keeps its batches in flight. Second, strictly in order: the batch's bytes
    go into the whole file's running SHA-256 and assembly moves past them (`drain`, done by
    whichever request finds the next batch ready; `finish` waits for it). At most MAX_PENDING
    gathered batches of an upload wait in memory for their turn."""
    _wait_for_room(store, uid, first)
    try:
        gathered = _gather(store, root, uid, first, last, read)
    except DepotError:
        _halt(store, uid, first)
        raise
    if gathered.runs:
        with store.pending_lock:
            store.pending.setdefault(uid, {})[first] = gathered
    drain(store, root, uid)
    if gathered.failed_at is not None:
        _fail(store, root, uid, gathered)
    upload = store.get(uid)
    return dict(upload.to_dict(), done=upload.assembled)


def _wait_for_room(store: UploadStore, uid: str, first: int) -> None:
    """Hold a batch back while MAX_PENDING others of its upload wait for their turn in memory
    (never the batch assembly waits for)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        upload = store._load(uid)
        if upload is not None and upload.halted:
            raise OutOfTurn(f"assembly of {upload.path} stopped at chunk {upload.assembled}: plan "
                            "again (PUT .../index), then send from there")
        with store.pending_lock:
            waiting = store.pending.get(uid, {})
            if len(waiting) < MAX_PENDING or store.frontiers.get(uid) in (None, first):
                return
        if time.monotonic() > deadline:
            raise OutOfTurn(f"the chunks before {first} of this upload did not arrive; assembly "
                            f"stands at chunk {store.frontiers.get(uid)}")
        with store.turns:
            store.turns.wait(0.2)


def drain(store: UploadStore, root: str, uid: str, wait: bool = False) -> None:
    """Take the gathered batches that are next in order into the running hash, as long as there
    are; with `wait`, also after the drain another request is doing (finish needs it done)."""
    with store.pending_lock:
        lock = store.draining.setdefault(uid, threading.Lock())
    while True:
        if not lock.acquire(timeout=WAIT_SECONDS if wait else 0):
            if wait:
                raise Conflict("the upload's batches are still being assembled; ask again")
            return
        try:
            frontier = _drain_locked(store, uid)
        finally:
            lock.release()
            with store.turns:
                store.turns.notify_all()
        with store.pending_lock:  # a batch that came while we held the lock, and found it taken
            if frontier is None or frontier not in store.pending.get(uid, {}):
                return


def _drain_locked(store: UploadStore, uid: str) -> int | None:
    try:
        with store._locked(uid, shared=True) as (fd, upload):
            plan = _load_plan(store, uid) if upload.delta else None
            if plan is None:
                return None
            while True:
                with store.pending_lock:
                    batch = store.pending.get(uid, {}).pop(upload.assembled, None)
                if batch is None:
                    store.frontiers[uid] = upload.assembled
                    return upload.assembled
                _take_turn(store, fd, upload, plan, batch)
    except NotFound:
        return None


def _fail(store: UploadStore, root: str, uid: str, batch: "_Gathered") -> None:
    """A batch that stopped at a chunk: what was good before it stays; the batches after it stop
    waiting (until central plans again); a chunk the plan took from a local file that is not
    there as it was is given up."""
    with store._locked(uid) as (_fd, upload):
        upload.halted = True
        store._save(upload)
        plan = _load_plan(store, uid)
        if not batch.damaged and plan is not None:
            with ChunkStore(root, locate=True) as chunks:
                sources = Sources(root, chunks)
                try:
                    _give_up_source(store, upload, plan, chunks, sources, batch.place,
                                    batch.failed_at)
                finally:
                    sources.close()
    with store.turns:
        store.turns.notify_all()
    if batch.damaged:
        raise DigestMismatch(f"chunk {batch.failed_at} arrived damaged (its SHA-256 differs); "
                             "nothing of it was kept")
    raise ChunkUnavailable(f"chunk {batch.failed_at} of {upload.path} is no longer held as "
                           "planned at this node; plan again to have it sent")


def _halt(store: UploadStore, uid: str, first: int) -> None:
    """A batch that could not be gathered: assembly will not get past it until central plans
    again (which it does when this batch's request fails)."""
    try:
        with store._locked(uid) as (_fd, upload):
            if upload.assembled <= first:
                upload.halted = True
                store._save(upload)
    except DepotError:
        return
    with store.turns:
        store.turns.notify_all()


@dataclass
class _Gathered:
    """A batch's chunks, checked and written: runs (first chunk, end, bytes or None for a repeat
    of a chunk assembled before it, read in its turn), then what stopped it, if anything."""

    first: int
    last: int
    runs: list
    failed_at: int | None = None
    damaged: bool = False  # the chunk at failed_at arrived damaged (else: not held as planned)
    place: tuple | None = None  # where the plan found the chunk that was not there


def _gather(store: UploadStore, root: str, uid: str, first: int, last: int,
            read: Callable[[int], bytes]) -> _Gathered:
    """Step one of a batch, beside the others: its chunks from the body and the node's files,
    each checked, written at its place (under the upload's shared lock)."""
    with part_shared(store._part(uid), uid) as fd:
        upload = store._load(uid)
        plan = _load_plan(store, uid) if upload is not None and upload.delta else None
        if plan is None or not _still_ours(store, uid, fd):
            raise Conflict("the upload has no chunk plan: send its index first (PUT .../index)")
        if not 0 <= first < last <= len(plan.need):
            raise Conflict(f"chunks {first} to {last} are not chunks of this upload "
                           f"(0 to {len(plan.need)})")
        batch = _Gathered(first, last, [])
        if upload.assembled >= last:
            return batch
        index, need, offsets = plan.index, plan.need, plan.offsets
        found = _find(root, [index.digests[k] for k in range(first, last) if not need[k]])
        number = first
        while number < last:
            if need[number]:
                end, data = _receive_run(read, index, need, number, last)
            elif plan.firsts[index.digests[number]] < number and index.digests[number] not in found:
                if plan.firsts[index.digests[number]] < first:  # assembled before this batch
                    end, data = number + 1, None
                else:  # earlier in this very batch: its bytes are at hand
                    end, data = number + 1, _bytes_of(batch, plan, plan.firsts[index.digests[number]])
            else:
                end, data = _local_run(root, plan, found, number, last)
                if data is None:
                    batch.failed_at, batch.place = number, found.get(index.digests[number])
                    break
            if data is not None:
                # Received chunks are checked now; the node's own were checked when its scan
                # indexed them, and one damaged since shows in the whole file's SHA-256
                # (check_assembled), which costs no second pass over every byte reused.
                good = _good_prefix(data, index.lengths[number:end], index.digests[number:end]) \
                    if need[number] else end - number
                if good:
                    cut = offsets[number + good] - offsets[number]
                    fileio.pwrite(fd, memoryview(data)[:cut], offsets[number])
                    fileio.write_back_soon(fd, offsets[number], cut)  # a short fsync at finish
                    batch.runs.append((number, number + good, data[:cut] if good < end - number
                                       else data))
                if good < end - number:
                    batch.failed_at, batch.damaged = number + good, bool(need[number + good])
                    batch.place = found.get(index.digests[number + good])
                    break
            else:
                batch.runs.append((number, end, None))
            number = end
        return batch


def _find(root: str, digests: list[bytes]) -> dict:
    """Sources.find in a store opened for it (none opened for no digests: a first copy's
    batches)."""
    if not digests:
        return {}
    with ChunkStore(root, locate=True) as chunks:
        sources = Sources(root, chunks)
        try:
            return sources.find(digests)
        finally:
            sources.close()


def _still_ours(store: UploadStore, uid: str, fd: int) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(store._part(uid)).st_ino
    except FileNotFoundError:
        return False


def _bytes_of(batch: _Gathered, plan: Plan, number: int) -> bytes | None:
    """The bytes of chunk `number`, gathered earlier in this batch (None if it was not)."""
    for start, end, data in batch.runs:
        if start <= number < end and data is not None:
            at = plan.offsets[number] - plan.offsets[start]
            return data[at:at + plan.index.lengths[number]]
    return None


def _take_turn(store: UploadStore, fd: int, upload, plan: Plan, batch: _Gathered) -> None:
    """Step two, in order: the batch's bytes go into the whole file's running SHA-256 and
    assembly moves past them; repeats of chunks assembled before are read back here (one not as
    it should be becomes needed, and the upload halts until central plans again)."""
    index, offsets = plan.index, plan.offsets
    digest = _running_hash(store, fd, upload, offsets[batch.first])
    store.running.pop(upload.id, None)
    number = batch.first
    for start, end, data in batch.runs:
        if data is None:  # a repeat of an earlier chunk of this file, assembled by now
            data = fileio.pread(fd, index.lengths[start], offsets[plan.firsts[index.digests[start]]])
            if _good_prefix(data, index.lengths[start:end], index.digests[start:end]) < 1:
                plan.need[start] = 1
                _save_plan(store, upload.id, plan)
                upload.halted = True
                break
            fileio.pwrite(fd, data, offsets[start])
        digest.update(data)
        number = end
    upload.assembled = number
    upload.ranges = [[0, offsets[number]]] if offsets[number] else []
    store._save(upload)
    store.running[upload.id] = (number, digest)


def _running_hash(store: UploadStore, fd: int, upload, offset: int):
    """The SHA-256 of the assembled part so far: kept in this process, else hashed once."""
    held = store.running.get(upload.id)
    if held is not None and held[0] == upload.assembled:
        return held[1]
    digest, position = hashlib.sha256(), 0
    while position < offset:
        block = fileio.pread(fd, min(READ_CHUNK, offset - position), position)
        if not block:
            raise Conflict(f"the partial upload of {upload.path} is shorter than recorded; it "
                           "starts over")
        digest.update(block)
        position += len(block)
    return digest


def _good_prefix(data, lengths, digests) -> int:
    """How many of the chunks laid end to end in `data` match their SHA-256, from the first."""
    view, position = memoryview(data), 0
    for number, (length, expected) in enumerate(zip(lengths, digests)):
        piece = view[position:position + length]
        if len(piece) != length or hashlib.sha256(piece).digest() != expected:
            return number
        position += length
    return len(lengths)


def _receive_run(read: Callable[[int], bytes], index: ChunkIndex, need: bytearray, number: int,
                 last: int) -> tuple[int, bytes]:
    """Consecutive chunks the plan has sent, from the request body (up to RUN_BYTES at once)."""
    end, length = number, 0
    while end < last and need[end] and (length == 0 or length + index.lengths[end] <= RUN_BYTES):
        length += index.lengths[end]
        end += 1
    parts, got = [], 0
    while got < length:
        block = read(length - got)
        if not block:
            at = number
            while got >= index.lengths[at]:
                got -= index.lengths[at]
                at += 1
            raise DepotError(f"the batch ended inside chunk {at} ({got} of its "
                             f"{index.lengths[at]} bytes)", code="short_batch")
        parts.append(block)
        got += len(block)
    return end, b"".join(parts) if len(parts) > 1 else parts[0]


def _local_run(root: str, plan: Plan, found: dict, number: int, last: int):
    """Chunks from `number` on that one local file holds back to back (up to RUN_BYTES), read at
    once: (chunk number after the run, bytes), or (number, None) if the first is not there."""
    index, need = plan.index, plan.need
    place = found.get(index.digests[number])
    if place is None:
        return number, None
    _sha, rel, start = place
    end, length = number + 1, index.lengths[number]
    while end < last and not need[end] and length + index.lengths[end] <= RUN_BYTES:
        nxt = found.get(index.digests[end])
        if nxt is None or nxt[1] != rel or nxt[2] != start + length:
            break
        length += index.lengths[end]
        end += 1
    try:
        src = open_no_follow(confine(root, rel))
        try:
            data = fileio.pread(src, length, start)
        finally:
            os.close(src)
    except (OSError, DepotError):
        return number, None
    return end, data


def _give_up_source(store, upload, plan: Plan, chunks, sources, place, number) -> None:
    """The chunk at `number` could not be taken where the plan found it (`place`): the node
    forgets what it knew of that file (hashed again by the next scan, which then reports it as
    it is), and every chunk from there on that no other file holds becomes needed."""
    index, need, firsts = plan.index, plan.need, plan.firsts
    if place is not None:
        sha, rel, _offset = place
        chunks.forget([sha])
        sources.cache.forget([rel])
        sources._paths.pop(sha, None)
    rest = [k for k in range(number, len(index)) if not need[k]]
    still = sources.find([index.digests[k] for k in rest])
    for k in rest:
        digest = index.digests[k]
        if digest not in still and firsts[digest] >= number:
            need[k] = 1 if firsts[digest] == k else need[k]
    need[number] = 1
    _save_plan(store, upload.id, plan)


def check_assembled(store: UploadStore, root: str, uid: str) -> None:
    """Before finish: a fully assembled delta whose running SHA-256 is not the file's took a chunk
    from a node file that is no longer what the node's scan indexed (bit rot). Only then are the
    assembled chunks read back and checked, once; each damaged one's source file is given up
    (forgotten, so its next scan hashes it again and a verify reports it), assembly goes back to
    the first of them, and ChunkUnavailable has central plan again and send them. Nothing
    damaged found: store.finish finds the mismatch itself and discards the upload."""
    with store._locked(uid) as (fd, upload):
        plan = _load_plan(store, uid) if upload.delta else None
        held = store.running.get(uid)
        if plan is None or held is None or held[0] != len(plan.need) \
                or held[1].hexdigest() == upload.sha256:
            return
        bad = _damaged_chunks(fd, plan)
        if not bad:
            return
        with ChunkStore(root, locate=True) as chunks:
            sources = Sources(root, chunks)
            try:
                for number in bad:
                    digest = plan.index.digests[number]
                    _give_up_source(store, upload, plan, chunks, sources,
                                    sources.find([digest]).get(digest), number)
            finally:
                sources.close()
        first = bad[0]
        upload.assembled, upload.halted = first, True
        upload.ranges = [[0, plan.offsets[first]]] if plan.offsets[first] else []
        store.running.pop(uid, None)
        store._save(upload)
    raise ChunkUnavailable(f"chunk {first} of {upload.path} was taken from a file at this node "
                           "that is damaged; plan again to have it sent")


def _damaged_chunks(fd: int, plan: Plan) -> list[int]:
    """The assembled chunks whose bytes do not match their SHA-256, read back in runs."""
    index, offsets, bad = plan.index, plan.offsets, []
    number = 0
    while number < len(index):
        end = number + 1
        while end < len(index) and offsets[end + 1] - offsets[number] <= RUN_BYTES:
            end += 1
        data = fileio.pread(fd, offsets[end] - offsets[number], offsets[number])
        at = 0
        for k in range(number, end):
            if hashlib.sha256(memoryview(data)[at:at + index.lengths[k]]).digest() != \
                    index.digests[k]:
                bad.append(k)
            at += index.lengths[k]
        number = end
    return bad


def index_of(store: UploadStore, uid: str) -> ChunkIndex | None:
    """The chunk index a delta upload was planned with (None for a whole-file upload)."""
    saved = _load_plan(store, uid)
    return saved.index if saved else None
