"""A cloud DP on S3-compatible storage (AWS S3, MinIO, Wasabi, R2 ...) through boto3 with keys.

An asset file `Images/Win11.wim` is the object `<prefix>/Images/Win11.wim`; only keys under the six
library folders count. Uploads (portal/storage/s3_upload.py) are multipart uploads driven part by
part (never boto3's managed transfer, which aborts on failure and cannot resume elsewhere): the
UploadId and the parts done go into the copy's UploadState, so another process resumes through
ListParts; an update copies the runs the object already has and uploads the rest (s3_plan.py).
Our SHA-256 travels as object metadata (`x-amz-meta-sha256`; a multipart checksum is composite
and not a file's SHA-256), which a rescan reads with a HEAD instead of downloading; a full-object
CRC64NVME checks the bytes in transit where the server supports it. Nothing here ever puts the
secret key into a message or log.
"""
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
    DepotError,
    StorageRefused,
    StorageUnavailable,
)
from portal.core.files import FileEntry
from portal.core.libraries import LIBRARIES, is_ignored_entry
from portal.core.names import escape_component
from portal.core.paths import library_parts
from portal.storage import answers
from portal.storage.answers import failure_detail, host_port, unreachable_words
from portal.storage.base import Source, StorageBackend, StorageEnv, Upload, UploadState
from portal.storage.kit import BodyStream, at_once
from portal.storage.s3_upload import MiB, S3Upload, crc64nvme, object_mtime_ns, plain_etag, s3_code

log = logging.getLogger(__name__)

MIN_PART, MAX_KEY_BYTES = 5 * MiB, 1024
MAX_LINK_SECONDS = 7 * 86400  # SigV4 presigned URLs live at most a week
HEAD_THREADS = 8
DELETE_BATCH = 1000  # the most keys one DeleteObjects call takes
SHA256_RE, MD5_RE = re.compile(r"[0-9a-f]{64}"), re.compile(r"[0-9a-f]{32}")
# Codes after which trying again later can help; anything else 4xx is a refusal.
PASSING = {"RequestTimeout", "InternalError", "ServiceUnavailable", "SlowDown", "Throttling",
           "ThrottlingException", "RequestThrottled", "TooManyRequests", "OperationAborted"}
def _hashes(etag: str | None, crc: str | None = None) -> dict[str, str]:
    """The provider hashes of an object: its ETag; the MD5 where the ETag looks like one (a
    single PUT; a rescan then matches content put there by others to central's without a
    download; an encrypted object's ETag that only looks like an MD5 simply matches nothing);
    the full-object CRC64NVME where the server keeps one."""
    hashes = {"etag": plain_etag(etag)}
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
    reuses_parts = True  # an update copies the runs the object already has (UploadPartCopy)

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
        # (key, ETag) of objects a copy part was refused from: no delta plans copy from them.
        self.refused_copies: set[tuple[str, str]] = set()
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
            where = host_port(self.endpoint_url) if self.endpoint_url else self.where
            return StorageUnavailable(f"{self.name}: {unreachable_words(exc, where)} while "
                                      f"trying to {doing}",
                                      detail=failure_detail(exc, f"S3 {doing} at {self.where}"))
        error = exc.response.get("Error", {})
        code = answers.shown(str(error.get("Code") or ""), 60)
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
            region = answers.shown(region, 40)
            hint = f" (it is in {region})" if region else ""
            return StorageRefused(f"{self.name}: {bucket} is in another region{hint}: set the "
                                  "DP's region", status=400)
        if code in PASSING or status >= 500 or status == 429:
            return StorageUnavailable(f"{self.name}: {self.where} failed to {doing} "
                                      f"({code or status}); trying again later")
        message = answers.shown(error.get("Message") or "", 200)
        return StorageRefused(f"{self.name}: {self.where} refused to {doing}: {code or status}"
                              + (f" ({message})" if message else ""))

    code = staticmethod(s3_code)

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
                    yield FileEntry(path, obj["Size"], object_mtime_ns(obj["LastModified"]), key,
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
            etag = plain_etag(head.get("ETag"))
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
        if head is None:
            return None
        return head["ContentLength"], object_mtime_ns(head["LastModified"])

    def space(self) -> tuple[int | None, int | None]:
        return None, None

    def delete(self, path: str) -> None:
        """Delete the object, or every object of the folder asset, in batches; absent is fine."""
        key = self.key(path)
        self.call("delete objects", "delete_object", Bucket=self.bucket, Key=key)
        batch: list[dict] = []
        for page in self._pages("list_objects_v2", "list the bucket", Prefix=key + "/"):
            batch.extend({"Key": obj["Key"]} for obj in page.get("Contents", []))
            while len(batch) >= DELETE_BATCH:
                self._delete_batch(batch[:DELETE_BATCH])
                del batch[:DELETE_BATCH]
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
        return S3Upload(self, source, state)

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
