"""What the cloud drivers share, written once: the stream a provider's download is read through,
the parser of the providers' modification times, the manifest records of the providers that keep
no metadata of Depot's beside a file (OneDrive, Dropbox), the bookkeeping of an upload session
that takes its pieces in order (OneDrive, Google Drive, Dropbox), and a few calls at once.

What differs between providers stays in their drivers: which field holds a file's time, which
hash the provider computes, how a record is read and written in its API.
"""
import calendar
import io
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Callable, Iterable

import requests

from portal.core.errors import StorageRefused
from portal.storage.base import Media, Source, Upload

MANIFEST = ".depot/manifest"  # the records' folder inside a DP's folder
MEDIA_PIECE = 1024 * 1024  # what the link relay passes on at a time
# What a provider's answer says about the bytes it carries, passed on by the link relay.
MEDIA_HEADERS = ("Content-Length", "Content-Range", "Accept-Ranges")
CATCH_UP_PIECE = 8 * 1024 * 1024

_ISO_TIME = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)?$")


# --- reading -------------------------------------------------------------------------------------

class BodyStream(io.RawIOBase):
    """A provider's download as a binary file (`readinto`, `read`, `with`), whose `close` ends
    the connection. A failure while reading is an OSError, as a local file's is, so a hasher
    notes the file unreadable instead of failing its whole job."""

    def __init__(self, read: Callable[[int], bytes], close: Callable[[], None], where: str):
        super().__init__()
        self._read, self._close, self.where = read, close, where

    def readable(self) -> bool:
        """Always: a download is read only."""
        return True

    def readinto(self, buffer) -> int:
        """Read into `buffer`, as much as the connection gives at once (0 at the end)."""
        try:
            data = self._read(len(buffer))
        except OSError:
            raise
        except Exception as exc:  # noqa: BLE001 - urllib3's and botocore's errors are no OSErrors
            raise OSError(f"the download from {self.where} broke off "
                          f"({type(exc).__name__})") from None
        memoryview(buffer).cast("B")[:len(data)] = data
        return len(data)

    def close(self) -> None:
        """End the download (its connection goes back or closes)."""
        if not self.closed:
            self._close()
        super().close()


def response_stream(response: requests.Response, where: str) -> BodyStream:
    """A streamed `requests` answer as a BodyStream, with any content encoding undone."""
    return BodyStream(lambda n: response.raw.read(n, decode_content=True), response.close, where)


def media_of(response: requests.Response) -> Media:
    """A streamed provider answer as what the link relay passes on (see `Media`)."""
    headers = {k: response.headers[k] for k in MEDIA_HEADERS if k in response.headers}
    return Media(response.status_code, headers, response.iter_content(MEDIA_PIECE),
                 response.close)


# --- times ---------------------------------------------------------------------------------------

def mtime_ns(when: str | datetime | None, *, whole_seconds: bool = False) -> int | None:
    """Nanoseconds since the epoch of a provider's modification time, None when it gives none
    that can be read: an ISO 8601 string, in UTC when it names no offset (Graph's
    "2024-05-01T10:00:00.1234567Z", Drive's milliseconds, Dropbox's whole seconds), or a datetime
    (boto3's). `whole_seconds` drops the fraction (S3 lists milliseconds but a HEAD gives
    seconds, and the two must agree)."""
    if isinstance(when, datetime):
        seconds = calendar.timegm(when.utctimetuple())
        fraction = when.microsecond * 1000
    else:
        match = _ISO_TIME.match(when) if isinstance(when, str) else None
        if not match:
            return None
        try:  # a month 13 or a day 99 is no time
            datetime(*(int(x) for x in match.groups()[:6]))
        except ValueError:
            return None
        seconds = calendar.timegm(tuple(int(x) for x in match.groups()[:6]) + (0, 0, 0))
        fraction = int((match.group(7) or "0")[:9].ljust(9, "0"))
        offset = match.group(8)
        if offset and offset != "Z":
            digits = offset[1:].replace(":", "")
            seconds -= (1 if offset[0] == "+" else -1) * (int(digits[:2]) * 3600
                                                          + int(digits[2:]) * 60)
    return seconds * 1_000_000_000 + (0 if whole_seconds else fraction)


