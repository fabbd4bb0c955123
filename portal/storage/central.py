"""A content root on a local file system: the central DP (and, later, a DP node's own root).

Endpoints download from central too: `download_link` gives a link to `/agent/v1/download` on this
server, HMAC-signed with a key derived from SECRET_KEY for these links only (path and expiry
covered, so a link can be neither pointed at another file nor extended); the route checks it with
`check_link` and serves the file with HTTP Range, no login needed.
"""
import hashlib
import hmac
import os
import shutil
import stat as statmod
import time
from typing import BinaryIO, Iterator
from urllib.parse import urlencode

from flask import current_app, has_request_context
from flask import request as flask_request

from portal.services import ContentRootUnavailable
from portal.services.libraries import LIBRARIES, is_ignored_entry
from portal.services.names import escape_component
from portal.storage.base import FileEntry, StorageBackend, StorageRefused
from portal.storage.paths import confine, library_parts

MAX_LINK_SECONDS = 7 * 86400


class FilesystemStorage(StorageBackend):
    """Library folders under a root directory, walked without leaving the root."""

    def __init__(self, dp=None, root: str | None = None):
        super().__init__(dp)
        self.root = os.path.abspath(root or dp.root)
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

    def walk(self, problems: list[str]) -> Iterator[FileEntry]:
        """Depth-first over each library folder, on bytes names so no file name can break it."""
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
        if not (target == root or target.startswith(root + b"/")):
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
        """Open the file for reading, unbuffered: the hasher reads in large blocks. O_NOFOLLOW: a
        file swapped for a symlink since the walk is refused, not followed out of the root."""
        return os.fdopen(os.open(entry.handle, os.O_RDONLY | os.O_NOFOLLOW), "rb", buffering=0)

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
            st = os.statvfs(self.root)
        except OSError:
            return None, None
        return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize

    def download_link(self, path: str, ttl_seconds: int) -> str:
        """A signed link to this server's /agent/v1/download for the file, valid `ttl_seconds`."""
        if self.dp is None or not self.dp.is_central:
            raise StorageRefused("only the central DP gives download links from its file system")
        if not 1 <= ttl_seconds <= MAX_LINK_SECONDS:
            raise StorageRefused(f"a central download link lives from 1 s to {MAX_LINK_SECONDS} s")
        library_parts(path)
        base = current_app.config.get("DEPOT_PUBLIC_URL") or (
            flask_request.host_url if has_request_context() else None)
        if not base:
            raise StorageRefused("set DEPOT_PUBLIC_URL (the address endpoints reach the central "
                                 "server at) to give central download links")
        expires = int(time.time() + ttl_seconds)
        query = urlencode({"path": path, "expires": expires,
                           "sig": link_signature(current_app.config["SECRET_KEY"], path, expires)})
        return f"{base.rstrip('/')}/agent/v1/download?{query}"


def link_signature(secret_key: str, path: str, expires: int) -> str:
    """HMAC of (path, expiry) with a key derived from SECRET_KEY for central's links only."""
    key = hmac.new(secret_key.encode(), b"depot central download link", hashlib.sha256).digest()
    return hmac.new(key, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()


def check_link(secret_key: str, path, expires, sig) -> str | None:
    """None when a central download link is good, else why not."""
    try:
        expires = int(expires)
    except (TypeError, ValueError):
        return "the download link is malformed"
    if not isinstance(path, str) or not isinstance(sig, str) or not sig.isascii() or \
            not hmac.compare_digest(link_signature(secret_key, path, expires), sig):
        return "the download link's signature is not valid"
    if expires < time.time():
        return "the download link has expired; ask the server for a new one"
    return None
