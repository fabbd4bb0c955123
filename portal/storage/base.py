"""The storage interface every kind of distribution point implements.

Rescans, copies, verifies and (later) deployments talk to a DP only through `StorageBackend`, so a
new provider is one module (a subclass registered in `portal.storage`) and its tests.

How a backend learns each file's SHA-256 (`hashing`):
- "reads": the caller reads the file (`open_read`) and hashes it (central's file system);
- "self": the DP hashes its own files and reports them in `walk`; `walk(verify=True)` hashes
  every file again there (a DP node);
- "reports": the provider keeps our SHA-256 beside the object (S3 metadata, a manifest) and
  `walk` reports it without downloading; a file nobody recorded comes with the provider's own
  hash in `FileEntry.hashes` (OneDrive QuickXorHash, Drive MD5, Dropbox content_hash), which a
  rescan compares with central's, and a verify downloads (`open_read`) what it cannot compare.
"""
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, Iterator, Mapping

from portal.core import signing
from portal.core.chunks import ChunkIndex
from portal.core.errors import DepotError, JobCancelled, NotFound, StorageRefused
from portal.core.files import FileEntry
from portal.core.paths import library_parts

# The provider hashes central can compute beside the SHA-256 (see portal.core.hashes).
PROVIDER_HASHES = ("quickxor", "md5", "dropbox")


def json_object(response, *, empty_ok: bool = False) -> dict | None:
    """The JSON object a DP answered (with `empty_ok`, an empty body counts as {}), or None when
    the answer is not one: then whatever answered is not the API the backend expects."""
    if empty_ok and not response.content:
        return {}
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


@dataclass(frozen=True)
class Base:
    """What the DP holds at a copy's path now, by its inventory: the version a delta starts from
    (`index`: its chunk index where central has one, else None)."""

    sha256: str
    size: int
    index: ChunkIndex | None = None


@dataclass
class Source:
    """One central file a copy sends: its escaped path, size, SHA-256, the provider hashes central
    computed (may lack some), and `read(offset, length) -> bytes` (thread-safe, like os.pread);
    `index`, its chunk index (None for small files), and `base`, what the DP holds at the path
    now (None when nothing), for backends that send only what changed."""

    path: str
    size: int
    sha256: str
    hashes: dict[str, str]
    read: Callable[[int, int], bytes]
    index: ChunkIndex | None = None
    base: Base | None = None


class UploadState:
    """Where a backend keeps what it needs to resume one file's upload in another process (an S3
    UploadId, a provider's session URL). The copy service persists it in the database, encrypted:
    a session URL is a credential. `data` is the record of this very version of the file (same
    path, size and SHA-256), `stale` that of an older version, which the backend should abort."""

    def __init__(self, data: dict | None = None, stale: dict | None = None):
        self.data, self.stale = data, stale

    def save(self, data: dict) -> None:
        self.data = data

    def clear(self) -> None:
        self.data = None


