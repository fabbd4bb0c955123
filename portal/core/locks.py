"""Shared and exclusive locks on a DP node's files, on every system the node runs on.

Where the system has flock (Linux, macOS) the lock lives on the open file, so gunicorn's worker
processes take turns too. Where it has not (Windows: no `fcntl`), a node is one waitress process
and the lock is held between its threads, by the file's path, and taken *before* the file is
opened: Windows refuses to rename a file that is open, so nobody may hold an upload's part open
while waiting for the finish that renames it (`Held.close_early` lets the finish itself
close it, still locked).
"""
import errno
import os
import threading
from contextlib import contextmanager
from typing import Iterator

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

O_BINARY = getattr(os, "O_BINARY", 0)  # Windows opens in text mode without it


class _SharedLock:
    """Many sharers or one holder, no preference between them (as flock)."""

    def __init__(self):
        self.turn = threading.Condition()
        self.sharers = 0
        self.exclusive = False
        self.users = 0  # holders and waiters: the table forgets the lock at 0 (under its guard)

    def acquire(self, shared: bool, blocking: bool) -> bool:
        with self.turn:
            while self.exclusive or (not shared and self.sharers):
                if not blocking:
                    return False
                self.turn.wait()
            if shared:
                self.sharers += 1
            else:
                self.exclusive = True
            return True

    def release(self, shared: bool) -> None:
        with self.turn:
            if shared:
                self.sharers -= 1
            else:
                self.exclusive = False
            self.turn.notify_all()


_table: dict[str, _SharedLock] = {}
_table_guard = threading.Lock()


@contextmanager
def _thread_lock(path, shared: bool, blocking: bool) -> Iterator[None]:
    key = os.path.normcase(os.path.abspath(os.fsdecode(path)))
    with _table_guard:
        lock = _table.setdefault(key, _SharedLock())
        lock.users += 1
    try:
        if not lock.acquire(shared, blocking):
            raise BlockingIOError(errno.EWOULDBLOCK, f"{os.fsdecode(path)} is locked")
        try:
            yield
        finally:
            lock.release(shared)
    finally:
        with _table_guard:
            lock.users -= 1
            if not lock.users:
                del _table[key]


class Held:
    """An open, locked file: `fd` (-1 once closed early)."""

    def __init__(self, fd: int):
        self.fd = fd

    def close_early(self) -> None:
        """Close the file now, still locked, where the lock does not live on it (Windows, which
        renames and removes no open file); with flock it stays open, and POSIX minds nothing."""
        if not ON_FILE and self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@contextmanager
def open_locked(path, flags: int, shared: bool = False, blocking: bool = True) -> Iterator[Held]:
    """`os.open(path, flags)` (binary), locked shared or exclusively until the block ends.
    FileNotFoundError as os.open raises it; BlockingIOError when not `blocking` and held."""
    if ON_FILE:
        held = Held(os.open(path, flags | O_BINARY, 0o666))
        try:
            op = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
            fcntl.flock(held.fd, op if blocking else op | fcntl.LOCK_NB)
            yield held
        finally:
            os.close(held.fd)
        return
    with _thread_lock(path, shared, blocking):
        held = Held(os.open(path, flags | O_BINARY, 0o666))
        try:
            yield held
        finally:
            if held.fd >= 0:
                os.close(held.fd)


ON_FILE = fcntl is not None
