"""S3 over real HTTP: moto's server on a loopback port, and S3 DPs that point at it.

The server is moto's own WSGI app and request handler (what `ThreadedMotoServer` runs), served
here by werkzeug so that a test can stop it (the port then refuses connections) and start it again
on the same port with its buckets intact, and so that the test sees the requests it gets. In front
of moto sit rules of real S3 that moto lacks: a request signed with a clock more than 15 minutes
away from the server's is refused with 403 RequestTimeTooSkewed (`server.clock_offset`); a
presigned URL past its X-Amz-Expires is refused with 403 AccessDenied; a body whose CRC64NVME is
not the one its x-amz-checksum-crc64nvme header names is refused with 400 BadDigest; an
UploadPartCopy whose x-amz-copy-source-if-match is not the source's ETag now is refused with 412
PreconditionFailed, one whose range is not inside the source with 400 InvalidArgument; and, where
a test asks for it (`server.checks_complete`), a CompleteMultipartUpload whose part or
full-object CRC64NVME is not that of the parts' bytes is refused (400 InvalidPart, BadDigest).
"""
import base64
import io
import json
import logging
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from urllib.parse import parse_qs, unquote, urlencode, urlsplit
from xml.etree import ElementTree

import boto3
import pytest
import requests
from awscrt.checksums import combine_crc64nvme, crc64nvme
from botocore.config import Config
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends
from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app

from portal.extensions import db
from portal.models import DistributionPoint
from portal.services import secrets
from tests.servers import LoopbackServer

BUCKET = "depot-test"
CREDENTIALS = {"access_key_id": "AKIADEPOTTEST0000001",
               "secret_access_key": "depot/Test+Secret0123456789abcdefSECRET"}
SKEW_LIMIT = 15 * 60
SKEWED = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>RequestTimeTooSkewed</Code>'
          b"<Message>The difference between the request time and the current time is too large."
          b"</Message><MaxAllowedSkewMilliseconds>900000</MaxAllowedSkewMilliseconds></Error>")
EXPIRED = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
           b"<Message>Request has expired</Message></Error>")
BAD_DIGEST = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>BadDigest</Code><Message>The '
              b"CRC64NVME you specified did not match the calculated checksum.</Message></Error>")


def s3_error(code: str, message: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
            f"<Message>{message}</Message></Error>").encode()


def b64_crc(data: bytes) -> str:
    return base64.b64encode(crc64nvme(data).to_bytes(8, "big")).decode()


class _QuietHandler(MotoRequestHandler):
    def log_request(self, code="-", size="-"):  # one line per request drowns a failure's output
        pass


