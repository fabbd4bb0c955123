"""A cloud DP on S3-compatible storage (AWS S3, MinIO, Wasabi, R2 ...) through boto3 with keys.

An asset file `Images/Win11.wim` is the object `<prefix>/Images/Win11.wim`; only keys under the six
library folders count. Uploads are multipart uploads driven part by part (never boto3's managed
transfer, which aborts on failure and cannot resume elsewhere): the UploadId and the parts done go
into the copy's UploadState, so another process resumes through ListParts. Our SHA-256 travels as
object metadata (`x-amz-meta-sha256`; a multipart checksum is composite and not a file's SHA-256),
which a rescan reads with a HEAD instead of downloading; a full-object CRC64NVME checks the bytes in
transit where the server supports it. Nothing here ever puts the secret key into a message or log.
"""
import base64
import functools
import json
import logging
import re
import threading
import uuid
from datetime import datetime, timedelta, timezone
from typing import BinaryIO, Iterator
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from portal.core.errors import (
    BadPath,
    DamagedInTransit,
    DepotError,
    StorageRefused,
    StorageUnavailable,
)
from portal.core.files import FileEntry
from portal.core.libraries import LIBRARIES, is_ignored_entry
from portal.core.names import escape_component
from portal.core.paths import library_parts
from portal.storage.base import Source, StorageBackend, StorageEnv, Upload, UploadState
from portal.storage.kit import BodyStream, at_once, mtime_ns

try:  # botocore needs awscrt for CRC64NVME too; without it, uploads go without a checksum
    from awscrt.checksums import combine_crc64nvme, crc64nvme
except ImportError:  # pragma: no cover - awscrt is pinned in requirements.txt
    crc64nvme = combine_crc64nvme = None

log = logging.getLogger(__name__)

MiB = 1024 * 1024
MIN_PART, MAX_PARTS, MAX_KEY_BYTES = 5 * MiB, 10_000, 1024
MAX_LINK_SECONDS = 7 * 86400  # SigV4 presigned URLs live at most a week
HEAD_THREADS = 8
SHA256_RE, MD5_RE = re.compile(r"[0-9a-f]{64}"), re.compile(r"[0-9a-f]{32}")
# Codes after which trying again later can help; anything else 4xx is a refusal.
PASSING = {"RequestTimeout", "InternalError", "ServiceUnavailable", "SlowDown", "Throttling",
           "ThrottlingException", "RequestThrottled", "TooManyRequests", "OperationAborted"}
# What a server that does not know CRC64NVME / FULL_OBJECT answers to CreateMultipartUpload.
NO_CHECKSUM_SUPPORT = {"InvalidRequest", "InvalidArgument", "NotImplemented",
                       "XAmzContentChecksumMismatch"}
# What CompleteMultipartUpload answers when the parts do not make the object we described: the
# upload is dropped and the file sent again.
# What PutObject and UploadPart answer when the bytes that arrived are not the ones sent (their
# checksum differs): a passing failure, the piece is sent again.
DAMAGED = {"BadDigest", "InvalidDigest", "XAmzContentChecksumMismatch"}
BAD_PARTS = {"InvalidPart", "InvalidPartOrder", "EntityTooSmall", "BadDigest", "InvalidDigest",
             "InvalidRequest", "NoSuchUpload"}


def _mtime_ns(when: datetime) -> int:
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


def _etag(value: str | None) -> str:
    return (value or "").strip('"')


def _hashes(etag: str | None, crc: str | None = None) -> dict[str, str]:
    """The provider hashes of an object: its ETag; the MD5 where the ETag looks like one (a
    single PUT; a rescan then matches content put there by others to central's without a
    download; an encrypted object's ETag that only looks like an MD5 simply matches nothing);
    the full-object CRC64NVME where the server keeps one."""
    hashes = {"etag": _etag(etag)}
    if MD5_RE.fullmatch(hashes["etag"]):
        hashes["md5"] = hashes["etag"]
    if crc:
        hashes["crc64nvme"] = crc
    return hashes


_SESSION_LOCK = threading.Lock()


@functools.cache
def _session() -> boto3.session.Session:
    """The process's boto3 session, made on first use (callers hold _SESSION_LOCK)."""
    return boto3.session.Session()


