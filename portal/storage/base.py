"""The storage interface every kind of distribution point implements."""
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterator


@dataclass
class FileEntry:
    """A regular file under a library folder: escaped relative path, size, mtime, backend handle;
    with `sha256` (or `error`) when the backend hashes its files itself (a DP node)."""

    path: str
    size: int
    mtime_ns: int
    handle: Any = field(default=None, compare=False)
    sha256: str | None = None
    error: str | None = None


class StorageBackend(ABC):
    """What rescans (and later copies, verifies and deployments) may ask of a DP's content."""

    # True when walk() gives each file's SHA-256 (the DP hashes its own files); rescans then hash
    # nothing themselves.
    hashes_itself = False

    def __init__(self, dp):
        self.dp = dp
        self.cancelled: threading.Event | None = None  # set by a job: stop long calls early

    @abstractmethod
    def check(self) -> None:
        """Raise ContentRootUnavailable with a message a person understands if unreachable."""

    @abstractmethod
    def ensure_layout(self) -> None:
        """Create the six library folders where they are missing."""

    @abstractmethod
    def walk(self, problems: list[str]) -> Iterator[FileEntry]:
        """Every regular file under the library folders; what is skipped goes into `problems`."""

    @abstractmethod
    def open_read(self, entry: FileEntry) -> BinaryIO:
        """A binary stream of one file's content (OSError if it vanished or cannot be read)."""

    @abstractmethod
    def stat(self, entry: FileEntry) -> tuple[int, int] | None:
        """(size, mtime_ns) of the file now, or None if it is gone."""

    @abstractmethod
    def space(self) -> tuple[int | None, int | None]:
        """(free, total) bytes where known."""