class Upload(ABC):
    """One file's resumable upload to a DP.

    The copy service sends every piece of `pieces()` (by default the ranges of `missing()` cut
    into pieces of `chunk_size` that start at multiples of `chunk_size`), at most `parallel` at a
    time (1: strictly in order), calls `checkpoint()` from its own thread after pieces completed,
    then `finish()`. Only `upload()`, `checkpoint()`, `finish()` and `abort()` may save the
    UploadState (they run on the copy's own thread, which holds the database session); `send()`
    and `send_range()` run on other threads.

    A piece is sent as `send(offset, data)` with the bytes read at central, or, for an upload that
    `reads_itself` (a delta: most of a piece may be taken from what the DP holds), as
    `send_range(offset, length, take)`, which reads through `source.read` only what must cross
    the network, calls `take(n)` before sending n bytes (the bandwidth limit) and returns n."""

    chunk_size: int | None = None  # None: the copy's own setting (DEPOT_COPY_CHUNK)
    parallel: int | None = 1  # None: the copy's own setting (DEPOT_COPY_STREAMS)
    # Set when the DP already holds this version (an earlier run got it there): what finish gives.
    done: dict | None = None
    reads_itself = False
    # Bytes of the file the DP takes from what it already holds instead of receiving them.
    reused = 0

    @abstractmethod
    def missing(self) -> list[tuple[int, int]]:
        """[start, end) ranges the DP does not have yet."""

    def pieces(self, chunk: int) -> Iterator[tuple[int, int]]:
        """(offset, length) of the pieces to send, in order."""
        for start, end in self.missing():
            position = start
            while position < end:
                length = min(end, (position // chunk + 1) * chunk) - position
                yield position, length
                position += length

    @abstractmethod
    def send(self, offset: int, data: bytes) -> None:
        """Send one piece; must be safe from several threads when `parallel` > 1."""

    def send_range(self, offset: int, length: int, take: Callable[[int], None]) -> int:
        """For an upload that `reads_itself`: send the piece at `offset`; bytes sent."""
        raise NotImplementedError

    def checkpoint(self) -> None:
        """Persist how far the upload got (called from the copy's own thread)."""

    @abstractmethod
    def finish(self) -> dict:
        """Complete the upload and check it: {size, mtime_ns, sha256, hashes}. DamagedInTransit
        when the DP's size or hash disagrees (the partial upload is then gone)."""

    @abstractmethod
    def abort(self) -> None:
        """Drop the partial upload at the DP (best effort; absent is fine)."""


@dataclass
class Media:
    """A file's bytes on their way to an endpoint through the central server's link relay: the
    HTTP status to answer with (200, 206 for a Range, 416 for a Range past the end), the headers
    that describe the bytes (Content-Length, Content-Range, Accept-Ranges), the body in pieces,
    and `close()`, which lets go of the provider's connection."""

    status: int
    headers: dict[str, str]
    body: Iterator[bytes]
    close: Callable[[], None]


@dataclass(frozen=True)
class StorageEnv:
    """What a backend needs of the server it works for, handed down as values by the service that
    opens it: a backend never reads Flask's config, the request, the session or the database.

    `settings`: the server's DEPOT_* settings a backend reads (part sizes, provider URLs, the app
    registrations); `link_secret`: what signs the links central serves itself (SECRET_KEY);
    `public_url`: where endpoints reach central (DEPOT_PUBLIC_URL, else the address the request
    asking for a link came to)."""

    settings: Mapping[str, Any] = field(default_factory=dict)
    link_secret: str | None = None
    public_url: str | None = None

    def setting(self, name: str, default=None):
        value = self.settings.get(name)
        return default if value is None else value

    def signed_link(self, kind: signing.LinkKind, path: str, ttl_seconds: int, what: str,
                    scope=None) -> str:
        """A link to a file that this server serves itself (`kind`: the cloud relay), signed
        with `link_secret`; StorageRefused, naming `what` links ("Google Drive"), when
        the lifetime is out of bounds or DEPOT_PUBLIC_URL is not known."""
        if not 1 <= ttl_seconds <= signing.MAX_LINK_SECONDS:
            raise StorageRefused(f"a {what} download link lives from 1 s to "
                                 f"{signing.MAX_LINK_SECONDS} s")
        library_parts(path)
        if not self.public_url or not self.link_secret:
            raise StorageRefused("set DEPOT_PUBLIC_URL (the address endpoints reach the central "
                                 f"server at) to give {what} download links")
        return signing.sign(kind, self.public_url, self.link_secret, path, ttl_seconds,
                            scope=scope)


class StorageBackend(ABC):
    """What rescans, copies, verifies and deployments may ask of a DP's content.

    A backend for a saved DP is built from its row (`dp`), its credentials decrypted by the
    service that opens it (`secret`: a DP node's key, an S3 key pair or OAuth token as JSON) and
    the server's `env`; one for settings not saved yet (a connection test) from explicit values.
    Use it as a context manager: its connections close at the end."""

    hashing = "reads"  # see the module's docstring
    # True when an upload can take unchanged parts from what the DP holds (a DP node, S3): the
    # copy then hands it the file's chunk index and what the DP holds at the path (Source).
    reuses_parts = False

    def __init__(self, dp=None, *, env: StorageEnv | None = None):
        self.dp = dp
        self.env = env or StorageEnv()
        self.cancelled: threading.Event | None = None  # set by a job: stop long calls early

    @property
    def hashes_itself(self) -> bool:
        """True when a rescan never reads files to hash them."""
        return self.hashing != "reads"

    def check_cancelled(self) -> None:
        """Raise JobCancelled once the job this backend works for was cancelled."""
        if self.cancelled is not None and self.cancelled.is_set():
            raise JobCancelled()

    @abstractmethod
    def check(self) -> None:
        """Raise a DepotError with a message a person understands if the DP cannot be used."""

    def ping(self) -> None:
        """A cheap call proving the DP answers to its credentials (the periodic health check);
        raises like `check`, NeedsAuth when its authorisation is gone."""
        self.check()

    def ensure_layout(self) -> None:
        """Create the six library folders where they are missing (where the DP has folders)."""
        self.check()

    @abstractmethod
    def walk(self, problems: list[str], verify: bool = False) -> Iterator[FileEntry]:
        """Every regular file under the library folders; what is skipped goes into `problems`."""

    def fill_hashes(self, entries: list[FileEntry]) -> None:
        """For "reports" backends: set `sha256` (what Depot recorded beside each object: S3
        metadata, a manifest) and `hashes` on these entries, which a rescan found new or changed,
        without downloading their content. A file nobody recorded keeps `sha256` None."""

    def open_read(self, entry: FileEntry) -> BinaryIO:
        """A binary stream of one file's content (OSError if it vanished or cannot be read)."""
        raise DepotError(f"{self.dp.name if self.dp else 'this DP'} cannot be read from here")

    def stat(self, entry: FileEntry) -> tuple[int, int] | None:
        """(size, mtime_ns) of the file now, or None if it is gone (after open_read)."""
        return entry.size, entry.mtime_ns

    @abstractmethod
    def space(self) -> tuple[int | None, int | None]:
        """(free, total) bytes where known."""

    def upload(self, source: Source, state: UploadState) -> Upload:
        """Start or resume the upload of `source` to its path at the DP."""
        raise DepotError(f"{self.dp.name if self.dp else 'this DP'} does not take uploads")

    @abstractmethod
    def delete(self, path: str) -> None:
        """Delete a file or a folder (an asset) at the DP; absent is fine."""

    def download_link(self, path: str, ttl_seconds: int) -> str:
        """A link an endpoint can GET the file from for `ttl_seconds`, with no lasting
        credential."""
        raise DepotError(f"{self.dp.name if self.dp else 'this DP'} gives no download links")

    def open_media(self, path: str, range_header: str | None = None) -> Media:
        """The file's bytes for the central server's link relay (`/cloud-links`), with the HTTP
        `Range` an endpoint asked for; FileNotFoundError when it is not there. Only a DP whose
        `download_link` points at the relay has them (Google Drive, which has no links of its
        own): every other DP gives its own links, and says so (NotFound)."""
        raise NotFound("this DP gives its own download links")

    def close(self) -> None:
        """Close connections the backend holds (`http`, where it has one)."""
        http = getattr(self, "http", None)
        if http is not None:
            http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def sweep_uploads(self, max_age_seconds: int, keep=frozenset()) -> int:
        """Abort partial uploads at the DP older than `max_age_seconds`, except the ones named in
        `keep` (what a copy saved in the last `max_age_seconds`: it still works on them); how
        many went."""
        return 0