class S3Storage(StorageBackend):
    """A bucket and a prefix on an S3-compatible service, reached with an access key."""

    hashing = "reports"

    def __init__(self, dp=None, *, secret: str | None = None, env: StorageEnv | None = None,
                 settings: dict | None = None, credentials: dict | None = None,
                 name: str | None = None):
        super().__init__(dp, env=env)
        if dp is not None:
            settings, name = dp.settings, dp.name
            try:
                credentials = json.loads(secret or "")
            except ValueError:
                raise StorageRefused(f"{dp.name}'s stored keys are unreadable: enter them again") \
                    from None
        settings, credentials = settings or {}, credentials or {}
        self.name = name or "the S3 DP"
        self.endpoint_url = (settings.get("endpoint_url") or "").strip() or None
        self.region = (settings.get("region") or "").strip() or "us-east-1"
        self.bucket = (settings.get("bucket") or "").strip()
        self.prefix = "/".join(part for part in (settings.get("prefix") or "").split("/") if part)
        self.base = f"{self.prefix}/" if self.prefix else ""
        key_id = credentials.get("access_key_id")
        secret = credentials.get("secret_access_key")
        if not self.bucket:
            raise StorageRefused(f"{self.name}: a bucket name is required")
        if not (isinstance(key_id, str) and key_id.strip() and isinstance(secret, str) and secret):
            raise StorageRefused(f"{self.name}: an access key id and its secret access key are "
                                 "both required")
        if self.endpoint_url and urlsplit(self.endpoint_url).scheme not in ("http", "https"):
            raise StorageRefused(f"{self.name}: the endpoint URL must start with https:// "
                                 "(or http://)")
        self.part_size = max(MIN_PART, int(self.env.setting("DEPOT_S3_PART_SIZE", 64 * MiB)))
        self.parallel = max(1, int(self.env.setting("DEPOT_S3_PARALLEL", 4)))
        self.checksum = bool(self.env.setting("DEPOT_S3_CHECKSUM", 1)) and crc64nvme is not None
        self._keys = (key_id.strip(), secret)
        self.client = self._client(*self._keys, attempts=5, connect=10, read=120)
        self._probe_client = None

    @property
    def probe_client(self):
        """The client of connection tests and health checks, made when first needed: it answers
        quickly (one retry, shorter waits)."""
        if self._probe_client is None:
            self._probe_client = self._client(*self._keys, attempts=2, connect=5, read=30)
        return self._probe_client

    def _client(self, key_id: str, secret: str, attempts: int, connect: float, read: float):
        when = "when_supported" if self.checksum else "when_required"
        config = Config(
            region_name=self.region, signature_version="s3v4",
            retries={"mode": "standard", "total_max_attempts": attempts},
            connect_timeout=connect, read_timeout=read,
            max_pool_connections=max(16, 2 * self.parallel + 2),
            # MinIO, Wasabi, R2 ... are reached by path; AWS itself picks (virtual hosts)
            s3={"addressing_style": "path" if self.endpoint_url else "auto"},
            # Servers that do not know the newer checksums must not be sent them by default.
            request_checksum_calculation=when, response_checksum_validation=when,
        )
        try:
            # Only the keys given here sign requests, whatever ~/.aws or AWS_* hold. One session
            # for the process (building one loads botocore's models again: ~60 ms), and a lock:
            # a boto3 session does not make clients safely from several threads at once.
            with _SESSION_LOCK:
                return _session().client(
                    "s3", endpoint_url=self.endpoint_url, aws_access_key_id=key_id,
                    aws_secret_access_key=secret, config=config)
        except (ValueError, BotoCoreError) as exc:
            raise StorageRefused(f"{self.name}: the endpoint URL or region is not valid "
                                 f"({type(exc).__name__})") from None

    def close(self) -> None:
        """Close the clients' connection pools."""
        self.client.close()
        if self._probe_client is not None:
            self._probe_client.close()

    def __repr__(self) -> str:
        return (f"<S3Storage {self.name!r} endpoint={self.where!r} bucket={self.bucket!r} "
                f"prefix={self.prefix!r}>")

    @property
    def where(self) -> str:
        """The endpoint as people know it (never with a user or password in it)."""
        if not self.endpoint_url:
            return f"AWS S3 ({self.region})"
        parts = urlsplit(self.endpoint_url)
        return f"{parts.scheme}://{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")

    # --- calls and what their failures mean --------------------------------------------------

    def call(self, doing: str, method: str, *, client=None, **params):
        """One S3 operation; a failure becomes StorageUnavailable (try later) or StorageRefused."""
        try:
            return getattr(client or self.client, method)(**params)
        except ClientError as exc:
            raise self.failure(exc, doing) from None
        except BotoCoreError as exc:
            raise self.failure(exc, doing) from None

    def failure(self, exc: Exception, doing: str) -> DepotError:
        """A person's account of a botocore error while `doing` (e.g. "list the bucket"), with the
        S3 error code kept as `s3_code` for callers that expect one (NoSuchUpload)."""
        error = self._failure(exc, doing)
        error.s3_code = str(exc.response.get("Error", {}).get("Code") or "") \
            if isinstance(exc, ClientError) else ""
        return error

    def _failure(self, exc: Exception, doing: str) -> DepotError:
        if not isinstance(exc, ClientError):
            if isinstance(exc, BotoCoreError) and type(exc).__name__ == "SSLError":
                return StorageRefused(f"{self.name}: {self.where} has a certificate this server "
                                      "does not trust")
            if isinstance(exc, BotoCoreError) and type(exc).__name__ in (
                    "NoCredentialsError", "ParamValidationError"):
                return StorageRefused(f"{self.name}: cannot {doing}: {type(exc).__name__}")
            return StorageUnavailable(f"{self.name}: {self.where} does not answer "
                                      f"({type(exc).__name__}) while trying to {doing}")
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        bucket = f"bucket {self.bucket!r}"
        if code == "InvalidAccessKeyId":
            return StorageRefused(f"{self.name}: {self.where} does not know this access key id: "
                                  "check the access key id", status=400)
        if code == "SignatureDoesNotMatch":
            return StorageRefused(f"{self.name}: the secret access key does not match the access "
                                  "key id: check the secret access key", status=400)
        if code in ("RequestTimeTooSkewed", "RequestExpired"):
            return StorageRefused(f"{self.name}: this server's clock differs from {self.where}'s "
                                  "by more than 15 minutes: set the clock right (NTP), then try "
                                  "again", status=400)
        if code == "NoSuchBucket":
            return StorageRefused(f"{self.name}: {bucket} does not exist at {self.where}: check "
                                  "the bucket name (and the region)", status=400)
        if code in ("AccessDenied", "AllAccessDisabled") or status == 403:
            return StorageRefused(f"{self.name}: access denied to {doing} in {bucket}: give this "
                                  "key that permission", status=400)
        if code in ("PermanentRedirect", "AuthorizationHeaderMalformed",
                    "IllegalLocationConstraintException"):
            region = error.get("Region") or exc.response.get("ResponseMetadata", {}).get(
                "HTTPHeaders", {}).get("x-amz-bucket-region")
            hint = f" (it is in {region})" if region else ""
            return StorageRefused(f"{self.name}: {bucket} is in another region{hint}: set the "
                                  "DP's region", status=400)
        if code in PASSING or status >= 500 or status == 429:
            return StorageUnavailable(f"{self.name}: {self.where} failed to {doing} "
                                      f"({code or status}); trying again later")
        message = str(error.get("Message") or "")[:200]
        return StorageRefused(f"{self.name}: {self.where} refused to {doing}: {code or status}"
                              + (f" ({message})" if message else ""))

    @staticmethod
    def code(exc: DepotError) -> str:
        """The S3 error code behind a failure ("" when it was no S3 answer)."""
        return getattr(exc, "s3_code", "")

    # --- names ---------------------------------------------------------------------------------

    def key(self, path: str) -> str:
        """The object key of an escaped inventory path under a library folder; StorageRefused for
        a path outside the libraries or a name that cannot be an S3 key."""
        try:
            raw = library_parts(path)
        except BadPath as exc:
            raise StorageRefused(f"{path!r} is not a path inside a library folder: "
                                 f"{exc.message}") from None
        try:
            name = "/".join(part.decode("utf-8") for part in raw)
        except (UnicodeDecodeError, ValueError):
            raise StorageRefused(f"{path} cannot be stored at {self.name}: S3 object names must "
                                 "be valid UTF-8; rename it at central") from None
        key = self.base + name
        if len(key.encode("utf-8")) > MAX_KEY_BYTES:
            raise StorageRefused(f"{path} cannot be stored at {self.name}: its S3 object name "
                                 f"would be longer than {MAX_KEY_BYTES} bytes")
        return key

    def _path(self, key: str) -> str | None:
        """The escaped inventory path of an object key, None for keys that are no asset file."""
        parts = key[len(self.base):].split("/")
        if len(parts) < 2 or parts[0] not in LIBRARIES or is_ignored_entry(parts[1]):
            return None
        return "/".join(escape_component(part.encode("utf-8")) for part in parts)

    # --- the storage interface -----------------------------------------------------------------

    def check(self) -> None:
        """List, write and delete a probe object: each failure told in words a person follows."""
        probe = f"{self.base}.depot-probe-{uuid.uuid4().hex}"
        self.call("list the bucket", "list_objects_v2", client=self.probe_client,
                  Bucket=self.bucket, Prefix=self.base, MaxKeys=1)
        self.call("write objects", "put_object", client=self.probe_client, Bucket=self.bucket,
                  Key=probe, Body=b"Depot connection test; safe to delete\n")
        self.call("delete objects", "delete_object", client=self.probe_client, Bucket=self.bucket,
                  Key=probe)

    def ping(self) -> None:
        """One listing of a key: the health check writes nothing."""
        self.call("list the bucket", "list_objects_v2", client=self.probe_client,
                  Bucket=self.bucket, Prefix=self.base, MaxKeys=1)

    def _pages(self, method: str, doing: str, **params) -> Iterator[dict]:
        try:
            yield from self.client.get_paginator(method).paginate(Bucket=self.bucket, **params)
        except (ClientError, BotoCoreError) as exc:
            raise self.failure(exc, doing) from None

    def walk(self, problems: list[str], verify: bool = False) -> Iterator[FileEntry]:
        """Every object under the library folders, by listing (sizes, times, ETags); `verify` has
        nothing to hash here: a verify reads objects through open_read."""
        for library in LIBRARIES:
            files: set[str] = set()
            for page in self._pages("list_objects_v2", "list the bucket",
                                    Prefix=f"{self.base}{library}/"):
                self.check_cancelled()
                for obj in page.get("Contents", []):
                    key = obj["Key"]
                    if key.endswith("/"):
                        continue  # a "folder" some consoles create: no content
                    path = self._path(key)
                    if path is None:
                        continue
                    parts = path.split("/")
                    if "" in parts:
                        problems.append(f"{path}: an empty name in the path, skipped")
                        continue
                    if any("/".join(parts[:n]) in files for n in range(2, len(parts))):
                        problems.append(f"{path}: a file of the same name as its folder is "
                                        "there too, skipped")
                        continue
                    files.add(path)
                    yield FileEntry(path, obj["Size"], _mtime_ns(obj["LastModified"]), key,
                                    hashes=_hashes(obj.get("ETag")))

    def head(self, key: str, doing: str = "read object details") -> dict | None:
        """HEAD an object (with its checksum where the server keeps one); None when absent."""
        mode = {"ChecksumMode": "ENABLED"} if self.checksum else {}  # not for servers without
        try:
            return self.client.head_object(Bucket=self.bucket, Key=key, **mode)
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return None
            raise self.failure(exc, doing) from None
        except BotoCoreError as exc:
            raise self.failure(exc, doing) from None

    @staticmethod
    def recorded(head: dict) -> tuple[str | None, dict[str, str]]:
        """(our SHA-256 from the metadata if well-formed, the provider's hashes) of a HEAD."""
        sha = (head.get("Metadata") or {}).get("sha256", "").strip().lower()
        full = head.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT"
        hashes = _hashes(head.get("ETag"), head.get("ChecksumCRC64NVME") if full else None)
        return (sha if SHA256_RE.fullmatch(sha) else None), hashes

    def fill_hashes(self, entries: list[FileEntry]) -> None:
        """HEAD each object (a few at once) for the SHA-256 Depot recorded in its metadata."""
        def fill(entry: FileEntry) -> None:
            self.check_cancelled()
            head = self.head(entry.handle or self.key(entry.path))
            if head is None:
                entry.error = "vanished during the scan"
                return
            etag = _etag(head.get("ETag"))
            if head.get("ContentLength") != entry.size or etag != entry.hashes.get("etag", etag):
                entry.error = "changed while being scanned; looked at again by the next scan"
                return
            entry.sha256, hashes = self.recorded(head)
            entry.hashes.update(hashes)

        at_once(fill, entries, HEAD_THREADS, "s3-head")

    def open_read(self, entry: FileEntry) -> BinaryIO:
        """The object's content as a stream (GetObject); FileNotFoundError when it is gone."""
        key = entry.handle or self.key(entry.path)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                raise FileNotFoundError(entry.path) from None
            raise self.failure(exc, "read objects") from None
        except BotoCoreError as exc:
            raise self.failure(exc, "read objects") from None
        body = response["Body"]
        return BodyStream(body.read, body.close, self.name)

    def stat(self, entry: FileEntry) -> tuple[int, int] | None:
        head = self.head(entry.handle or self.key(entry.path))
        return None if head is None else (head["ContentLength"], _mtime_ns(head["LastModified"]))

    def space(self) -> tuple[int | None, int | None]:
        return None, None

    def delete(self, path: str) -> None:
        """Delete the object, or every object of the folder asset, in batches; absent is fine."""
        key = self.key(path)
        self.call("delete objects", "delete_object", Bucket=self.bucket, Key=key)
        batch: list[dict] = []
        for page in self._pages("list_objects_v2", "list the bucket", Prefix=key + "/"):
            batch.extend({"Key": obj["Key"]} for obj in page.get("Contents", []))
            while len(batch) >= 1000:
                self._delete_batch(batch[:1000])
                del batch[:1000]
        if batch:
            self._delete_batch(batch)

    def _delete_batch(self, objects: list[dict]) -> None:
        answer = self.call("delete objects", "delete_objects", Bucket=self.bucket,
                           Delete={"Objects": objects, "Quiet": True})
        errors = [e for e in answer.get("Errors", []) if e.get("Code") != "NoSuchKey"]
        if errors:
            first = errors[0]
            raise StorageRefused(f"{self.name}: {len(errors)} object(s) could not be deleted, "
                                 f"e.g. {first.get('Key')}: {first.get('Code')}")

    def download_link(self, path: str, ttl_seconds: int) -> str:
        """A presigned GET of the object, valid for `ttl_seconds` (at most a week)."""
        if not 1 <= ttl_seconds <= MAX_LINK_SECONDS:
            raise DepotError(f"an S3 download link lives from 1 s to {MAX_LINK_SECONDS} s")
        return self.call("sign a download link", "generate_presigned_url",
                         ClientMethod="get_object", ExpiresIn=int(ttl_seconds),
                         Params={"Bucket": self.bucket, "Key": self.key(path)})

    def upload(self, source: Source, state: UploadState) -> Upload:
        """Resume this file's multipart upload from `state` (ListParts) or start one."""
        return _S3Upload(self, source, state)

    def abort_quietly(self, record: dict | None) -> None:
        """Best effort: abort an upload we no longer want (the weekly sweep catches the rest)."""
        if not record or not record.get("upload_id") or not record.get("key"):
            return
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=record["key"],
                                               UploadId=record["upload_id"])
        except (ClientError, BotoCoreError) as exc:
            log.info("%s: could not abort an old upload (%s); the sweep will", self.name,
                     type(exc).__name__)

    def sweep_uploads(self, max_age_seconds: int, keep=frozenset()) -> int:
        """Abort multipart uploads under the library folders initiated over max_age ago, except
        those a copy still works on (`keep`: their UploadIds)."""
        cutoff = datetime.now(timezone.utc) - timedelta(seconds=max_age_seconds)
        aborted = 0
        for library in LIBRARIES:
            for page in self._pages("list_multipart_uploads", "list partial uploads",
                                    Prefix=f"{self.base}{library}/"):
                for upload in page.get("Uploads", []):
                    if upload["Initiated"] >= cutoff or upload["UploadId"] in keep:
                        continue
                    try:
                        self.call("abort partial uploads", "abort_multipart_upload",
                                  Bucket=self.bucket, Key=upload["Key"],
                                  UploadId=upload["UploadId"])
                    except StorageRefused as exc:
                        if self.code(exc) != "NoSuchUpload":
                            raise
                    aborted += 1
        return aborted


