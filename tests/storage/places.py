"""The places a DP's content lives, seen from outside its backend: what a test arranges and looks
at "by hand" (as a person, another program or a failing disk would), so one contract suite runs
against every backend. One `Place` a kind of DP: central's folder, a DP node on a loopback port,
S3 on moto's server, OneDrive, Google Drive and Dropbox on their protocol servers (tests/fakes).

Paths given to a place are relative to the DP's folder ("Images/a.wim", "Other/notes.txt"),
plain names only. What a place cannot tell or do says so with None (or False).
"""
import hashlib
import io
import json
import os
import shutil
import time
from contextlib import contextmanager

from portal.core.libraries import LIBRARIES
from portal.extensions import db
from portal.models import DistributionPoint
from portal.services import secrets
from portal.services.backends import open_storage
from portal.services.distribution_points import central_dp
from portal.storage.base import Source, StorageBackend, UploadState
from tests.cloud.dropbox_fixtures import dropbox_settings
from tests.cloud.gdrive_fixtures import gdrive_settings
from tests.cloud.onedrive_fixtures import onedrive_settings
from tests.cloud.s3_fixtures import BUCKET
from tests.node_fixtures import KEY
from tests.servers import LoopbackServer

MiB = 1024 * 1024
PIECE = 256 * 1024  # the piece size of a backend that leaves it to the copy (a DP node)
S3_PART = 5 * MiB  # S3's smallest part: a file just over it is a two-part upload
S3_PREFIX = "depot/hq/"  # what s3_settings' "/depot//hq/" comes to
KINDS = ("central", "node", "s3", "onedrive", "gdrive", "dropbox")
UPLOADING = KINDS[1:]  # every kind but central, whose files arrive by other means


# --- uploads as the copy engine drives them -------------------------------------------------------

def source_of(path: str, data: bytes, hashes: dict | None = None) -> Source:
    """A central file as a copy hands it to a backend."""
    return Source(path, len(data), hashlib.sha256(data).hexdigest(), dict(hashes or {}),
                  lambda offset, length: data[offset:offset + length])


