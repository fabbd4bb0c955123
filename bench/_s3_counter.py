"""moto's S3 server as `moto_server` runs it (werkzeug, threaded, moto's request handler), with a
count of the request bodies it received, by S3 operation: what a client uploaded. For
bench/delta.py, which starts it as its own process: `python -m bench._s3_counter` from the
repository root.

It binds a free loopback port and says which the way werkzeug does ("Running on
http://127.0.0.1:PORT"). GET /_bench/counts answers the totals since it started, as JSON:
{operation: {"requests": n, "body_bytes": bytes read from the request bodies, "copied_bytes":
bytes named by x-amz-copy-source-range}}. The operations are UploadPart, PutObject (bodies that
are object data), UploadPartCopy, CopyObject (server-side copies: their bytes never cross the
network) and "other" (CreateMultipartUpload, CompleteMultipartUpload's XML, HEAD, GET...).
Body bytes are counted as moto's handlers read them from the WSGI input: the payload that
arrived, whatever its framing; request lines and headers are not counted.
"""
import json
import sys
import threading
from urllib.parse import parse_qs

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

COUNTS_PATH = "/_bench/counts"


class CountingInput:
    """A WSGI input stream that adds what is read from it to `counter[key]`."""

    def __init__(self, stream, add):
        self._stream, self._add = stream, add

    def read(self, *args):
        data = self._stream.read(*args)
        self._add(len(data))
        return data

    def readinto(self, buffer):
        n = self._stream.readinto(buffer)
        self._add(n or 0)
        return n

    def readline(self, *args):
        line = self._stream.readline(*args)
        self._add(len(line))
        return line

    def __iter__(self):
        return iter(self.readline, b"")

    def __getattr__(self, name):
        return getattr(self._stream, name)


def operation(environ) -> str:
    """Which S3 operation a request is, as far as uploads go."""
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    if environ["REQUEST_METHOD"] != "PUT":
        return "other"
    copying = "HTTP_X_AMZ_COPY_SOURCE" in environ
    if "uploadId" in query and "partNumber" in query:
        return "UploadPartCopy" if copying else "UploadPart"
    if "uploadId" in query or not environ.get("PATH_INFO", "/").strip("/").count("/"):
        return "other"  # a bucket-level PUT (CreateBucket, a bucket's settings)
    return "CopyObject" if copying else "PutObject"


def copied_bytes(environ) -> int:
    """The length of an x-amz-copy-source-range ("bytes=first-last"), 0 without one."""
    value = environ.get("HTTP_X_AMZ_COPY_SOURCE_RANGE", "")
    if not value.startswith("bytes="):
        return 0
    first, _, last = value[len("bytes="):].partition("-")
    return int(last) - int(first) + 1


class Counter:
    """WSGI middleware counting request bodies by operation in front of moto's app."""

    def __init__(self, app):
        self.app, self.lock, self.counts = app, threading.Lock(), {}

    def _entry(self, name: str) -> dict:
        return self.counts.setdefault(name, {"requests": 0, "body_bytes": 0, "copied_bytes": 0})

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == COUNTS_PATH:
            with self.lock:
                body = json.dumps(self.counts).encode()
            start_response("200 OK", [("Content-Type", "application/json"),
                                      ("Content-Length", str(len(body)))])
            return [body]
        name = operation(environ)
        with self.lock:
            entry = self._entry(name)
            entry["requests"] += 1
            entry["copied_bytes"] += copied_bytes(environ)

        def add(n: int) -> None:
            with self.lock:
                entry["body_bytes"] += n

        environ["wsgi.input"] = CountingInput(environ["wsgi.input"], add)
        return self.app(environ, start_response)


def main() -> int:
    server = make_server("127.0.0.1", 0, Counter(DomainDispatcherApplication(create_backend_app)),
                         threaded=True, request_handler=MotoRequestHandler)
    print(f"Running on http://127.0.0.1:{server.server_port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
