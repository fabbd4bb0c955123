"""The places a DP's content lives, seen from outside its backend: what a test arranges and looks
at "by hand" (as a person, another program or a failing disk would), so one contract suite runs
against every backend. One `Place` a kind of DP: central's folder, a DP node on a loopback port,
S3 on moto's server, OneDrive, Google Drive and Dropbox on their protocol servers (tests/fakes).

Paths given to a place are relative to the DP's folder ("Images/a.wim", "Other/notes.txt"),
plain names only. What a place cannot tell or do says so with None (or False).
The cloud places are in tests/storage/cloud_places.py; the fixtures that make them, in
tests/storage/conftest.py.
"""
import hashlib
import io
import json
import os
import shutil
import time
from contextlib import contextmanager

from portal.core.libraries import LIBRARIES
from portal.dpnode import create_node_app
from portal.dpnode.config import NodeConfig
from portal.extensions import db
from portal.models import DistributionPoint
from portal.services import secrets
from portal.services.assets import central_dp
from portal.services.backends import open_storage
from portal.storage.base import Source, StorageBackend, UploadState
from tests.node_fixtures import KEY
from tests.servers import LoopbackServer

MiB = 1024 * 1024
PIECE = 256 * 1024  # the piece size of a backend that leaves it to the copy (a DP node)


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
        db.session.expire_all()
        stored = db.session.get(DistributionPoint, self.dp.id).secret
        if not stored:
            return []
        stored = secrets.decrypt(stored)
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

    def put_beside(self, path: str, data: bytes) -> bool:
        """Write a file outside the DP's folder, in a sibling whose name starts like it ("Depot2",
        "depot/hq2/"); False where nothing is beside the DP (a content root)."""
        return False

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
    """The central DP's own folder; its links are served by central's DP node (downloads only,
    central's root and key) on a port."""

    kind, uploads = "central", False

    def __init__(self, app):
        dp = central_dp()
        super().__init__(dp, dp.root)
        self.keys = [app.config["SECRET_KEY"], app.config["DEPOT_CENTRAL_DP_KEY"]]
        config = type("CentralNodeConfig", (NodeConfig,), dict(
            DEPOT_DP_ROOT=dp.root, DEPOT_DP_KEY=self.keys[1], DEPOT_DP_DOWNLOADS_ONLY=True))
        self._served = LoopbackServer(create_node_app(config), "central-node")
        app.config["DEPOT_CENTRAL_DP_URL"] = self._served.start()

    def secrets(self) -> list[str]:
        return self.keys

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
                               secret=secrets.encrypt(KEY), status="online",
                               allow_plain_http=True)
        db.session.add(dp)
        db.session.commit()
        super().__init__(dp, node.root)
        self.node, self._damage_next = node, False
        inner = node.app.wsgi_app

        def damaging(environ, start_response):  # in front of the node: the network between
            if self._damage_next and (environ["REQUEST_METHOD"] == "PATCH"
                                      or environ["PATH_INFO"].endswith("/chunks")):
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