class MotoS3:
    """moto's S3 on 127.0.0.1: `url`, `stop()`/`start()`, `reset()`, and what it was asked:
    `calls[(method, operation)]` (operation: object, list, uploads, upload, part, copy), `parts`
    (the part numbers of every UploadPart, in order), `copies` (those of every UploadPartCopy),
    `received` (bytes of every PutObject and UploadPart) and `downloaded` (the key of every
    GetObject).
    Test controls: `page_size` (listings give at most this many keys a page, whatever the client
    asks), `damage_next_upload()` (the next PutObject or UploadPart arrives with one byte
    changed, as a damaged network would give it), `before_next_copy(do)` (`do()` runs just
    before the next UploadPartCopy is served), `refuse_next_copy(status, code)` and
    `checks_complete` (see the module)."""

    def __init__(self):
        self.moto = DomainDispatcherApplication(create_backend_app)
        self.calls: Counter = Counter()
        self.parts: list[int] = []
        self.copies: list[int] = []
        self.downloaded: list[str] = []
        self.received = 0
        self.checks_complete = False
        self._next_copy: list = []  # what the next UploadPartCopy meets: a callable or a refusal
        self.clock_offset: float | None = None  # seconds the server's clock is ahead
        # How CreateMultipartUpload takes a checksum algorithm: "take" (as moto does), "refuse"
        # (400 InvalidRequest) or "ignore" (not echoed), as older S3-compatible servers do.
        self.checksums = "take"
        self.page_size: int | None = None
        self._damage_next = False
        self.lock = threading.Lock()
        self._served = LoopbackServer(self._app, "moto-s3", request_handler=_QuietHandler)
        self.url = ""
        self.start()

    def _app(self, environ, start_response):
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        method = environ["REQUEST_METHOD"]
        operation = ("copy" if "partNumber" in query and "HTTP_X_AMZ_COPY_SOURCE" in environ
                     else "part" if "partNumber" in query else "uploads" if "uploads" in query
                     else "upload" if "uploadId" in query else "list" if "list-type" in query
                     else "object")
        with self.lock:
            self.calls[(method, operation)] += 1
            if operation == "part" and method == "PUT":
                self.parts.append(int(query["partNumber"][0]))
            if operation == "copy" and method == "PUT":
                self.copies.append(int(query["partNumber"][0]))
            next_copy = self._next_copy.pop(0) if operation == "copy" and self._next_copy \
                else None
            if operation == "object" and method == "GET":
                self.downloaded.append(environ.get("PATH_INFO", "").split("/", 2)[-1])
            if operation in ("object", "part") and method == "PUT":
                self.received += int(environ.get("CONTENT_LENGTH") or 0)
            damage = self._damage_next and method == "PUT" and operation in ("part", "object")
            if damage:
                self._damage_next = False
        if operation == "list" and self.page_size:
            query["max-keys"] = [str(self.page_size)]
            environ["QUERY_STRING"] = urlencode(query, doseq=True)
        if damage:
            body = bytearray(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))
            if body:
                body[len(body) // 2] ^= 0xFF
            environ["wsgi.input"] = io.BytesIO(bytes(body))
        signed = environ.get("HTTP_X_AMZ_DATE") or (query.get("X-Amz-Date") or [None])[0]
        now = time.time() + (self.clock_offset or 0)
        when = datetime.strptime(signed, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc) \
            .timestamp() if signed else None
        if self.clock_offset is not None and when and abs(now - when) > SKEW_LIMIT:
            return self._refuse(environ, start_response, "403 Forbidden", SKEWED)
        lifetime = (query.get("X-Amz-Expires") or [None])[0]
        if when and lifetime and now > when + int(lifetime):
            return self._refuse(environ, start_response, "403 Forbidden", EXPIRED)
        claimed = environ.get("HTTP_X_AMZ_CHECKSUM_CRC64NVME")
        if claimed and method == "PUT" and operation in ("part", "object"):
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
            if base64.b64encode(crc64nvme(body).to_bytes(8, "big")).decode() != claimed:
                return self._refuse(environ, start_response, "400 Bad Request", BAD_DIGEST)
        if operation == "copy" and method == "PUT":
            if callable(next_copy):
                next_copy()
            elif next_copy is not None:
                return self._refuse(environ, start_response, *next_copy)
            refused = self._copy_refused(environ)
            if refused:
                return self._refuse(environ, start_response, *refused)
        if operation == "upload" and method == "POST" and self.checks_complete:
            refused = self._complete_refused(environ, query["uploadId"][0])
            if refused:
                return self._refuse(environ, start_response, *refused)
        if operation == "uploads" and method == "POST" and self.checksums != "take" \
                and "HTTP_X_AMZ_CHECKSUM_ALGORITHM" in environ:
            if self.checksums == "refuse":
                refused = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidRequest'
                           b"</Code><Message>Checksum algorithm not supported</Message></Error>")
                start_response("400 Bad Request", [("Content-Type", "application/xml"),
                                                   ("Content-Length", str(len(refused)))])
                return [refused]
            environ.pop("HTTP_X_AMZ_CHECKSUM_ALGORITHM")
            environ.pop("HTTP_X_AMZ_CHECKSUM_TYPE", None)
        return self.moto(environ, start_response)

    @staticmethod
    def _backend():
        return s3_backends[DEFAULT_ACCOUNT_ID]["aws"]

    def _copy_refused(self, environ) -> tuple[str, bytes] | None:
        """What real S3 answers to an UploadPartCopy whose source is not the ETag it must be, or
        whose range is not inside the source; None when it takes it."""
        source = urlsplit(environ["HTTP_X_AMZ_COPY_SOURCE"])
        bucket, key = unquote(source.path).lstrip("/").split("/", 1)
        found = self._backend().get_object(bucket, key)
        if found is None:
            return "404 Not Found", s3_error("NoSuchKey", "The specified key does not exist.")
        wanted = environ.get("HTTP_X_AMZ_COPY_SOURCE_IF_MATCH")
        if wanted and wanted.strip('"') != found.etag.strip('"'):
            return "412 Precondition Failed", s3_error(
                "PreconditionFailed", "At least one of the pre-conditions you specified did not "
                "hold")
        asked = environ.get("HTTP_X_AMZ_COPY_SOURCE_RANGE")
        if asked:
            first, _, last = asked.removeprefix("bytes=").partition("-")
            if not (first.isdigit() and last.isdigit() and int(first) <= int(last) < found.size):
                return "400 Bad Request", s3_error(
                    "InvalidArgument", "Range specified is not valid for source object of size: "
                    f"{found.size}")
        return None

    def _complete_refused(self, environ, upload_id: str) -> tuple[str, bytes] | None:
        """What real S3 answers to a CompleteMultipartUpload whose CRC64NVMEs (each part's, the
        whole object's) are not those of the parts' bytes; None when they are (or none given).
        The body is read here and handed on to moto."""
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)
        multipart = next((m for bucket in self._backend().buckets.values()
                          for m in bucket.multiparts.values() if m.id == upload_id), None)
        if multipart is None or not body:
            return None
        full = None
        for item in ElementTree.fromstring(body):
            fields = {child.tag.rsplit("}", 1)[-1]: child.text for child in item}
            part = multipart.parts.get(int(fields.get("PartNumber") or 0))
            if part is None:
                return None  # moto answers InvalidPart itself
            if fields.get("ChecksumCRC64NVME") not in (None, b64_crc(part.value)):
                return "400 Bad Request", s3_error(
                    "InvalidPart", "One or more of the specified parts could not be found. The "
                    "part may not have been uploaded, or the specified checksum may not match.")
            crc = crc64nvme(part.value)
            full = crc if full is None else combine_crc64nvme(full, crc, len(part.value))
        claimed = environ.get("HTTP_X_AMZ_CHECKSUM_CRC64NVME")
        if claimed and full is not None and claimed != base64.b64encode(
                full.to_bytes(8, "big")).decode():
            return "400 Bad Request", BAD_DIGEST
        return None

    @staticmethod
    def _refuse(environ, start_response, status: str, body: bytes):
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response(status, [("Content-Type", "application/xml"),
                                ("Content-Length", str(len(body)))])
        return [body]

    @property
    def running(self) -> bool:
        return self._served.running

    def start(self) -> None:
        """Serve on the server's port (a new one the first time)."""
        self.url = self._served.start()

    def stop(self) -> None:
        """Stop serving and close the listening socket: connections are refused until start()."""
        self._served.stop()

    def reset(self) -> None:
        """Forget every bucket, user and count; no IAM checks, a right clock."""
        with requests.Session() as http:
            http.post(f"{self.url}/moto-api/reset", timeout=10).raise_for_status()
            http.post(f"{self.url}/moto-api/reset-auth", data=b"inf", timeout=10).raise_for_status()
        self.forget_requests()
        self.clock_offset, self.checksums, self.page_size = None, "take", None
        self._damage_next, self.checks_complete = False, False
        self._next_copy.clear()

    def damage_next_upload(self) -> None:
        with self.lock:
            self._damage_next = True

    def before_next_copy(self, do) -> None:
        """Run `do()` (in the server's thread) just before the next UploadPartCopy is served."""
        with self.lock:
            self._next_copy.append(do)

    def refuse_next_copy(self, status: str = "403 Forbidden", code: str = "AccessDenied") -> None:
        """Refuse the next UploadPartCopy with this HTTP status and S3 error code."""
        with self.lock:
            self._next_copy.append((status, s3_error(code, "Refused by the test")))

    def forget_requests(self) -> None:
        with self.lock:
            self.calls.clear()
            self.parts.clear()
            self.copies.clear()
            self.downloaded.clear()
            self.received = 0

    def client(self, service: str = "s3", credentials: dict = CREDENTIALS):
        """A boto3 client of the test's own, to look at (or arrange) what the server holds."""
        with SESSION_LOCK:  # one session for the tests (each new one loads botocore's models)
            return SESSION.client(
                service, endpoint_url=self.url, region_name="us-east-1",
                aws_access_key_id=credentials["access_key_id"],
                aws_secret_access_key=credentials["secret_access_key"],
                config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))


