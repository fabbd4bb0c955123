"""Uploads to S3-compatible storage: a single PutObject when a file fits in one part, else a
multipart upload driven part by part, whose UploadId and parts done go into the copy's
UploadState so that another process resumes it through ListParts. A full-object CRC64NVME checks
the bytes in transit where the server supports it; a piece the server says arrived damaged is
sent again.

An update of the version the object holds now is a delta (s3_plan.py): the runs of the new file
that the object already has become `UploadPartCopy` parts of it, only the rest is uploaded. The
plan goes into the resume record beside the parts done. Copies are made only from the object the
plan was made from (`CopySourceIfMatch` its ETag), and their CRC64NVME is computed from central's
bytes, so the server's check of the whole object covers the copied ranges too; a server without
checksums has each copied part's ETag (the MD5 of its bytes) compared with central's bytes instead.
"""
import base64
import hashlib
import logging
import re
import threading
from datetime import datetime
from typing import TYPE_CHECKING

from portal.core.errors import (
    DamagedInTransit,
    DepotError,
    PlanAgain,
    StorageRefused,
    StorageUnavailable,
)
from portal.storage.base import Source, Upload, UploadState
from portal.storage.kit import mtime_ns
from portal.storage.s3_plan import DeltaPlan, plan_parts

if TYPE_CHECKING:
    from portal.storage.s3 import S3Storage

try:  # botocore needs awscrt for CRC64NVME too; without it, uploads go without a checksum
    from awscrt.checksums import combine_crc64nvme, crc64nvme
except ImportError:  # pragma: no cover - awscrt is pinned in requirements.txt
    crc64nvme = combine_crc64nvme = None

log = logging.getLogger(__name__)

