"""Content-defined chunk indexes: what lets a copy send only what changed.

A file's index is the list of its chunks, cut by FastCDC (`pyfastcdc`; min/avg/max 16/64/256
KiB, so an insert or delete moves the cut points with the data instead of shifting every block),
each with its length and SHA-256; offsets follow from the lengths. It is computed in the same read
as the file's SHA-256 (`Chunker` is fed the blocks the hasher reads) and kept, keyed by the
file's SHA-256, in a `ChunkStore` beside the content (see chunkstore.py).

Packed form (on disk and on the wire): `MAGIC`, then per chunk a 4-byte big-endian length and
the 32-byte SHA-256 digest: 36 bytes a chunk, about 2.3 MB for a 5 GiB image.
"""
import hashlib
import queue
import struct
import threading
from dataclasses import dataclass
from typing import Iterator

from portal.core.errors import DepotError

MIN_CHUNK, AVG_CHUNK, MAX_CHUNK = 16 * 1024, 64 * 1024, 256 * 1024
# Smaller files are sent whole: their chunks would save next to nothing.
MIN_INDEXED_SIZE = 1024 * 1024
MAGIC = b"DEPOT-CDC1\n"
RECORD = struct.Struct(">I32s")


class BadIndex(DepotError):
    """A chunk index that does not describe the file it claims to (a 400 at the node)."""

    code, status = "bad_index", 400


@dataclass(frozen=True)
class ChunkIndex:
    """A file's chunks in order: `lengths[i]` bytes with SHA-256 `digests[i]` (32 bytes each)."""

    lengths: tuple[int, ...]
    digests: tuple[bytes, ...]

    @property
    def size(self) -> int:
        return sum(self.lengths)

    def __len__(self) -> int:
        return len(self.lengths)

    def offsets(self) -> list[int]:
        """Where each chunk starts."""
        out, position = [], 0
        for length in self.lengths:
            out.append(position)
            position += length
        return out

    def spans(self) -> Iterator[tuple[int, int, bytes]]:
        """(offset, length, digest) of every chunk in order."""
        position = 0
        for length, digest in zip(self.lengths, self.digests):
            yield position, length, digest
            position += length

    def pack(self) -> bytes:
        return MAGIC + b"".join(RECORD.pack(length, digest)
                                for length, digest in zip(self.lengths, self.digests))

    @classmethod
    def unpack(cls, data: bytes, size: int | None = None) -> "ChunkIndex":
        """Read a packed index; BadIndex (with what is wrong) unless it is well formed and, with
        `size`, its chunks add up to exactly `size` bytes."""
        if not data.startswith(MAGIC):
            raise BadIndex("the chunk index does not start with its format mark "
                           f"({MAGIC.strip().decode()})")
        body = memoryview(data)[len(MAGIC):]
        if len(body) % RECORD.size:
            raise BadIndex(f"the chunk index is cut short: {len(body)} bytes is not a whole "
                           f"number of {RECORD.size}-byte records")
        lengths, digests = [], []
        for length, digest in RECORD.iter_unpack(body):
            if not 1 <= length <= MAX_CHUNK:
                raise BadIndex(f"chunk {len(lengths)} is {length} bytes long; chunks are 1 to "
                               f"{MAX_CHUNK} bytes")
            lengths.append(length)
            digests.append(digest)
        index = cls(tuple(lengths), tuple(digests))
        if size is not None and index.size != size:
            raise BadIndex(f"the chunks add up to {index.size} bytes, not the file's {size}")
        return index


class Chunker:
    """Cuts a stream into content-defined chunks as it is fed, on a thread of its own.

    `update(data)` hands a block over (copied: the caller may reuse its buffer) and returns at
    once; the cutting and each chunk's SHA-256 run beside the caller's own reading and hashing
    (pyfastcdc and hashlib both release the GIL), so where a core is free a big file's index
    costs little more time than its SHA-256. The cuts do not depend on how the stream was read.
    `finish()` gives the index; `close()` lets go of it early (a read failed, a job was
    cancelled). At most QUEUE_BLOCKS blocks wait for the thread: a fast reader waits for it."""

    QUEUE_BLOCKS = 8

    def __init__(self):
        self._blocks: queue.Queue = queue.Queue(self.QUEUE_BLOCKS)
        self._ended = False  # the thread has seen the end of the stream
        self._index: ChunkIndex | None = None
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="chunker", daemon=True)
        self._thread.start()

    def update(self, data) -> None:
        if data:
            self._blocks.put(data if isinstance(data, bytes) else bytes(data))

    def _read(self) -> Iterator[bytes]:
        while (block := self._blocks.get()) is not None:
            yield block
        self._ended = True

    def _run(self) -> None:
        try:
            self._index = _index_of(_cutter().cut_stream(_BlockStream(self._read())))
        except BaseException as exc:  # pragma: no cover - pyfastcdc and hashlib do not fail
            self._error = exc
            while not self._ended and self._blocks.get() is not None:
                pass  # take what is still fed, so the feeder never waits forever

    def finish(self) -> ChunkIndex:
        self.close()
        if self._error is not None:  # pragma: no cover - see _run
            raise self._error
        return self._index

    def close(self) -> None:
        """End the stream and wait for the thread (what it cut so far is dropped by callers that
        close early)."""
        if not self._closed:
            self._closed = True
            self._blocks.put(None)
            self._thread.join()


class _BlockStream:
    """The `readinto` pyfastcdc's stream cutter reads from, over an iterator of blocks."""

    def __init__(self, blocks: Iterator[bytes]):
        self._blocks, self._rest = blocks, memoryview(b"")

    def readinto(self, view) -> int:
        if not self._rest:
            block = next(self._blocks, None)
            if block is None:
                return 0
            self._rest = memoryview(block)
        n = min(len(view), len(self._rest))
        view[:n] = self._rest[:n]
        self._rest = self._rest[n:]
        return n


def _cutter():
    from pyfastcdc import FastCDC  # compiled; only what chunks needs it

    return FastCDC(AVG_CHUNK, min_size=MIN_CHUNK, max_size=MAX_CHUNK)


def _index_of(chunks) -> ChunkIndex:
    lengths, digests = [], []
    for chunk in chunks:
        lengths.append(chunk.length)
        digests.append(hashlib.sha256(chunk.data).digest())
    return ChunkIndex(tuple(lengths), tuple(digests))


def index_bytes(data: bytes) -> ChunkIndex:
    """The index of some bytes held in memory (tests, small files)."""
    return _index_of(_cutter().cut_buf(data))


def wants_index(size: int) -> bool:
    """True for files big enough that a copy may send only their changed chunks."""
    return size >= MIN_INDEXED_SIZE
