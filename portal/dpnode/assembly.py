"""Delta uploads at a DP node: a new file built from chunks the node already holds and the ones
central sends, checked as it is built.

Central announces the new file's chunk index (`plan`); the node answers which chunks it lacks,
looking for each one in every file under its root (the old version of the same file, another
edition of the image, a hand-copied file) and earlier in the same file. Central then sends the
lacking chunks in batches that cover chunk numbers [first, last), several in flight; the node
assembles the file strictly in order in the upload's part file: each chunk, taken from a local
file or from the request, is checked against its SHA-256 as it is written, and the whole file's
SHA-256 is computed as it grows, so `finish` needs no read-back pass. A batch that arrives before
its turn waits for the batches before it.

How far assembly got (`Upload.assembled`, a chunk number) is saved after every batch and every
`SAVE_BYTES`, so a sender or node that was killed resumes at chunk granularity; the running hash
lives in the node's process (`UploadStore.running`), and a node that lost it (restarted) hashes
the assembled part once. A local chunk whose bytes no longer match (bit rot in the file it was
taken from, or a file changed since the node's last scan) is not used: the node marks it needed,
forgets what it knew of that file (its next scan hashes it again, and a verify reports it) and
answers `chunk_unavailable`, so central plans again and sends it.
"""
import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from portal.core import fileio
from portal.core.chunks import ChunkIndex
from portal.core.chunkstore import ChunkStore
from portal.core.errors import Conflict, DepotError, DigestMismatch
from portal.core.files import open_no_follow
from portal.core.paths import confine
from portal.dpnode import inventory
from portal.dpnode.uploads import READ_CHUNK, UploadStore

SAVE_BYTES = 64 * 1024 * 1024  # progress saved at least this often while a batch is assembled
RUN_BYTES = 8 * 1024 * 1024  # local chunks read in runs of up to this much
WAIT_SECONDS = 60  # how long a batch waits for the batches before it


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


def _load_plan(store: UploadStore, uid: str) -> tuple[ChunkIndex, bytearray] | None:
    try:
        with open(_plan_path(store, uid), "rb") as fh:
            index = ChunkIndex.unpack(fh.read())
        with open(_need_path(store, uid), "rb") as fh:
            need = bytearray(fh.read())
    except (OSError, DepotError):
        return None
    return (index, need) if len(need) == len(index) else None


