"""The cloud DPs seen from outside their backends (see tests/storage/places.py): a prefix of a
bucket on moto's S3 server, and a folder of an account on the OneDrive, Google Drive and Dropbox
protocol servers (tests/fakes/), with what each server lets a test see of uploads in progress."""
import json

from portal.core.libraries import LIBRARIES
from portal.extensions import db
from portal.models import DistributionPoint
from portal.services import secrets
from tests.cloud.dropbox_fixtures import DROPBOX_CHUNK
from tests.cloud.gdrive_fixtures import GDRIVE_CHUNK
from tests.cloud.onedrive_fixtures import ONEDRIVE_CHUNK
from tests.cloud.s3_fixtures import BUCKET
from tests.storage.places import MiB, Place

S3_PART = 5 * MiB  # S3's smallest part: a file just over it is a two-part upload
S3_PREFIX = "depot/hq/"  # what s3_settings' "/depot//hq/" comes to


class S3Place(Place):
    """A prefix of a bucket on moto's S3 server (tests/cloud/s3_fixtures.py)."""

    kind, damage = "s3", "refused"

    def __init__(self, server, client, dp):
        super().__init__(dp)
        self.server, self.client = server, client

    def put(self, path: str, data: bytes) -> None:
        self.client.put_object(Bucket=BUCKET, Key=S3_PREFIX + path, Body=data)

    def put_beside(self, path: str, data: bytes) -> bool:
        self.client.put_object(Bucket=BUCKET, Key=S3_PREFIX.rstrip("/") + "2/" + path, Body=data)
        return True

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

    piece = S3_PART

    def sessions_started(self) -> int:
        return self.server.calls[("POST", "uploads")]

    def held_bytes(self) -> int:
        """Bytes the open multipart uploads hold (their parts)."""
        held = 0
        for upload in self.client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []):
            parts = self.client.list_parts(Bucket=BUCKET, Key=upload["Key"],
                                           UploadId=upload["UploadId"]).get("Parts", [])
            held += sum(part["Size"] for part in parts)
        return held

    def sent_bytes(self) -> int:
        return self.server.received

    def damage_next_upload(self) -> None:
        self.server.damage_next_upload()

    def expired_link(self, backend, path):
        link = backend.download_link(path, 1)
        self.server.clock_offset = 5  # the server's clock says the link's second went by
        return link


class OAuthPlace(Place):
    """A folder in an account of a provider's protocol server (tests/fakes/), made by the
    provider's DP fixture `connect(name, user, folder)` through the real consent round trip."""

    title = ""
    checks_account = True  # check() tells a token of another account from the one connected
    email_domain = "example.com"

    def __init__(self, fake, connect, name: str, user: str = "alice", folder: str = "Depot"):
        super().__init__(connect(name, user, folder))
        self.fake, self.connect, self.user, self.folder = fake, connect, user, folder

    def put_beside(self, path: str, data: bytes) -> bool:
        folder, self.folder = self.folder, self.folder + "2"
        try:
            self.put(path, data)
        finally:
            self.folder = folder
        return True

    def another(self, name: str, user: str, folder: str) -> "OAuthPlace":
        """A second DP of this provider, in another account and folder."""
        return type(self)(self.fake, self.connect, name, user, folder)

    @property
    def account_name(self) -> str:
        return f"{self.user}@{self.email_domain}"

    def _relative(self, path: str) -> str | None:
        """A path of the account relative to the DP's folder (None outside it)."""
        prefix = self._at("")
        return path[len(prefix):] if path.startswith(prefix) else None

    def downloads(self) -> list[str]:
        found = [self._relative(p) for p in self.fake.downloaded]
        return [p for p in found if p is not None and not p.startswith(".depot/")]

    def secrets(self) -> list[str]:
        """The stored token, and every token the provider ever gave (renewed ones too)."""
        with self.fake.lock:
            issued = [*self.fake.access_tokens, *self.fake.refresh_tokens]
        return super().secrets() + issued

    def token(self) -> dict:
        """The token stored (encrypted) in the DP's row now."""
        db.session.expire_all()
        return json.loads(secrets.decrypt(db.session.get(DistributionPoint, self.dp.id).secret))

    # Upload sessions, as each provider's server shows them.
    def after_pieces(self, count: int, action) -> None:
        """Run `action()` once `count` pieces of an upload were taken."""
        raise NotImplementedError

    def expire_sessions(self) -> None:
        raise NotImplementedError

    def fail_next_piece(self) -> None:
        """The next piece's request fails with a server error (a passing failure)."""
        raise NotImplementedError

    def sessions_started(self) -> int:
        raise NotImplementedError

    def accepted_starts(self) -> list[int]:
        """The offsets of the pieces the provider took, in order."""
        raise NotImplementedError

    def sent_bytes(self) -> int:
        """Bytes of upload pieces that reached the provider, taken or not."""
        raise NotImplementedError

    def held_bytes(self) -> int:
        """Bytes the open upload sessions hold."""
        with self.fake.lock:
            return sum(len(self._session_data(s)) for s in self.fake.sessions.values())

    @staticmethod
    def _session_data(session) -> bytes:
        return session.data