class _S3Upload(Upload):
    """One file's upload: a single PutObject when it fits in one part, else a multipart upload
    whose UploadId and parts done are kept in the UploadState and resumed through ListParts."""

    def __init__(self, backend: S3Storage, source: Source, state: UploadState):
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
        return {"size": self.source.size, "mtime_ns": _mtime_ns(head["LastModified"]),
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
            if S3Storage.code(exc) != "NoSuchUpload":
                raise
            self.upload_id, self.checksum = None, self.backend.checksum
            return False
        recorded = data.get("parts") or {}
        for number, (etag, crc) in listed.items():
            mine = recorded.get(str(number))
            if mine and _etag(mine[0]) == _etag(etag) and mine[1] is not None:
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
                if S3Storage.code(exc) not in NO_CHECKSUM_SUPPORT:
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
            code = S3Storage.code(exc)
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
                if S3Storage.code(exc) not in BAD_PARTS:
                    raise
                done = self._already_there() if S3Storage.code(exc) == "NoSuchUpload" else None
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
        return {"size": self.source.size, "mtime_ns": _mtime_ns(head["LastModified"]),
                "sha256": sha, "hashes": hashes}

    def abort(self) -> None:
        """Abort the multipart upload (a PutObject has nothing to abort); absent is fine."""
        if self.upload_id:
            try:
                self.backend.call("abort an upload", "abort_multipart_upload",
                                  Bucket=self.backend.bucket, Key=self.key, UploadId=self.upload_id)
            except StorageRefused as exc:
                if S3Storage.code(exc) != "NoSuchUpload":
                    raise