MiB = 1024 * 1024
MAX_PARTS = 10_000
READ_BLOCK = 8 * MiB  # central's bytes of a copied part are read this much at a time to check it
MD5_RE = re.compile(r"[0-9a-f]{32}")
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
    whose UploadId and parts done are kept in the UploadState and resumed through ListParts; a
    delta (parts copied from the object there, `plan`) when the object holds the version the
    copy starts from and central has both chunk indexes."""

    def __init__(self, backend: "S3Storage", source: Source, state: UploadState):
        self.backend, self.source, self.state = backend, source, state
        self.key = backend.key(source.path)
        size = source.size
        part = backend.part_size
        if size > part * MAX_PARTS:  # S3 takes at most 10,000 parts: bigger ones, whole MiB
            part = -(-size // (MAX_PARTS * MiB)) * MiB
        self.part_size = self.chunk_size = part
        self.parallel = backend.parallel
        self.checksum = backend.checksum
        self.upload_id: str | None = None
        self.parts: dict[int, tuple[str, int | None]] = {}  # number -> (ETag, CRC64NVME)
        self.lock = threading.Lock()
        self.unsaved = False
        self._use(None)
        backend.abort_quietly(state.stale)
        head = backend.head(self.key)
        self.done = self._already_there(head)
        if self.done is not None:
            backend.abort_quietly(state.data)  # an upload of it left behind goes now
            return
        data = state.data or {}
        if data.get("upload_id"):
            if self._takes_up(data, head):
                if self._resume(data):
                    return
                self._use(None)  # the server no longer has it: planned again below
            else:  # saved with another part size, prefix or plan: start afresh
                backend.abort_quietly(data)
        self._use(self._new_plan(head))
        if not self.single:
            self._create()

    def _use(self, plan: DeltaPlan | None) -> None:
        """Lay the upload out as `plan` says, or (None) in parts of `part_size`."""
        self.plan = plan
        size, part = self.source.size, self.part_size
        if plan is None:
            self.layout = [(start, min(part, size - start)) for start in range(0, size, part)] \
                or [(0, 0)]
            self.copies: dict[int, int] = {}
        else:
            self.layout = [(p.offset, p.length) for p in plan.parts]
            self.copies = {number: p.source for number, p in enumerate(plan.parts, 1)
                           if p.source is not None}
        self.count = len(self.layout)
        self.numbers = {offset: number for number, (offset, _) in enumerate(self.layout, 1)}
        self.single = plan is None and size <= part
        self.reads_itself = plan is not None  # a piece is copied at the DP or read and uploaded
        self.reused = plan.reused if plan is not None else 0

    def _part_length(self, number: int) -> int:
        return self.layout[number - 1][1]

    def _already_there(self, head: dict | None) -> dict | None:
        """What finish would give, if the object (`head`) already holds this very version."""
        if head is None:
            return None
        sha, hashes = self.backend.recorded(head)
        if head.get("ContentLength") != self.source.size or sha != self.source.sha256:
            return None
        return {"size": self.source.size, "mtime_ns": object_mtime_ns(head["LastModified"]),
                "sha256": sha, "hashes": hashes}

    def _copies_from(self, head: dict | None, sha256: str, size: int) -> str | None:
        """The ETag of the object (`head`) when it is the version of `sha256` and `size` and may
        be copied from (no copy from it was refused); else None."""
        if head is None or head.get("ContentLength") != size:
            return None
        etag = plain_etag(head.get("ETag"))
        if not etag or self.backend.recorded(head)[0] != sha256 or \
                (self.key, etag) in self.backend.refused_copies:
            return None
        return etag

    def _new_plan(self, head: dict | None) -> DeltaPlan | None:
        """A delta's plan, when the object is the version the copy starts from (`source.base`)
        and central has both indexes; None for a plain upload (also when nothing can be copied)."""
        index, base = self.source.index, self.source.base
        if index is None or base is None or base.index is None or \
                base.index.size != base.size or index.size != self.source.size:
            return None
        etag = self._copies_from(head, base.sha256, base.size)
        if etag is None:
            return None
        parts = plan_parts(index, base.index, self.part_size)
        return DeltaPlan(etag, base.sha256, base.size, tuple(parts)) if parts else None

    def _takes_up(self, data: dict, head: dict | None) -> bool:
        """Whether the saved upload goes on: same key and part size, or a plan whose object is
        still there to copy from (then laid out as it)."""
        if data.get("key") != self.key:
            return False
        if "plan" not in data:
            return not self.single and data.get("part_size") == self.part_size
        plan = DeltaPlan.from_record(data["plan"], self.source.size)
        if plan is None or self._copies_from(head, plan.sha256, plan.size) != plan.etag:
            return False
        self._use(plan)
        return True

    def _record(self) -> dict:
        record = {"upload_id": self.upload_id, "key": self.key, "part_size": self.part_size,
                  "checksum": self.checksum,
                  "parts": {str(n): [etag, crc] for n, (etag, crc) in sorted(self.parts.items())}}
        if self.plan is not None:
            record["plan"] = self.plan.record()
        return record

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
        for number, (start, length) in enumerate(self.layout, 1):
            if number in self.parts:
                continue
            if ranges and ranges[-1][1] == start:
                ranges[-1] = (ranges[-1][0], start + length)
            else:
                ranges.append((start, start + length))
        return ranges

    def pieces(self, chunk: int):
        """A delta's parts not done yet, each a piece (a copy or an upload); else as usual."""
        if self.plan is None:
            yield from super().pieces(chunk)
            return
        for number, (start, length) in enumerate(self.layout, 1):
            if number not in self.parts:
                yield start, length

    def _number(self, offset: int, length: int) -> int:
        number = self.numbers.get(offset)
        if number is None or length != self._part_length(number):
            number = number or min(self.count, offset // self.part_size + 1)
            start, whole = self.layout[number - 1]
            raise DepotError(f"an S3 part must be part {number} whole ({whole} bytes at {start}),"
                             f" not {length} bytes at {offset}")
        return number

    def send(self, offset: int, data: bytes) -> None:
        """One whole part (UploadPart), or the whole small file (PutObject); any thread."""
        self._upload(self._number(offset, len(data)), data)

    def send_range(self, offset: int, length: int, take) -> int:
        """A delta's part: copied at the server from the object there (nothing sent), or read
        at central and uploaded; bytes sent. Any thread."""
        number = self._number(offset, length)
        source = self.copies.get(number)
        if source is None:
            data = self.source.read(offset, length)
            if len(data) != length:
                raise DepotError("a central file got shorter while being copied: rescan central")
            take(length)
            self._upload(number, data)
            return length
        self._copy(number, source, self._crc_range(offset, length) if self.checksum else None)
        return 0

    def _upload(self, number: int, data: bytes) -> None:
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
                raise self._aborted() from None
            if code in DAMAGED:  # the server's checksum of what arrived differs: send it again
                raise StorageUnavailable(f"{self.backend.name}: part {number} of "
                                         f"{self.source.path} arrived damaged ({code}); it is "
                                         "sent again") from None
            raise
        self._done(number, answer["ETag"], crc)

    def _copy(self, number: int, source: int, crc: int | None) -> None:
        """UploadPartCopy of the part's range of the object, only while the object is the one
        planned from; a refusal (the object replaced, a range or permission refused) or a
        CRC64NVME that is not central's makes the copy plan again, without copies from it."""
        length = self._part_length(number)
        try:
            answer = self.backend.call(
                "copy parts", "upload_part_copy", Bucket=self.backend.bucket, Key=self.key,
                UploadId=self.upload_id, PartNumber=number,
                CopySource={"Bucket": self.backend.bucket, "Key": self.key},
                CopySourceRange=f"bytes={source}-{source + length - 1}",
                CopySourceIfMatch=f'"{self.plan.etag}"')
        except StorageRefused as exc:
            if s3_code(exc) == "NoSuchUpload":
                raise self._aborted() from None
            raise self._replan(f"it refused to copy part {number} from the object there "
                               f"({s3_code(exc) or exc.message})") from None
        result = answer.get("CopyPartResult") or {}
        found = _unb64(result.get("ChecksumCRC64NVME"))
        if crc is not None and found is not None and found != crc:
            raise self._replan(f"part {number} copied from the object there is not central's "
                               "bytes (CRC64NVME)")
        self._done(number, result["ETag"], crc)

    def _done(self, number: int, etag: str, crc: int | None) -> None:
        with self.lock:
            self.parts[number] = (etag, crc)
            self.unsaved = True

    def _aborted(self) -> StorageUnavailable:
        return StorageUnavailable(f"{self.backend.name}: the upload of {self.source.path} was "
                                  "aborted there; it starts again")

    def _replan(self, why: str) -> PlanAgain:
        """No more copies from the object planned from (in this process); the copy plans again
        and sends the file whole."""
        self.backend.refused_copies.add((self.key, self.plan.etag))
        return PlanAgain(f"{self.backend.name}: {why}; {self.source.path} is sent whole")

    def _blocks(self, offset: int, length: int):
        """Central's bytes at `offset`, a block at a time."""
        position, end = offset, offset + length
        while position < end:
            block = self.source.read(position, min(READ_BLOCK, end - position))
            if not block:
                raise DepotError("a central file got shorter while being copied: rescan central")
            yield block
            position += len(block)

    def _crc_range(self, offset: int, length: int) -> int:
        """The CRC64NVME of central's bytes at `offset`."""
        crc = 0
        for block in self._blocks(offset, length):
            crc = crc64nvme(block, crc)
        return crc

    def _check_copies(self) -> None:
        """Without checksums: each copied part's ETag, the MD5 of its bytes at most servers, must
        be that of central's bytes; a server whose ETags are no MD5s cannot have deltas checked."""
        for number in sorted(self.copies):
            etag = plain_etag(self.parts[number][0])
            if not MD5_RE.fullmatch(etag):
                why = f"part {number} copied from the object there cannot be checked (no checksums)"
            else:
                md5 = hashlib.md5(usedforsecurity=False)
                for block in self._blocks(*self.layout[number - 1]):
                    md5.update(block)
                if md5.hexdigest() == etag:
                    continue
                why = f"part {number} copied from the object there is not central's bytes (MD5)"
            self.abort()
            raise self._replan(why)

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
        return self._crc_range(*self.layout[number - 1])

    def finish(self) -> dict:
        """Complete the upload, then HEAD the object: size, SHA-256 metadata and CRC64NVME must
        be ours, else it is deleted and DamagedInTransit raised (PlanAgain for a delta: the file
        then goes whole at once)."""
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
            if self.copies and not self.checksum:
                self._check_copies()
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
                done = self._already_there(self.backend.head(self.key)) \
                    if s3_code(exc) == "NoSuchUpload" else None
                if done is not None:  # completed by an earlier call whose answer was lost
                    return done
                self.abort()
                if self.copies and s3_code(exc) != "NoSuchUpload":  # the copies, most likely
                    raise self._replan(f"it refused the parts of the delta ({s3_code(exc)})") \
                        from None
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
            if self.copies:  # a server that does not check parts at Complete let it through
                raise self._replan(f"the object its delta made has another {wrong}")
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
