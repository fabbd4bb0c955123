"""The hashing pool: SHA-256 (and the provider hashes asked for) of many files on a few threads,
small files in batches, with a shared byte count, an optional read-rate cap and a cancel check.
Central's rescans and a DP node's inventory both hash through it."""
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Iterator

from portal.core import fileio
from portal.core.chunks import ChunkIndex, Chunker, wants_index
from portal.core.errors import JobCancelled
from portal.core.files import FileEntry, Readable
from portal.core.hashes import Hasher

CHUNK = 1024 * 1024
TASK_FILES, TASK_BYTES = 64, 8 * CHUNK  # small files go to the hashing threads in batches


@dataclass
class Hashed:
    entry: FileEntry
    sha256: str | None = None
    error: str | None = None
    vanished: bool = False
    hashes: dict | None = None  # provider hashes computed (central) or reported (cloud)
    index: ChunkIndex | None = None  # its chunk index, when the reader asked for indexes


class Reader:
    """Shared byte counter, optional read-rate cap and cancel check for the hashing threads."""

    def __init__(self, rate_limit: int, cancelled: threading.Event, kinds: tuple = (),
                 chunk: bool = False):
        self.rate_limit = rate_limit
        self.kinds = kinds  # provider hashes to compute beside the SHA-256
        self.chunk = chunk  # chunk indexes too, of files big enough to have one
        self.cancelled = cancelled
        self.bytes_read = 0
        self.started = time.monotonic()
        self.lock = threading.Lock()

    def account(self, n: int) -> None:
        with self.lock:
            self.bytes_read += n
            total = self.bytes_read
        if self.cancelled.is_set():
            raise JobCancelled()
        if self.rate_limit:
            ahead = total / self.rate_limit - (time.monotonic() - self.started)
            if ahead > 0:
                time.sleep(min(ahead, 1.0))


def hash_entries(files: Readable, entries: list[FileEntry], reader: Reader) -> list[Hashed]:
    """hash_entry over a few files, sharing one read buffer."""
    buf = bytearray(CHUNK)
    return [hash_entry(files, entry, reader, buf) for entry in entries]


def _tasks(entries: list[FileEntry]) -> Iterator[list[FileEntry]]:
    """The files in groups of up to TASK_FILES or TASK_BYTES (a big file alone)."""
    task, size = [], 0
    for entry in entries:
        if task and (len(task) >= TASK_FILES or size + entry.size > TASK_BYTES):
            yield task
            task, size = [], 0
        task.append(entry)
        size += entry.size
    if task:
        yield task


def hash_entry(files: Readable, entry: FileEntry, reader: Reader,
               buf: bytearray | None = None) -> Hashed:
    """SHA-256 (and the provider hashes the reader asks for) of one file; a file that vanishes,
    cannot be read, or changes meanwhile is noted."""
    hasher = Hasher(reader.kinds)
    chunker = Chunker() if reader.chunk and wants_index(entry.size) else None
    buf = buf or bytearray(CHUNK)
    view = memoryview(buf)
    try:
        with files.open_read(entry) as fh:
            while n := fh.readinto(buf):
                if chunker is not None:  # first: its thread cuts while this one hashes
                    chunker.update(view[:n])
                hasher.update(view[:n])
                reader.account(n)
        now = files.stat(entry)
    except FileNotFoundError:
        return Hashed(entry, vanished=True)
    except OSError as exc:
        return Hashed(entry, error=f"cannot read: {exc.strerror or exc}")
    finally:
        if chunker is not None:
            chunker.close()
    if now is None:
        return Hashed(entry, vanished=True)
    if now != (entry.size, entry.mtime_ns):
        return Hashed(entry, error="changed while being hashed; hashed again by the next scan")
    return Hashed(entry, sha256=hasher.sha256.hexdigest(), hashes=hasher.hashes() or None,
                  index=chunker.finish() if chunker is not None else None)


def hash_fd(fd: int, size: int, cancelled: threading.Event | None = None) -> tuple[str, ChunkIndex]:
    """SHA-256 and chunk index of an open file's first `size` bytes, read once (a copy whose
    file has no index yet computes it so)."""
    hasher, chunker = Hasher(), Chunker()
    position = 0
    try:
        while position < size:
            if cancelled is not None and cancelled.is_set():
                raise JobCancelled()
            block = fileio.pread(fd, min(CHUNK, size - position), position)
            if not block:
                break
            chunker.update(block)
            hasher.update(block)
            position += len(block)
    finally:
        chunker.close()
    return hasher.sha256.hexdigest(), chunker.finish()


def hash_files(files: Readable, entries: list[FileEntry], reader: Reader,
                threads: int) -> Iterator[list[Hashed]]:
    """Hash files on a few threads (hashlib releases the GIL), small ones in batches. Yields results
    as they come, and an empty list at least every half second so callers can report and stop."""
    pending: set = set()
    tasks = _tasks(entries)
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="hash") as pool:
        try:
            while True:
                while len(pending) < threads * 4 and (task := next(tasks, None)) is not None:
                    pending.add(pool.submit(hash_entries, files, task, reader))
                if not pending:
                    return
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                yield [result for fut in done for result in fut.result()]
        except BaseException:  # a failure, a cancel, or the caller stopped listening
            reader.cancelled.set()
            for fut in pending:
                fut.cancel()
            raise