def _status(upload, index: ChunkIndex, need: bytearray) -> dict:
    """What central needs to go on: where assembly stands and which chunks to send from there."""
    ranges: list[list[int]] = []
    for number in range(upload.assembled, len(index)):
        if need[number]:
            if ranges and ranges[-1][1] == number:
                ranges[-1][1] = number + 1
            else:
                ranges.append([number, number + 1])
    reused = sum(length for length, needed in zip(index.lengths, need) if not needed)
    return dict(upload.to_dict(), chunks=len(index), done=upload.assembled, need=ranges,
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
        if saved is not None and saved[0] == index and upload.delta:
            upload.halted = False
            store._save(upload)
            return _status(upload, *saved)
        with ChunkStore(root, locate=True) as chunks:
            sources = Sources(root, chunks)
            try:
                found = sources.find(index.digests)
            finally:
                sources.close()
        need, seen = bytearray(len(index)), set()
        for number, digest in enumerate(index.digests):
            need[number] = 0 if digest in found or digest in seen else 1
            seen.add(digest)
        _write_atomic(_plan_path(store, uid), packed)
        _write_atomic(_need_path(store, uid), bytes(need))
        os.ftruncate(fd, 0)
        upload.delta, upload.assembled, upload.ranges, upload.halted = True, 0, [], False
        store.running.pop(uid, None)
        store._save(upload)
        return _status(upload, index, need)


def assemble(store: UploadStore, root: str, uid: str, first: int, last: int,
             read: Callable[[int], bytes]) -> dict:
    """Build chunks [first, last) of a planned upload: the ones the plan says the node lacks are
    read, in order, from `read` (the request body); the others from the node's own files. Waits
    (up to WAIT_SECONDS) for the batches before it."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        with store._locked(uid) as (fd, upload):
            saved = _load_plan(store, uid) if upload.delta else None
            if saved is None:
                raise Conflict(f"the upload of {upload.path} has no chunk plan: send its index "
                               "first (PUT .../index)")
            index, need = saved
            if not 0 <= first < last <= len(index):
                raise Conflict(f"chunks {first} to {last} are not chunks of this upload "
                               f"(0 to {len(index)})")
            if upload.assembled >= last:  # sent again after its answer was lost: done already
                return _status(upload, index, need)
            if upload.assembled == first:
                upload.halted = False
                try:
                    _build(store, root, fd, upload, index, need, first, last, read)
                except DepotError:
                    upload.halted = True  # the batches after this one stop waiting
                    store._save(upload)
                    raise
                return _status(upload, index, need)
            if upload.assembled > first or upload.halted:
                raise OutOfTurn(f"assembly of {upload.path} stands at chunk {upload.assembled}, "
                                f"not at this batch's first ({first}): send from there")
        if time.monotonic() > deadline:
            raise OutOfTurn(f"the chunks before {first} of this upload did not arrive; assembly "
                            f"stands at chunk {upload.assembled}")
        time.sleep(0.02)


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


def _build(store: UploadStore, root: str, fd: int, upload, index: ChunkIndex, need: bytearray,
           first: int, last: int, read: Callable[[int], bytes]) -> None:
    """Assemble chunks [first, last) in runs: a run of chunks sent in this batch, or of chunks one
    local file holds back to back. Each run is written and added to the whole file's hash while
    another thread checks its chunks' SHA-256 (hashlib lets go of the GIL: two cores work); a run
    with a bad chunk is taken up to that chunk and the hash rewound to match."""
    offsets = [*index.offsets(), upload.size]
    state = _Progress(store, upload, offsets, _running_hash(store, fd, upload, offsets[first]),
                      first)
    store.running.pop(upload.id, None)
    earlier: dict = {}  # chunks of this very file already assembled: a digest's first place
    chunks = ChunkStore(root, locate=True)
    sources = Sources(root, chunks)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chunk-check")
    try:
        found = sources.find([index.digests[k] for k in range(first, last) if not need[k]])
        while state.number < last:
            number = state.number
            if need[number]:
                end, data = _receive_run(read, index, need, number, last)
            else:
                end, data = _local_run(fd, root, index, offsets, need, found, earlier, number,
                                       last)
            good = state.place(fd, pool, index, end, data) if data is not None else 0
            for k in range(number, number + good):
                earlier.setdefault(index.digests[k], (None, offsets[k]))
            if good == end - number:
                continue
            if need[number + good]:
                state.save()
                raise DigestMismatch(f"chunk {number + good} arrived damaged (its SHA-256 "
                                     "differs); nothing of it was kept")
            if good == 0:  # not where the plan found it: central must send it
                _give_up_source(store, upload, need, chunks, sources, found, index, number)
                state.save()
                raise ChunkUnavailable(f"chunk {number} of {upload.path} is no longer held as "
                                       "planned at this node; plan again to have it sent")
    except DepotError:
        state.save()
        raise
    finally:
        pool.shutdown()
        sources.close()
        chunks.close()
    state.save()


class _Progress:
    """Where one batch's assembly stands: the next chunk, the running hash, what is unsaved."""

    def __init__(self, store: UploadStore, upload, offsets: list[int], digest, number: int):
        self.store, self.upload, self.offsets = store, upload, offsets
        self.digest, self.number, self.unsaved = digest, number, 0

    def place(self, fd: int, pool, index: ChunkIndex, end: int, data) -> int:
        """Write chunks [number, end) (their bytes: `data`), hash them into the whole file's
        SHA-256, check each one's; how many from the first were good (those stay placed)."""
        start = self.number
        before = self.digest.copy()
        checked = pool.submit(_good_prefix, data, index.lengths[start:end],
                              index.digests[start:end])
        fileio.pwrite(fd, data, self.offsets[start])
        self.digest.update(data)
        good = checked.result()
        if good < end - start:  # the hash goes back to the last good chunk
            self.digest = before
            self.digest.update(memoryview(data)[:self.offsets[start + good] - self.offsets[start]])
        self.number = start + good
        self.unsaved += self.offsets[self.number] - self.offsets[start]
        if self.unsaved >= SAVE_BYTES:
            self.save()
        return good

    def save(self) -> None:
        upload, number = self.upload, self.number
        upload.assembled = number
        end = self.offsets[number]
        upload.ranges = [[0, end]] if end else []
        self.store._save(upload)
        self.store.running[upload.id] = (number, self.digest)
        self.unsaved = 0


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


def _local_run(fd, root, index, offsets, need, found, earlier, number, last):
    """Chunks from `number` on that one local file holds back to back (up to RUN_BYTES), read at
    once: (chunk number after the run, bytes), or (number, None) if the first is not there."""
    digest = index.digests[number]
    place = earlier.get(digest)
    if place is None and digest in found:
        sha, rel, offset = found[digest]
        place = (rel, offset)
    if place is None:
        for k in range(number):  # a repeat inside this file (found was for other files)
            if index.digests[k] == digest:
                place = (None, offsets[k])
                break
    if place is None:
        return number, None
    rel, start = place
    end, length = number + 1, index.lengths[number]
    while end < last and not need[end] and length + index.lengths[end] <= RUN_BYTES:
        nxt = found.get(index.digests[end])
        if rel is None or nxt is None or nxt[1] != rel or nxt[2] != start + length:
            break
        length += index.lengths[end]
        end += 1
    try:
        if rel is None:
            data = fileio.pread(fd, length, start)
        else:
            src = open_no_follow(confine(root, rel))
            try:
                data = fileio.pread(src, length, start)
            finally:
                os.close(src)
    except (OSError, DepotError):
        return number, None
    return end, data


def _give_up_source(store, upload, need, chunks, sources, found, index, number) -> None:
    """The chunk at `number` could not be taken where the plan found it: the node forgets what it
    knew of the file it was to come from (hashed again by the next scan, which then reports it as
    it is), and every chunk from there on that no other file holds becomes needed."""
    place = found.get(index.digests[number])
    if place is not None:
        sha, rel, _offset = place
        chunks.forget([sha])
        sources.cache.forget([rel])
        sources._paths.pop(sha, None)
    rest = [k for k in range(number, len(index)) if not need[k]]
    still = sources.find([index.digests[k] for k in rest])
    firsts = {}
    for k in range(len(index)):
        firsts.setdefault(index.digests[k], k)
    for k in rest:
        digest = index.digests[k]
        if digest not in still and firsts[digest] >= number:
            need[k] = 1 if firsts[digest] == k else need[k]
    need[number] = 1
    _write_atomic(_need_path(store, upload.id), bytes(need))


def index_of(store: UploadStore, uid: str) -> ChunkIndex | None:
    """The chunk index a delta upload was planned with (None for a whole-file upload)."""
    saved = _load_plan(store, uid)
    return saved[0] if saved else None
