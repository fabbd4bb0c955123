"""Uploads to S3-compatible storage: a single PutObject when a file fits in one part, else a
multipart upload driven part by part, whose UploadId and parts done go into the copy's
UploadState so that another process resumes it through ListParts. A full-object CRC64NVME checks
the bytes in transit where the server supports it; a piece the server says arrived damaged is
sent again.
"""
import base64
import logging
import threading
from datetime import datetime
from typing import TYPE_CHECKING

from portal.core.errors import DamagedInTransit, DepotError, StorageRefused, StorageUnavailable
from portal.storage.base import Source, Upload, UploadState
from portal.storage.kit import mtime_ns

if TYPE_CHECKING:
    from portal.storage.s3 import S3Storage

try:  # botocore needs awscrt for CRC64NVME too; without it, uploads go without a checksum
    from awscrt.checksums import combine_crc64nvme, crc64nvme
except ImportError:  # pragma: no cover - awscrt is pinned in requirements.txt
    crc64nvme = combine_crc64nvme = None

log = logging.getLogger(__name__)

MiB = 1024 * 1024
MAX_PARTS = 10_000
# What a server that does not know CRC64NVME / FULL_OBJECT answers to CreateMultipartUpload.
NO_CHECKSUM_SUPPORT = {"InvalidRequest", "InvalidArgument", "NotImplemented",
                       "XAmzContentChecksumMismatch"}
# What PutObject and UploadPart answer when the bytes that arrived are not the ones sent (their
# checksum differs): a passing failure, the piece is sent again.
DAMAGED = {"BadDigest", "InvalidDigest", "XAmzContentChecksumMismatch"}
# What CompleteMultipartUpload answers when the parts do not make the object we described: the
# upload is dropped and the file sent again.
BAD_PARTS = {"InvalidPart", "InvalidPartOrder", "EntityTooSmall", "BadDigest", "InvalidDigest",
             "InvalidRequest", "NoSuchUpload"}


def s3_code(exc: DepotError) -> str:
    """The S3 error code behind a failure ("" when it was no S3 answer)."""
    return getattr(exc, "s3_code", "")


def object_mtime_ns(when: datetime) -> int:
    """Whole seconds: a listing has milliseconds, a HEAD only seconds; both must agree."""
    return mtime_ns(when, whole_seconds=True)


def _b64(crc: int) -> str:
    return base64.b64encode(crc.to_bytes(8, "big")).decode()


def _unb64(value: str | None) -> int | None:
    try:
        raw = base64.b64decode(value, validate=True) if value else b""
    except ValueError:
        return None
    return int.from_bytes(raw, "big") if len(raw) == 8 else None


def plain_etag(value: str | None) -> str:
    """An ETag without the quotes S3 puts around it."""
    return (value or "").strip('"')