def send(upload, data: bytes, upto: int | None = None) -> int:
    """Send what the upload misses as the copy engine does: pieces of its chunk size that start at
    multiples of it, in order, a checkpoint after each; stop once `upto` bytes went. Bytes sent."""
    chunk, sent = upload.chunk_size or PIECE, 0
    for start, end in upload.missing():
        position = start
        while position < end:
            if upto is not None and sent >= upto:
                return sent
            length = min(end, (position // chunk + 1) * chunk) - position
            upload.send(position, data[position:position + length])
            upload.checkpoint()
            position += length
            sent += length
    return sent


def upload_file(backend: StorageBackend, path: str, data: bytes) -> dict:
    """Upload a whole file through the backend; what its finish (or `done`) says."""
    upload = backend.upload(source_of(path, data), UploadState())
    if upload.done is not None:
        return upload.done
    send(upload, data)
    return upload.finish()


@contextmanager
def link_clock(offset: float):
    """Links signed inside are signed as if `offset` seconds from now."""
    import portal.core.signing as module

    real = time.time
    module.time = type("Clock", (), {"time": staticmethod(lambda: real() + offset)})
    try:
        yield
    finally:
        module.time = time


def read_all(stream, buffer_size: int = 64 * 1024) -> bytes:
    """A stream read to its end through readinto, as the hashing pool reads."""
    got, buffer = bytearray(), bytearray(buffer_size)
    with stream:
        while n := stream.readinto(buffer):
            got += buffer[:n]
    return bytes(got)


# --- the places -----------------------------------------------------------------------------------

class Place:
    """A DP of one kind, its row `dp`, and what a test does to its content by hand."""

    kind = ""
    uploads = True  # the backend takes uploads
    drops_stale_uploads = True  # an older version's partial upload is aborted by the next one
    damage: str | None = None  # how damage in transit shows here (see damage_next_upload)

    def __init__(self, dp: DistributionPoint):
        self.dp = dp

    def open(self) -> StorageBackend:
        """The DP's backend, as a job opens it (from the row as the database has it now)."""
        db.session.expire_all()
        return open_storage(db.session.get(DistributionPoint, self.dp.id))

    def secrets(self) -> list[str]:
        """The credentials of the DP, which nothing a person or an endpoint sees may hold."""
        if not self.dp.secret:
            return []
        stored = secrets.decrypt(self.dp.secret)
        try:
            values = json.loads(stored)
        except ValueError:
            return [stored]
        return [v for k, v in values.items() if k in ("access_token", "refresh_token",
                                                        "secret_access_key")]

    def put(self, path: str, data: bytes) -> None:
        """Write a file there by hand (replacing what is at the path)."""
        raise NotImplementedError

    def read(self, path: str) -> bytes | None:
        """The content of the file at the path, None when there is none."""
        raise NotImplementedError

    def files(self) -> list[str]:
        """Every file in the DP's folder, sorted, Depot's own records included."""
        raise NotImplementedError

    def remove(self, path: str) -> None:
        """Delete a file or a folder there by hand."""
        raise NotImplementedError

    def corrupt(self, path: str) -> bool:
        """Change a byte of a file in place (same size and time, as a failing disk does); False
        where files cannot change in place."""
        raise NotImplementedError

    def break_dp(self) -> None:
        """Make the DP unusable: its server down, or its folder gone."""
        raise NotImplementedError

    def drop_library(self, library: str) -> bool:
        """Remove a library folder by hand; False where the backend makes no folders."""
        return False

    def libraries(self) -> set[str] | None:
        """The library folders there, None where there are no folders."""
        return None

    def partial_uploads(self) -> int | None:
        """Unfinished uploads the DP holds, None where it cannot tell."""
        return None

    def expected_space(self) -> tuple | None:
        """(free, total) as the DP counts them, None where they change by themselves (a disk)."""
        return None

    def small_pages(self) -> bool:
        """Make listings come in pages of two; False where there are no pages."""
        return False

    def listings(self) -> int | None:
        """Listing requests so far, None where the DP is not listed page by page."""
        return None

    def downloads(self) -> list[str] | None:
        """Content files read so far (Depot's own records left out), None where not counted."""
        return None

    def damage_next_upload(self) -> None:
        """The next upload's bytes arrive (or are stored) with one byte changed."""
        raise NotImplementedError

    def expired_link(self, backend: StorageBackend, path: str) -> str:
        """A download link of the file that is no longer good: by default one this server signed
        two minutes ago for one minute (central's, a node's, Drive's relay links)."""
        with link_clock(-120):
            return backend.download_link(path, 60)


class FolderPlace(Place):
    """A content root on this machine's file system (central's, a DP node's)."""

    def __init__(self, dp: DistributionPoint, root: str):
        super().__init__(dp)
        self.root = root

    def _at(self, path: str) -> str:
        return os.path.join(self.root, *path.split("/"))

    def put(self, path: str, data: bytes) -> None:
        os.makedirs(os.path.dirname(self._at(path)), exist_ok=True)
        with open(self._at(path), "wb") as fh:
            fh.write(data)

    def read(self, path: str) -> bytes | None:
        try:
            with open(self._at(path), "rb") as fh:
                return fh.read()
        except (FileNotFoundError, IsADirectoryError):
            return None

    def files(self) -> list[str]:
        found = []
        for folder, dirs, names in os.walk(self.root):
            rel = os.path.relpath(folder, self.root)
            if rel.split(os.sep)[0] == ".depot":  # a node's own upload store
                continue
            found += [os.path.normpath(os.path.join(rel, n)).replace(os.sep, "/") for n in names]
        return sorted(found)

    def remove(self, path: str) -> None:
        target = self._at(path)
        shutil.rmtree(target) if os.path.isdir(target) else os.remove(target)

    def corrupt(self, path: str) -> bool:
        target, st = self._at(path), os.stat(self._at(path))
        with open(target, "r+b") as fh:
            fh.seek(st.st_size // 2)
            byte = fh.read(1)
            fh.seek(st.st_size // 2)
            fh.write(bytes([byte[0] ^ 0xFF]))
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # a failing disk keeps the time
        return True


class CentralPlace(FolderPlace):
    """The central DP's own folder; its links are served by this test's central on a port."""

    kind, uploads = "central", False

    def __init__(self, app):
        dp = central_dp()
        super().__init__(dp, dp.root)
        self._served = LoopbackServer(app, "central")
        app.config["DEPOT_PUBLIC_URL"] = self._served.start()
        self.secret_key = app.config["SECRET_KEY"]

    def secrets(self) -> list[str]:
        return [self.secret_key]

    def break_dp(self) -> None:
        shutil.rmtree(self.root)

    def drop_library(self, library: str) -> bool:
        shutil.rmtree(self._at(library))
        return True

    def libraries(self) -> set[str]:
        return {name for name in LIBRARIES if os.path.isdir(self._at(name))}

    def stop(self) -> None:
        self._served.stop()


class NodePlace(FolderPlace):
    """A DP node on a loopback port (tests/node_fixtures.py), added as a local DP."""

    kind, damage = "node", "finish"
    drops_stale_uploads = False  # the node keeps an upload until its own sweep takes it

    def __init__(self, node):
        dp = DistributionPoint(name="Seattle", kind="local", url=node.url, site="Seattle office",
                               secret=secrets.encrypt(KEY), status="online")
        db.session.add(dp)
        db.session.commit()
        super().__init__(dp, node.root)
        self.node, self._damage_next = node, False
        inner = node.app.wsgi_app

        def damaging(environ, start_response):  # in front of the node: the network between
            if self._damage_next and environ["REQUEST_METHOD"] == "PATCH":
                self._damage_next = False
                body = bytearray(environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"])))
                body[len(body) // 2] ^= 0xFF
                environ["wsgi.input"] = io.BytesIO(bytes(body))
            return inner(environ, start_response)

        node.app.wsgi_app = damaging

    def secrets(self) -> list[str]:
        return [KEY]

    def break_dp(self) -> None:
        self.node.stop()

    def partial_uploads(self) -> int:
        store = os.path.join(self.root, ".depot", "uploads")
        return sum(name.endswith(".part") for name in os.listdir(store))

    def damage_next_upload(self) -> None:
        self._damage_next = True


class S3Place(Place):
    """A prefix of a bucket on moto's S3 server (tests/cloud/s3_fixtures.py)."""

    kind, damage = "s3", "refused"

    def __init__(self, server, client, dp):
        super().__init__(dp)
        self.server, self.client = server, client

    def put(self, path: str, data: bytes) -> None:
        self.client.put_object(Bucket=BUCKET, Key=S3_PREFIX + path, Body=data)

    def read(self, path: str) -> bytes | None:
        try:
            body = self.client.get_object(Bucket=BUCKET, Key=S3_PREFIX + path)["Body"]
        except self.client.exceptions.NoSuchKey:
            return None
        with body:
            return body.read()

    def _keys(self, prefix: str = S3_PREFIX) -> list[str]:
        keys = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET,
                                                                          Prefix=prefix):
            keys += [o["Key"] for o in page.get("Contents", [])]
        return keys

    def files(self) -> list[str]:
        return sorted(key[len(S3_PREFIX):] for key in self._keys())

    def remove(self, path: str) -> None:
        for key in [S3_PREFIX + path, *self._keys(S3_PREFIX + path + "/")]:
            self.client.delete_object(Bucket=BUCKET, Key=key)

    def corrupt(self, path: str) -> bool:
        return False  # an object cannot change in place: it is replaced, a rescan's business

    def break_dp(self) -> None:
        self.server.stop()  # the `s3` fixture starts it again

    def partial_uploads(self) -> int:
        return len(self.client.list_multipart_uploads(Bucket=BUCKET, Prefix=S3_PREFIX)
                   .get("Uploads", []))

    def small_pages(self) -> bool:
        self.server.page_size = 2
        return True

    def expected_space(self):
        return None, None  # a bucket has no size

    def listings(self) -> int:
        return self.server.calls[("GET", "list")]

    def downloads(self) -> list[str]:
        return [key[len(S3_PREFIX):] for key in self.server.downloaded]

    def damage_next_upload(self) -> None:
        self.server.damage_next_upload()

    def expired_link(self, backend, path):
        link = backend.download_link(path, 1)
        self.server.clock_offset = 5  # the server's clock says the link's second went by
        return link


class OAuthPlace(Place):
    """A folder in an account of a provider's protocol server (tests/fakes/)."""

    folder = "Depot"
    user = "alice"

    def __init__(self, fake, dp):
        super().__init__(dp)
        self.fake = fake

    def downloads(self) -> list[str]:
        return [p for p in self.fake.downloaded if "/.depot/" not in p]


class OneDrivePlace(OAuthPlace):
    kind, damage = "onedrive", "finish"

    def _at(self, path: str) -> str:
        return f"{self.folder}/{path}"

    def secrets(self) -> list[str]:
        return super().secrets() + list(self.fake.session_tokens)

    def put(self, path, data):
        self.fake.add_file(self.user, self._at(path), data)

    def read(self, path):
        return self.fake.file(self.user, self._at(path))

    def files(self):
        return [p[len(self.folder) + 1:] for p in self.fake.paths(self.user)
                if p.startswith(self.folder + "/")]

    def remove(self, path):
        self.fake.remove(self.user, self._at(path))

    def corrupt(self, path):
        self.fake.corrupt(self.user, self._at(path))
        return True

    def break_dp(self):
        self.fake.remove(self.user, self.folder)

    def drop_library(self, library):
        self.fake.remove(self.user, self._at(library))
        return True

    def libraries(self):
        return {name for name in LIBRARIES if self.fake.item(self.user, self._at(name))}

    def partial_uploads(self):
        return len(self.fake.sessions)

    def _used(self) -> int:
        return sum(len(self.read(path) or b"") for path in self.files())

    def expected_space(self):
        return self.fake.quota_total - self._used(), self.fake.quota_total

    def small_pages(self):
        self.fake.page_size = 2
        return True

    def listings(self):
        return sum(path.endswith("/children") for _, path, _ in self.fake.log)

    def damage_next_upload(self):
        self.fake.corrupt_next = 1

    def expired_link(self, backend, path):
        link = backend.download_link(path, 600)
        self.fake.expire_download_links()  # Microsoft fixes their lifetime itself
        return link


class DrivePlace(OneDrivePlace):
    kind = "gdrive"

    def secrets(self):
        return Place.secrets(self) + [c["upload_id"] for c in self.fake.chunks]

    def put(self, path, data):
        if self.fake.find(self.user, self._at(path)) is not None:
            self.fake.replace(self.user, self._at(path), data)  # a new revision, as Drive keeps
        else:
            self.fake.add_file(self.user, self._at(path), data)

    def read(self, path):
        return self.fake.read(self.user, self._at(path))

    def libraries(self):
        return {name for name in LIBRARIES if self.fake.find(self.user, self._at(name))}

    def small_pages(self):
        self.fake.max_page = 2
        return True

    def expired_link(self, backend, path):
        return Place.expired_link(self, backend, path)

    def expected_space(self):
        return self.fake.quota_limit - self._used(), self.fake.quota_limit

    def partial_uploads(self):
        return sum(session["done"] is None for session in self.fake.sessions.values())

    def listings(self):
        return sum(path == "/drive/v3/files" and method == "GET"
                   for method, path, _ in self.fake.log)

    def damage_next_upload(self):
        self.fake.damage_next_upload()


class DropboxPlace(OAuthPlace):
    kind, damage = "dropbox", "finish"
    drops_stale_uploads = False  # Dropbox has no call to cancel a session: it expires

    def _at(self, path: str) -> str:
        return f"/{self.folder}/{path}"

    def secrets(self):
        return super().secrets() + [u["session_id"] for u in self._sessions()]

    def _sessions(self):
        return [{"session_id": s} for s in list(self.fake.sessions)]

    def put(self, path, data):
        self.fake.put_file(self.user, self._at(path), data)

    def read(self, path):
        return self.fake.file(self.user, self._at(path))

    def files(self):
        return [p[len(self.folder) + 2:] for p in self.fake.paths(self.user)
                if p.startswith(f"/{self.folder}/")]

    def remove(self, path):
        self.fake.remove(self.user, self._at(path))

    def corrupt(self, path):
        self.fake.corrupt(self.user, self._at(path))
        return True

    def break_dp(self):
        self.fake.remove(self.user, f"/{self.folder}")

    def drop_library(self, library):
        self.fake.remove(self.user, self._at(library))
        return True

    def libraries(self):
        files = self.fake.users[self.user].files
        return {name for name in LIBRARIES
                if getattr(files.get(self._at(name).lower()), "tag", None) == "folder"}

    def small_pages(self):
        self.fake.page_size = 2
        return True

    def listings(self):
        return sum("files/list_folder" in path for _, path, _ in self.fake.log)

    def damage_next_upload(self):
        self.fake.damage_next_upload()

    def expired_link(self, backend, path):
        link = backend.download_link(path, 600)
        self.fake.expire_links()  # Dropbox fixes their lifetime (four hours) itself
        return link

    def expected_space(self):
        used = sum(len(self.read(path) or b"") for path in self.files())
        return self.fake.quota - used, self.fake.quota


def make_place(kind: str, request) -> Place:
    """The place of a DP of `kind`, its servers started through the suite's fixtures."""
    app = request.getfixturevalue("app")
    if kind == "central":
        place = CentralPlace(app)
        request.addfinalizer(place.stop)
        return place
    if kind == "node":
        return NodePlace(request.getfixturevalue("node"))
    if kind == "s3":
        app.config.update(DEPOT_S3_PART_SIZE=S3_PART, DEPOT_S3_PARALLEL=3)
        return S3Place(request.getfixturevalue("s3"), request.getfixturevalue("s3_client"),
                       request.getfixturevalue("s3_dp"))
    if kind == "onedrive":
        fake = request.getfixturevalue("graph_fake")
        app.config.update(onedrive_settings(fake))
        return OneDrivePlace(fake, request.getfixturevalue("onedrive_dp")("OneDrive HQ"))
    if kind == "gdrive":
        fake = request.getfixturevalue("gdrive")
        app.config.update(gdrive_settings(fake))
        place = DrivePlace(fake, request.getfixturevalue("gdrive_dp")("Home Drive"))
        central = CentralPlace(app)  # Drive's links lead to central's relay
        request.addfinalizer(central.stop)
        return place
    if kind == "dropbox":
        fake = request.getfixturevalue("dropbox_fake")
        app.config.update(dropbox_settings(fake))
        return DropboxPlace(fake, request.getfixturevalue("dropbox_dp")("Dropbox HQ"))
    raise LookupError(kind)


__all__ = ["KINDS", "UPLOADING", "MiB", "Place", "make_place", "read_all", "send",
           "source_of", "upload_file"]