SESSION, SESSION_LOCK = boto3.session.Session(), threading.Lock()


@pytest.fixture(scope="session")
def moto_server():
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = MotoS3()
    yield server
    server.stop()


@pytest.fixture
def s3(moto_server):
    """The moto server, emptied, with the bucket BUCKET; stopped servers are started again."""
    if not moto_server.running:
        moto_server.start()
    moto_server.reset()
    client = moto_server.client()
    client.create_bucket(Bucket=BUCKET)
    client.close()
    moto_server.forget_requests()
    yield moto_server
    if not moto_server.running:
        moto_server.start()


@pytest.fixture
def s3_client(s3):
    """A plain boto3 client on the server: the test's own view of the bucket."""
    client = s3.client()
    yield client
    client.close()


@pytest.fixture
def s3_settings(s3):
    """A cloud DP's settings for the bucket, with a prefix given untidily."""
    return {"endpoint_url": s3.url, "region": "us-east-1", "bucket": BUCKET,
            "prefix": "/depot//hq/"}


@pytest.fixture
def make_s3_dp(app, s3_settings):
    """make_s3_dp(name, **settings) -> an S3 DP row (online), its keys encrypted as Depot does."""
    def _make(name="Cloud S3", credentials=CREDENTIALS, **settings):
        dp = DistributionPoint(name=name, kind="cloud", provider="s3", site="Cloud",
                               settings={**s3_settings, **settings},
                               secret=secrets.encrypt(json.dumps(credentials)), status="online")
        db.session.add(dp)
        db.session.commit()
        return dp
    return _make


@pytest.fixture
def s3_dp(make_s3_dp):
    return make_s3_dp()


@pytest.fixture
def iam_user(s3):
    """iam_user(actions) -> credentials of a new IAM user allowed only `actions` (e.g.
    ["s3:ListBucket"]); from then on the server checks every request's key, signature and
    permissions, as real S3 does."""
    iam = s3.client("iam")

    def _user(actions, name="depot"):
        iam.create_user(UserName=name)
        key = iam.create_access_key(UserName=name)["AccessKey"]
        iam.put_user_policy(UserName=name, PolicyName="depot", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}))
        requests.post(f"{s3.url}/moto-api/reset-auth", data=b"0", timeout=10).raise_for_status()
        return {"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}
    yield _user
    iam.close()
    requests.post(f"{s3.url}/moto-api/reset-auth", data=b"inf", timeout=10).raise_for_status()