class S3Upload(Upload):
    """One file's upload: a single PutObject when it fits in one part, else a multipart upload
    whose UploadId and parts done are kept in the UploadState and resumed through ListParts."""

    def __init__(self, backend: "S3Storage", source: Source, state: UploadState):
        self.backend, self.source, self.state = backend, source, state
        self.key = backend.key(source.path)
        size = source.size
        part = backend.part_size
        if size > part * MAX_PARTS:  # S3 takes at most 10,000 parts: bigger ones, whole MiB
            part = -(-size // (MAX_PARTS * MiB)) * MiB
        self.part_size = self.chunk_size = part
        self.parallel = backend.parallel
        self.count = max(1, -(-size // part))
        self.single = size <= part
        self.checksum = backend.checksum
        self.upload_id: str | None = None
        self.parts: dict[int, tuple[str, int | None]] = {}  # number -> (ETag, CRC64NVME)
        self.lock = threading.Lock()
        self.unsaved = False
        backend.abort_quietly(state.stale)
        self.done = self._already_there()
        if self.done is not None:
            backend.abort_quietly(state.data)  # an upload of it left behind goes now
            return
        data = state.data or {}
        if data.get("upload_id"):
            if not self.single and data.get("key") == self.key and data.get("part_size") == part:
                if self._resume(data):
                    return
            else:  # saved with another part size or prefix: start afresh
                backend.abort_quietly(data)
        if not self.single:
            self._create()

    def _part_length(self, number: int) -> int:
        return min(self.part_size, self.source.size - (number - 1) * self.part_size)

    def _already_there(self) -> dict | None:
        """What finish would give, if the object already holds this very version."""
        head = self.backend.head(self.key)
        if head is None:
            return None
        sha, hashes = self.backend.recorded(head)
        if head.get("ContentLength") != self.source.size or sha != self.source.sha256:
            return None
        return {"size": self.source.size, "mtime_ns": object_mtime_ns(head["LastModified"]),
                "sha256": sha, "hashes": hashes}

    def _record(self) -> dict:
        return {"upload_id": self.upload_id, "key": self.key, "part_size": self.part_size,
                "checksum": self.checksum,
                "parts": {str(n): [etag, crc] for n, (etag, crc) in sorted(self.parts.items())}}

    def _listed_parts(self) -> dict[int, tuple[str, int | None]]:
        """The parts the server holds at the right size (ListParts, every page)."""
        parts = {}
        for page in self.backend._pages("list_parts", "list an upload's parts", Key=self.key,
                                        UploadId=self.upload_id):
            for listed in page.get("Parts", []):
                number = listed["PartNumber"]
                if 1 <= number <= self.count and listed.get("Size") == self._part_length(number):
                    parts[number] = (listed["ETag"], _unb64(listed.get("ChecksumCRC64NVME")))
        return parts

    def _resume(self, data: dict) -> bool:
        """Take up the saved upload; False when the server no longer has it (NoSuchUpload)."""
        self.upload_id = data["upload_id"]
        self.checksum = bool(data.get("checksum")) and crc64nvme is not None
        try:
            listed = self._listed_parts()
        except StorageRefused as exc:
            if s3_code(exc) != "NoSuchUpload":
                raise
            self.upload_id, self.checksum = None, self.backend.checksum
            return False
        recorded = data.get("parts") or {}
        for number, (etag, crc) in listed.items():
            mine = recorded.get(str(number))
            if mine and plain_etag(mine[0]) == plain_etag(etag) and mine[1] is not None:
                crc = mine[1]
            self.parts[number] = (etag, crc)
        return True

    def _create(self) -> None:
        params = {"Bucket": self.backend.bucket, "Key": self.key,
                  "Metadata": {"sha256": self.source.sha256},
                  "ContentType": "application/octet-stream"}
        if self.checksum:
            try:
                answer = self.backend.call("start an upload", "create_multipart_upload",
                                           ChecksumAlgorithm="CRC64NVME",
                                           ChecksumType="FULL_OBJECT", **params)
            except StorageRefused as exc:
                if s3_code(exc) not in NO_CHECKSUM_SUPPORT:
                    raise
                log.info("%s does not take CRC64NVME checksums; uploading without",
                         self.backend.name)
                answer = None
            # A server that ignored the checksum headers does not echo them: send none.
            self.checksum = answer is not None and answer.get("ChecksumAlgorithm") == "CRC64NVME"
            if answer is None:
                answer = self.backend.call("start an upload", "create_multipart_upload", **params)
        else:
            answer = self.backend.call("start an upload", "create_multipart_upload", **params)
        self.upload_id = answer["UploadId"]
        self.state.save(self._record())  # at once: a crash from here on leaves it resumable

    # --- what the copy service drives ----------------------------------------------------------

    def missing(self) -> list[tuple[int, int]]:
        if self.done is not None:
            return []
        if self.single:
            return [(0, self.source.size)] if self.source.size and not self.parts else []
        ranges: list[tuple[int, int]] = []
        for number in range(1, self.count + 1):
            if number in self.parts:
                continue
            start = (number - 1) * self.part_size
            end = start + self._part_length(number)
            if ranges and ranges[-1][1] == start:
                ranges[-1] = (ranges[-1][0], end)
            else:
                ranges.append((start, end))
        return ranges

    def send(self, offset: int, data: bytes) -> None:
        """One whole part (UploadPart), or the whole small file (PutObject); any thread."""
        number = offset // self.part_size + 1
        if offset % self.part_size or len(data) != self._part_length(number):
            raise DepotError(f"an S3 part must be part {number} whole ({self._part_length(number)}"
                             f" bytes at {(number - 1) * self.part_size}), not {len(data)} bytes "
                             f"at {offset}")
        crc = crc64nvme(data) if self.checksum else None
        # The value computed here (awscrt, fast) is sent as is: botocore then computes none.
        extra = {"ChecksumAlgorithm": "CRC64NVME", "ChecksumCRC64NVME": _b64(crc)} \
            if crc is not None else {}
        try:
            if self.single:
                answer = self.backend.call(
                    "write objects", "put_object", Bucket=self.backend.bucket, Key=self.key,
                    Body=data, Metadata={"sha256": self.source.sha256},
                    ContentType="application/octet-stream", **extra)
            else:
                answer = self.backend.call("upload parts", "upload_part",
                                           Bucket=self.backend.bucket, Key=self.key,
                                           UploadId=self.upload_id, PartNumber=number, Body=data,
                                           **extra)
        except StorageRefused as exc:
            code = s3_code(exc)
            if code == "NoSuchUpload":  # aborted meanwhile: resume will restart
                raise StorageUnavailable(f"{self.backend.name}: the upload of "
                                         f"{self.source.path} was aborted there; it starts "
                                         "again") from None
            if code in DAMAGED:  # the server's checksum of what arrived differs: send it again
                raise StorageUnavailable(f"{self.backend.name}: part {number} of "
                                         f"{self.source.path} arrived damaged ({code}); it is "
                                         "sent again") from None
            raise
        with self.lock:
            self.parts[number] = (answer["ETag"], crc)
            self.unsaved = True

    def checkpoint(self) -> None:
        """Save the parts done so far (numbers, ETags, CRCs) into the upload's state."""
        with self.lock:
            if self.single or not self.unsaved:
                return
            record, self.unsaved = self._record(), False
        self.state.save(record)

    def _crc_of(self, number: int, crc: int | None) -> int:
        """A part's CRC64NVME, read again from central if an earlier process did not record it."""
        if crc is not None:
            return crc
        return crc64nvme(self.source.read((number - 1) * self.part_size, self._part_length(number)))

    def finish(self) -> dict:
        """Complete the upload, then HEAD the object: size, SHA-256 metadata and CRC64NVME must
        be ours, else it is deleted and DamagedInTransit raised."""
        if self.done is not None:
            return self.done
        full = None
        if self.single:
            if not self.parts and self.source.size == 0:  # nothing went through send()
                self.send(0, b"")
            if not self.parts:
                raise StorageUnavailable(f"{self.source.path} was not sent to "
                                         f"{self.backend.name} yet")
            full = self.parts[1][1]
        else:
            if len(self.parts) < self.count:  # sent by an earlier process, not yet recorded
                for number, found in self._listed_parts().items():
                    self.parts.setdefault(number, found)
            lacking = [n for n in range(1, self.count + 1) if n not in self.parts]
            if lacking:
                raise StorageUnavailable(f"{self.backend.name} lacks {len(lacking)} part(s) of "
                                         f"{self.source.path}; the upload resumes")
            listing = []
            for number in range(1, self.count + 1):
                etag, crc = self.parts[number]
                item = {"PartNumber": number, "ETag": etag}
                if self.checksum:
                    crc = self._crc_of(number, crc)
                    item["ChecksumCRC64NVME"] = _b64(crc)
                    full = crc if full is None else combine_crc64nvme(
                        full, crc, self._part_length(number))
                listing.append(item)
            extra = {"ChecksumCRC64NVME": _b64(full), "ChecksumType": "FULL_OBJECT"} \
                if full is not None else {}
            try:
                self.backend.call("complete an upload", "complete_multipart_upload",
                                  Bucket=self.backend.bucket, Key=self.key,
                                  UploadId=self.upload_id, MultipartUpload={"Parts": listing},
                                  **extra)
            except StorageRefused as exc:
                if s3_code(exc) not in BAD_PARTS:
                    raise
                done = self._already_there() if s3_code(exc) == "NoSuchUpload" else None
                if done is not None:  # completed by an earlier call whose answer was lost
                    return done
                self.abort()
                raise DamagedInTransit(f"{self.source.path}: {exc.message}") from None
        return self._checked(full)

    def _checked(self, crc: int | None) -> dict:
        head = self.backend.head(self.key)
        if head is None:
            raise DamagedInTransit(f"{self.source.path} is not at {self.backend.name} after its "
                                   "upload")
        sha, hashes = self.backend.recorded(head)
        found = _unb64(hashes.get("crc64nvme"))
        wrong = ("size" if head.get("ContentLength") != self.source.size
                 else "SHA-256 metadata" if sha != self.source.sha256
                 else "CRC64NVME checksum" if crc is not None and found is not None and found != crc
                 else None)
        if wrong:
            try:
                self.backend.call("delete objects", "delete_object", Bucket=self.backend.bucket,
                                  Key=self.key)
            except DepotError:
                pass
            raise DamagedInTransit(f"{self.source.path} arrived damaged at {self.backend.name}: "
                                   f"its {wrong} differs; sending it again")
        return {"size": self.source.size, "mtime_ns": object_mtime_ns(head["LastModified"]),
                "sha256": sha, "hashes": hashes}

    def abort(self) -> None:
        """Abort the multipart upload (a PutObject has nothing to abort); absent is fine."""
        if self.upload_id:
            try:
                self.backend.call("abort an upload", "abort_multipart_upload",
                                  Bucket=self.backend.bucket, Key=self.key, UploadId=self.upload_id)
            except StorageRefused as exc:
                if s3_code(exc) != "NoSuchUpload":
                    raise