class OneDrivePlace(OAuthPlace):
    kind, damage, title = "onedrive", "finish", "OneDrive"
    piece = ONEDRIVE_CHUNK

    def _at(self, path: str) -> str:
        return f"{self.folder}/{path}"

    @property
    def account_id(self) -> str:
        return self.user

    def secrets(self) -> list[str]:
        return super().secrets() + list(self.fake.session_tokens)

    def after_pieces(self, count, action):
        self.fake.after_put = lambda n: n == count and action()

    def expire_sessions(self):
        self.fake.expire_upload_sessions()

    def fail_next_piece(self):
        self.fake.fail_next_uploads(1, "503")

    def sessions_started(self):
        return sum(path.endswith(":/createUploadSession") for _, path, _ in self.fake.log)

    def accepted_starts(self):
        return [p["start"] for p in self.fake.upload_puts() if p["status"] in (200, 201, 202)]

    def sent_bytes(self):
        return sum(p["length"] for p in self.fake.upload_puts())

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
    kind, title, piece = "gdrive", "Google Drive", GDRIVE_CHUNK
    checks_account = False  # Drive's check asks only that the account answers

    @property
    def account_id(self) -> str:
        return f"perm-{self.user}"

    def secrets(self):
        return OAuthPlace.secrets(self) + list(self.fake.sessions)

    def after_pieces(self, count, action):
        self.fake.after_chunk = lambda n: n == count and action()

    def fail_next_piece(self):
        self.fake.fail_uploads(1, "500")

    def sessions_started(self):
        return sum(method in ("POST", "PATCH") and path.startswith("/upload/drive/v3/files")
                   for method, path, _ in self.fake.log)

    def accepted_starts(self):
        return [c["start"] for c in self.fake.chunks if c["status"] in (200, 201, 308)]

    def sent_bytes(self):
        return self.fake.upload_bytes()

    @staticmethod
    def _session_data(session) -> bytes:
        return session["data"] if session["done"] is None else b""

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
    kind, damage, title, piece = "dropbox", "finish", "Dropbox", DROPBOX_CHUNK
    drops_stale_uploads = False  # Dropbox has no call to cancel a session: it expires
    email_domain = "example.test"

    def _at(self, path: str) -> str:
        return f"/{self.folder}/{path}"

    @property
    def account_id(self) -> str:
        return f"dbid:{self.user}"

    def secrets(self):
        return super().secrets() + list(self.fake.sessions)

    def after_pieces(self, count, action):
        self.fake.after_upload_requests(count + 1, action)  # the session's start, then pieces

    def expire_sessions(self):
        self.fake.expire_sessions()

    def fail_next_piece(self):
        self.fake.fail_next(1, "500")

    def sessions_started(self):
        return sum(u["endpoint"].endswith("upload_session/start") for u in self.fake.uploads)

    def accepted_starts(self):
        return [offset for offset, size in self.fake.appended() if size]

    def sent_bytes(self):  # the sessions' pieces, not the small manifest records
        return sum(u["size"] for u in self.fake.uploads if "upload_session" in u["endpoint"])

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
