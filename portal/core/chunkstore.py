"""Where chunk indexes live: a small SQLite file beside the content, `<root>/.depot/chunks.sqlite`.

Indexes are keyed by the SHA-256 of the file they describe, not by its path: a file copied,
renamed or present twice has one index, and central still has the index of an older version a
DP holds (which an S3 delta copies from). They stay out of the database's hot rows (a 5 GiB
image's index is about 2.3 MB) and next to the bytes they describe, on central and on each DP
node alike. With `locate`, the store also knows where each chunk lies (`chunk_at`), so a DP
node can answer which chunks of a new file it already holds in any of its files.
"""
import os
import sqlite3
from typing import Iterable

from portal.core.chunks import ChunkIndex

STATE_DIR = ".depot"
BATCH = 500


def store_path(root: str) -> str:
    return os.path.join(root, STATE_DIR, "chunks.sqlite")


class ChunkStore:
    """The chunk indexes of one content root (central's, or a DP node's with `locate`)."""

    def __init__(self, root: str, locate: bool = False):
        self.root, self.locating = root, locate
        self._conn: sqlite3.Connection | None = None

    @property
    def conn(self) -> sqlite3.Connection:
        """Opened on first use, so a store of a root that is not there creates nothing."""
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        path = store_path(self.root)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        conn = sqlite3.connect(path, timeout=60, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        with conn:
            conn.execute("CREATE TABLE IF NOT EXISTS indexes (sha256 TEXT PRIMARY KEY, "
                         "size INTEGER NOT NULL, data BLOB NOT NULL)")
            conn.execute("CREATE TABLE IF NOT EXISTS chunk_at (digest BLOB NOT NULL, "
                         "sha256 TEXT NOT NULL, offset INTEGER NOT NULL, length INTEGER NOT NULL)")
            conn.execute("CREATE INDEX IF NOT EXISTS chunk_at_digest ON chunk_at (digest)")
            conn.execute("CREATE INDEX IF NOT EXISTS chunk_at_file ON chunk_at (sha256)")
        return conn

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def get(self, sha256: str) -> ChunkIndex | None:
        row = self.conn.execute("SELECT size, data FROM indexes WHERE sha256 = ?",
                                (sha256,)).fetchone()
        if row is None:
            return None
        try:
            return ChunkIndex.unpack(row[1], row[0])
        except ValueError:  # a damaged record: as good as none, computed again by a scan
            return None

    def has(self, sha256: str) -> bool:
        return self.conn.execute("SELECT 1 FROM indexes WHERE sha256 = ?",
                                 (sha256,)).fetchone() is not None

    def known(self) -> set[str]:
        return {sha for (sha,) in self.conn.execute("SELECT sha256 FROM indexes")}

    def put(self, sha256: str, index: ChunkIndex) -> None:
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO indexes VALUES (?, ?, ?)",
                              (sha256, index.size, index.pack()))
            if self.locating:
                self.conn.execute("DELETE FROM chunk_at WHERE sha256 = ?", (sha256,))
                self.conn.executemany("INSERT INTO chunk_at VALUES (?, ?, ?, ?)",
                                      [(digest, sha256, offset, length)
                                       for offset, length, digest in index.spans()])

    def forget(self, sha256s: Iterable[str]) -> None:
        with self.conn:
            for sha in sha256s:
                self.conn.execute("DELETE FROM indexes WHERE sha256 = ?", (sha,))
                self.conn.execute("DELETE FROM chunk_at WHERE sha256 = ?", (sha,))

    def prune(self, keep: set[str]) -> int:
        """Forget the indexes of files no longer held (SHA-256 not in `keep`); how many went."""
        gone = self.known() - keep
        self.forget(gone)
        return len(gone)

    def locate(self, digests: Iterable[bytes]) -> dict[bytes, list[tuple[str, int, int]]]:
        """Where each chunk lies in the files indexed here: {digest: [(file SHA-256, offset,
        length), ...]} for the digests found."""
        found: dict[bytes, list[tuple[str, int, int]]] = {}
        wanted = list(dict.fromkeys(digests))
        for start in range(0, len(wanted), BATCH):
            part = wanted[start:start + BATCH]
            marks = ",".join("?" * len(part))
            for digest, sha, offset, length in self.conn.execute(
                    f"SELECT digest, sha256, offset, length FROM chunk_at WHERE digest IN ({marks})",
                    part):
                found.setdefault(digest, []).append((sha, offset, length))
        return found
