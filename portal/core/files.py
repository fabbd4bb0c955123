"""A content root on a local file system: the six library folders under one folder, walked on
bytes names without ever leaving the root. Central's own DP and every DP node hold their files
in one of these."""
import os
import shutil
import stat as statmod
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterator, Protocol

from portal.core.errors import ContentRootUnavailable
from portal.core.libraries import LIBRARIES, is_ignored_entry
from portal.core.names import escape_component
from portal.core.paths import confine

# Not every system has it (Windows): there the walk's own symlink checks are what protects.
O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
O_BINARY = getattr(os, "O_BINARY", 0)


@dataclass
class FileEntry:
    """A regular file under a library folder: escaped relative path, size, mtime, backend handle;
    `sha256` (or `error`) when the backend knows it without the caller reading the file, and the
    provider's own hashes (`{"quickxor": ...}`) where it has them."""

    path: str
    size: int
    mtime_ns: int
    handle: Any = field(default=None, compare=False)
    sha256: str | None = None
    error: str | None = None
    hashes: dict[str, str] = field(default_factory=dict, compare=False)


class Readable(Protocol):
    """What the hashing pool needs of a place that holds files."""

    def open_read(self, entry: FileEntry) -> BinaryIO: ...

    def stat(self, entry: FileEntry) -> tuple[int, int] | None: ...


def open_no_follow(path) -> int:
    """A read-only descriptor of `path`; a symlink swapped in for the file is refused where the
    system can tell (O_NOFOLLOW), not followed out of the root."""
    return os.open(path, os.O_RDONLY | O_NOFOLLOW | O_BINARY)


class ContentRoot:
    """Library folders under a root directory, walked without leaving the root."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        self._root_real = os.path.realpath(self.root)

    def check(self) -> None:
        """Refuse a root that does not exist, is not a folder, or cannot be written."""
        if not os.path.exists(self.root):
            raise ContentRootUnavailable(f"content root {self.root} does not exist")
        if not os.path.isdir(self.root):
            raise ContentRootUnavailable(f"content root {self.root} is not a folder")
        if not os.access(self.root, os.R_OK | os.W_OK | os.X_OK):
            raise ContentRootUnavailable(f"content root {self.root} is not writable by this user")

    def ensure_layout(self) -> None:
        """Create the library folders (the root itself must exist and be writable)."""
        self.check()
        for library in LIBRARIES:
            os.makedirs(os.path.join(self.root, library), exist_ok=True)

    def walk(self, problems: list[str], verify: bool = False) -> Iterator[FileEntry]:
        """Depth-first over each library folder, on bytes names so no file name can break it
        (`verify` changes nothing here: the caller hashes what it reads)."""
        for library in LIBRARIES:
            top = os.path.join(os.fsencode(self.root), os.fsencode(library))
            if os.path.isdir(top):
                yield from self._walk_dir(top, library, problems)

    def _walk_dir(self, directory: bytes, rel: str, problems: list[str]) -> Iterator[FileEntry]:
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            problems.append(f"{rel}: cannot list folder ({exc.strerror or exc})")
            return
        top_level = "/" not in rel
        for entry in entries:
            name = escape_component(entry.name)
            if top_level and is_ignored_entry(name):
                continue  # temp and hidden files beside the assets are not content
            rel_path = f"{rel}/{name}"
            try:
                if entry.is_symlink():
                    found = self._follow_link(entry.path, rel_path, problems)
                    if found:
                        yield found
                elif entry.is_dir(follow_symlinks=False):
                    yield from self._walk_dir(entry.path, rel_path, problems)
                elif entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    yield FileEntry(rel_path, st.st_size, st.st_mtime_ns, entry.path)
                else:
                    problems.append(f"{rel_path}: not a regular file, skipped")
            except FileNotFoundError:
                problems.append(f"{rel_path}: vanished during the scan")
            except OSError as exc:
                problems.append(f"{rel_path}: {exc.strerror or exc}")

    def _follow_link(self, path: bytes, rel_path: str, problems: list[str]) -> FileEntry | None:
        """A symlink counts only if it is a regular file inside the root; folders are never followed."""
        target = os.path.realpath(path)
        root = os.fsencode(self._root_real)
        if not (target == root or target.startswith(root + os.fsencode(os.sep))):
            problems.append(f"{rel_path}: symlink leads out of the content root, skipped")
            return None
        try:
            st = os.stat(target)
        except OSError:
            problems.append(f"{rel_path}: broken symlink, skipped")
            return None
        if not statmod.S_ISREG(st.st_mode):
            problems.append(f"{rel_path}: symlink to a folder, not followed")
            return None
        return FileEntry(rel_path, st.st_size, st.st_mtime_ns, target)

    def delete(self, path: str) -> bool:
        """Delete a file or folder under a library folder (a symlink: the link itself); False if
        it was not there. Paths outside the library folders are refused (BadPath)."""
        target = confine(self.root, path)
        if os.path.islink(target) or os.path.isfile(target):
            os.remove(target)
        elif os.path.isdir(target):
            shutil.rmtree(target)
        else:
            return False
        return True

    def open_read(self, entry: FileEntry) -> BinaryIO:
        """Open the file for reading, unbuffered: the hasher reads in large blocks."""
        return os.fdopen(open_no_follow(entry.handle), "rb", buffering=0)

    def stat(self, entry: FileEntry) -> tuple[int, int] | None:
        """Size and mtime of the file now."""
        try:
            st = os.stat(entry.handle)
        except FileNotFoundError:
            return None
        return st.st_size, st.st_mtime_ns

    def space(self) -> tuple[int | None, int | None]:
        """Free and total bytes of the file system holding the root."""
        try:
            usage = shutil.disk_usage(self.root)
        except OSError:
            return None, None
        return usage.free, usage.total
