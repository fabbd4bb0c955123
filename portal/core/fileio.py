"""Positioned reads and writes that work where `os.pread`/`os.pwrite` do not (Windows).

Several threads read one central file and write one part file at a node at once, each at its own
offset. POSIX has pread/pwrite for that; elsewhere a lock per descriptor keeps each seek and its
read or write together.
"""
import os
import threading

_locks: dict[int, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock_of(fd: int) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(fd, threading.Lock())


def _seek_read(fd: int, length: int, offset: int) -> bytes:
    with _lock_of(fd):
        os.lseek(fd, offset, os.SEEK_SET)
        parts, got = [], 0
        while got < length:
            block = os.read(fd, length - got)
            if not block:
                break
            parts.append(block)
            got += len(block)
        return b"".join(parts)


def _seek_write(fd: int, data, offset: int) -> int:
    with _lock_of(fd):
        os.lseek(fd, offset, os.SEEK_SET)
        return os.write(fd, data)


def pread(fd: int, length: int, offset: int) -> bytes:
    """Up to `length` bytes at `offset` (fewer only at the end of the file)."""
    return os.pread(fd, length, offset) if HAVE_PREAD else _seek_read(fd, length, offset)


def pwrite(fd: int, data, offset: int) -> None:
    """All of `data` at `offset`."""
    view, written = memoryview(data), 0
    write = os.pwrite if HAVE_PREAD else _seek_write
    while written < len(view):
        written += write(fd, view[written:], offset + written)


HAVE_PREAD = hasattr(os, "pread") and hasattr(os, "pwrite")


def write_back_soon(fd: int, offset: int, length: int) -> None:
    """Start writing bytes just written to disk now, so the fsync before the rename has little
    left to wait for (and drop them from the cache once written: nothing reads them again).
    Linux's posix_fadvise(DONTNEED) does both; elsewhere nothing happens and fsync does it all."""
    if HAVE_FADVISE:
        try:
            os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
        except OSError:  # a file system that takes no advice: fsync does it all
            pass


HAVE_FADVISE = hasattr(os, "posix_fadvise") and hasattr(os, "POSIX_FADV_DONTNEED")


def fsync_dir(path) -> None:
    """Make a rename into `path` durable: fsync the folder (POSIX). Windows opens no folder as a
    file and makes a rename durable with the file system's own journal: nothing to do there."""
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
