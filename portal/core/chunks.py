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
import struct
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
    """Cuts a stream into content-defined chunks as it is fed, in whatever blocks the reader
    reads; `finish()` gives the index. A chunk is only taken once `MAX_CHUNK` bytes past its start
    are known (or the stream ended), so the cuts do not depend on how the stream was read."""

    def __init__(self):
        from pyfastcdc import FastCDC  # compiled; only what chunks needs it

        self._cdc = FastCDC(AVG_CHUNK, min_size=MIN_CHUNK, max_size=MAX_CHUNK)
        self._carry = bytearray()
        self.lengths: list[int] = []
        self.digests: list[bytes] = []

    def update(self, data) -> None:
        self._carry += data
        if len(self._carry) >= 2 * MAX_CHUNK:
            self._cut(final=False)

    def _cut(self, final: bool) -> None:
        taken = self._take(final)
        del self._carry[:taken]

    def _take(self, final: bool) -> int:
        """Record the chunks of the carried bytes that are settled; how many bytes they hold.
        (A function of its own: the chunker's views of the buffer are gone when it returns.)"""
        available, taken = len(self._carry), 0
        for chunk in self._cdc.cut_buf(self._carry):
            if not final and available - chunk.offset < MAX_CHUNK:
                break
            self.lengths.append(chunk.length)
            self.digests.append(hashlib.sha256(chunk.data).digest())
            taken = chunk.offset + chunk.length
        return taken

    def finish(self) -> ChunkIndex:
        if self._carry:
            self._cut(final=True)
        return ChunkIndex(tuple(self.lengths), tuple(self.digests))


def index_bytes(data: bytes) -> ChunkIndex:
    """The index of some bytes held in memory (tests, small files)."""
    chunker = Chunker()
    chunker.update(data)
    return chunker.finish()


def wants_index(size: int) -> bool:
    """True for files big enough that a copy may send only their changed chunks."""
    return size >= MIN_INDEXED_SIZE
