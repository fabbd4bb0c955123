"""The DP node's inventory: the central rescan's walker and hashing pool, with a hash cache on disk.

The cache (`<root>/.depot/hashes.sqlite`) remembers each file's size, mtime and SHA-256, so a
scan hashes only what changed since the last one, and hashes are saved as they are made: a scan
cut off half-way resumes cheaply. The scan is streamed as JSON lines, so a long first scan of a
big root keeps its connection busy with progress instead of timing out.
"""
import os
import sqlite3
import threading
import time
from contextlib import ExitStack, closing
from typing import Iterator

from portal.core import locks
from portal.core.chunks import wants_index
from portal.core.chunkstore import ChunkStore
from portal.core.files import ContentRoot
from portal.core.hashing import Reader, hash_files
from portal.dpnode.uploads import STATE_DIR

SAVE_EVERY = 500
PROGRESS_SECONDS = 1.0
KEEPALIVE_SECONDS = 5.0  # longest silence while waiting for the root or listing it


class HashCache:
    """(size, mtime_ns) -> SHA-256 for every file of the root, in SQLite beside the uploads."""

    def __init__(self, root: str):
        path = os.path.join(root, STATE_DIR, "hashes.sqlite")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.conn = sqlite3.connect(path, timeout=30, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER, "
                          "mtime_ns INTEGER, sha256 TEXT)")

    def all(self) -> dict[str, tuple[int, int, str]]:
        return {path: (size, mtime_ns, sha) for path, size, mtime_ns, sha
                in self.conn.execute("SELECT path, size, mtime_ns, sha256 FROM files")}

    def put(self, rows: list[tuple[str, int, int, str]]) -> None:
        with self.conn:
            self.conn.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)", rows)

    def forget(self, paths: list[str]) -> None:
        with self.conn:
            self.conn.executemany("DELETE FROM files WHERE path = ?", [(p,) for p in paths])

    def close(self) -> None:
        self.conn.close()


def remember(root: str, path: str, size: int, mtime_ns: int, sha256: str) -> None:
    """Note a file the node wrote itself (a finished upload), so no scan hashes it again."""
    cache = HashCache(root)
    try:
        cache.put([(path, size, mtime_ns, sha256)])
    finally:
        cache.close()


def known_sha256(root: str, path: str, size: int, mtime_ns: int) -> str | None:
    """The file's SHA-256 if the cache knows this very version of it."""
    cache = HashCache(root)
    try:
        row = cache.conn.execute("SELECT size, mtime_ns, sha256 FROM files WHERE path = ?",
                                 (path,)).fetchone()
    finally:
        cache.close()
    return row[2] if row and tuple(row[:2]) == (size, mtime_ns) else None


def scan(root: str, threads: int = 2, verify: bool = False) -> Iterator[dict]:
    """Every file under the library folders as records, hashing only what the cache lacks.

    Records: `waiting` and `listing` (still alive), `start` (counts), `file` (path, size,
    mtime_ns, sha256 or error), `progress`, `problem` (something skipped), and last `end` with
    the disk's space. A listener that sees no
    `end` must treat the scan as cut off. With `verify`, every file is hashed again, whatever the
    cache says. One scan at a time per root (others wait).
    """
    lock_path = os.path.join(root, STATE_DIR, "inventory.lock")
    os.makedirs(os.path.dirname(lock_path), exist_ok=True)
    with ExitStack() as held:
        waited = time.monotonic()
        while True:  # another scan holds the root: say so now and then, so no reader times out
            try:
                held.enter_context(locks.open_locked(lock_path, os.O_RDWR | os.O_CREAT,
                                                     blocking=False))
                break
            except BlockingIOError:
                if time.monotonic() - waited >= KEEPALIVE_SECONDS:
                    waited = time.monotonic()
                    yield {"type": "waiting", "reason": "another scan of this root is running"}
                time.sleep(0.2)
        cache, chunks = HashCache(root), ChunkStore(root, locate=True)
        try:
            yield from _scan(root, cache, chunks, threads, verify)
        finally:
            cache.close()
            chunks.close()


def _scan(root: str, cache: HashCache, chunks: ChunkStore, threads: int,
          verify: bool) -> Iterator[dict]:
    backend = ContentRoot(root)
    backend.ensure_layout()
    problems: list[str] = []
    entries, last_word = [], time.monotonic()
    for entry in backend.walk(problems):
        entries.append(entry)
        if time.monotonic() - last_word >= KEEPALIVE_SECONDS:  # a big tree takes a while
            last_word = time.monotonic()
            yield {"type": "listing", "files": len(entries)}
    known = cache.all()
    indexed = chunks.known()
    to_hash = []
    for entry in entries:
        hit = known.get(entry.path)
        if verify or hit is None or hit[:2] != (entry.size, entry.mtime_ns) or (
                wants_index(entry.size) and hit[2] not in indexed):  # hashed before indexes
            to_hash.append(entry)
    yield {"type": "start", "files": len(entries), "files_to_hash": len(to_hash),
           "bytes_to_hash": sum(e.size for e in to_hash)}
    hashed = {e.path for e in to_hash}
    for entry in entries:
        if entry.path not in hashed:
            yield _file(entry, known[entry.path][2])

    reader = Reader(0, threading.Event(), chunk=True)
    pending: list[tuple[str, int, int, str]] = []
    files_done, last_progress = 0, time.monotonic()
    stream = hash_files(backend, to_hash, reader, max(1, threads))
    with closing(stream):  # a listener that hangs up stops the hashing threads
        for results in stream:
            for result in results:
                files_done += 1
                if result.vanished:
                    problems.append(f"{result.entry.path}: vanished during the scan")
                    continue
                if result.sha256:
                    pending.append((result.entry.path, result.entry.size, result.entry.mtime_ns,
                                    result.sha256))
                    if result.index is not None and result.sha256 not in indexed:
                        chunks.put(result.sha256, result.index)
                        indexed.add(result.sha256)
                yield _file(result.entry, result.sha256, result.error)
            if len(pending) >= SAVE_EVERY:
                cache.put(pending)
                pending.clear()
            if time.monotonic() - last_progress >= PROGRESS_SECONDS:
                last_progress = time.monotonic()
                yield {"type": "progress", "files_done": files_done, "bytes_done": reader.bytes_read}
    cache.put(pending)
    present = {e.path for e in entries}
    cache.forget([path for path in known if path not in present])
    chunks.prune({sha for _path, (_size, _mtime, sha) in cache.all().items()})
    for problem in problems:
        yield {"type": "problem", "message": problem}
    free, total = backend.space()
    yield {"type": "end", "files": len(entries), "files_hashed": len(to_hash),
           "free_bytes": free, "total_bytes": total}


def _file(entry, sha256: str | None, error: str | None = None) -> dict:
    return {"type": "file", "path": entry.path, "size": entry.size, "mtime_ns": entry.mtime_ns,
            "sha256": sha256, "error": error}