# --- calls at once -------------------------------------------------------------------------------

def at_once(call: Callable, items: Iterable, threads: int, name: str) -> None:
    """`call(item)` for every item, `threads` at a time; the first failure stops what has not
    started yet and is raised."""
    items = list(items)
    if not items:
        return
    with ThreadPoolExecutor(max_workers=min(threads, len(items)),
                            thread_name_prefix=name) as pool:
        futures = [pool.submit(call, item) for item in items]
        try:
            for future in futures:
                future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise


# --- manifest records ----------------------------------------------------------------------------

class ManifestRecords:
    """What Depot knows of each file it wrote, where the provider keeps no metadata of ours beside
    a file: {"size", "sha256", <the provider's own hash>} in a small JSON record per file at
    `<folder>/.depot/manifest/<path>.json` (one a file: copies of different files never race on
    one manifest). A record counts only while the file's size and provider hash are still those
    it names: whoever changes the file elsewhere changes those, not the record.

    A driver mixing this into its StorageBackend names its `hash_kind` and gives `read_record`
    and `write_record` in its own API."""

    hash_kind: str  # the key of the provider's hash in FileEntry.hashes and in the records
    record_readers = 4  # records read at once by fill_hashes

    def read_record(self, path: str) -> dict | None:
        """The record of the file at `path`; None when there is none (or it is not readable)."""
        raise NotImplementedError

    def write_record(self, path: str, record: dict) -> None:
        """Write (or replace) the record of the file at `path`."""
        raise NotImplementedError

    def recorded_sha256(self, path: str, size: int, provider_hash: str | None) -> str | None:
        """The SHA-256 in the file's record, if the record is of this very version of it."""
        if not provider_hash:
            return None
        record = self.read_record(path)
        sha256 = record.get("sha256") if record else None
        if isinstance(sha256, str) and sha256 and record.get("size") == size \
                and record.get(self.hash_kind) == provider_hash:
            return sha256
        return None

    def record(self, path: str, size: int, sha256: str, provider_hash: str) -> None:
        """Record what Depot placed at `path` (or found there identical to central's)."""
        self.write_record(path, {"size": size, "sha256": sha256, self.hash_kind: provider_hash})

    def fill_hashes(self, entries: list) -> None:
        """The SHA-256 recorded for each file, where the record is of this very version; only the
        small records are read, a few at a time."""
        def fill(entry) -> None:
            self.check_cancelled()
            found = self.recorded_sha256(entry.path, entry.size, entry.hashes.get(self.hash_kind))
            if found:
                entry.sha256 = found

        at_once(fill, [e for e in entries if e.hashes.get(self.hash_kind)], self.record_readers,
                f"{self.hash_kind}-records")


# --- uploads in order ----------------------------------------------------------------------------

class InOrderUpload(Upload):
    """An upload session that takes the file's pieces in order from `offset` on, one at a time,
    and says on resuming how much it kept. A driver's session sets `size`, `offset` and
    `saved_offset` and saves itself in `save()`."""

    parallel = 1
    size = offset = 0
    saved_offset: int | None = None
    source: Source

    def missing(self) -> list[tuple[int, int]]:
        """From the next byte the provider expects to the end."""
        return [(self.offset, self.size)] if self.offset < self.size else []

    def checkpoint(self) -> None:
        """Keep how far the session got (the copy's own thread)."""
        if self.offset != self.saved_offset:
            self.save()

    def save(self) -> None:
        """Store the session in the copy's UploadState and note `saved_offset`."""
        raise NotImplementedError

    def catch_up(self, hasher, upto: int) -> None:
        """Feed `hasher` the first `upto` bytes from central's copy: what an earlier run already
        sent, so the hash of the whole file is known at the end without a download."""
        position = 0
        while position < upto:
            data = self.source.read(position, min(CATCH_UP_PIECE, upto - position))
            if not data:
                raise StorageRefused(f"{self.source.path} got shorter at central while copying")
            hasher.update(data)
            position += len(data)


__all__ = ["BodyStream", "InOrderUpload", "ManifestRecords", "MANIFEST", "at_once", "media_of",
           "mtime_ns", "response_stream"]
