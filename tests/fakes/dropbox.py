"""A local Dropbox (API v2) for tests: OAuth from FakeOAuthProvider, and the RPC and content
endpoints Depot uses, with Dropbox's paths, headers, JSON shapes, status codes and rules.

One server stands for the four base URLs: `/oauth2/authorize`, `/oauth2/token`, `/api/2/...`
(RPC: JSON bodies) and `/content/2/...` (content: the argument in the Dropbox-API-Arg header,
the body octet-stream); temporary links are served under `/apitl/1/`.

Rules it enforces: a valid, unexpired bearer token on every API call (401 `expired_access_token`
/ `invalid_access_token`); at most 150 MiB of data a request (`payload_too_large`); appends at
the session's own offset (409 `incorrect_offset` with `correct_offset`); sessions that expire
(`not_found`) or are closed; the header argument as ASCII JSON; case-insensitive paths; names
Dropbox refuses (`malformed_path`); small list_folder pages, so clients must follow cursors.
"""
import hashlib
import json
import re
import secrets
import socket
import time
from dataclasses import dataclass, field

from flask import Flask, Response, abort, jsonify, request

from tests.fakes.oauth_server import FakeOAuthProvider, FakeUser

MiB = 1024 * 1024
BLOCK = 4 * MiB
UPLOAD_ENDPOINTS = ("files/upload_session/start", "files/upload_session/append_v2",
                    "files/upload_session/finish", "files/upload")


def content_hash(data: bytes) -> str:
    """Dropbox's content_hash: SHA-256 over the SHA-256 digests of each 4 MiB block, hex."""
    overall = hashlib.sha256()
    for start in range(0, len(data), BLOCK):
        overall.update(hashlib.sha256(data[start:start + BLOCK]).digest())
    return overall.hexdigest()


def _now_iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


@dataclass
class Node:
    """A file or folder in an account; `files` of a FakeUser maps lower-case paths to these."""

    tag: str  # "file" or "folder"
    path_display: str
    id: str = field(default_factory=lambda: "id:" + secrets.token_urlsafe(12))
    data: bytes = b""
    modified: float = field(default_factory=time.time)
    rev: str = field(default_factory=lambda: secrets.token_hex(9))

    def metadata(self) -> dict:
        name = self.path_display.rsplit("/", 1)[-1]
        meta = {".tag": self.tag, "name": name, "id": self.id,
                "path_lower": self.path_display.lower(), "path_display": self.path_display}
        if self.tag == "file":
            stamp = _now_iso(self.modified)
            meta.update({"client_modified": stamp, "server_modified": stamp, "rev": self.rev,
                         "size": len(self.data), "is_downloadable": True,
                         "content_hash": content_hash(self.data)})
        return meta


@dataclass
class Session:
    user_id: str
    data: bytearray = field(default_factory=bytearray)
    created: float = field(default_factory=time.time)
    closed: bool = False


class FakeDropbox(FakeOAuthProvider):
    """See the module's docstring. Test controls: `put_file`, `file`, `remove`, `corrupt`,
    `damage_next_upload`, `fail_next`, `expire_access_tokens` / `revoke` (from the base),
    `expire_sessions`, `expire_links`, `after_upload_requests`, and the logs `log` (every API
    call), `uploads` (upload calls with their offsets and sizes) and `downloaded` (the path of
    every file whose content was read, through the API or a temporary link)."""

    max_request = 150 * MiB
    page_size = 3  # list_folder answers at most this many entries a page
    session_ttl = 7 * 86400
    link_ttl = 4 * 3600
    quota = 2 * 1024 ** 3

    def __init__(self):
        self.sessions: dict[str, Session] = {}
        self.cursors: dict[str, tuple[list[dict], int]] = {}
        self.links: dict[str, tuple[str, str, float]] = {}  # token -> (user, path_lower, expires)
        self.uploads: list[dict] = []
        self._failures: list[str] = []
        self._after: tuple[int, callable] | None = None
        self.retry_after = 0  # seconds a "429" failure asks the client to wait
        self.downloaded: list[str] = []
        self._damage_next = False
        super().__init__()

    # --- test controls ---------------------------------------------------------------------

    def add_user(self, user_id: str, name: str) -> FakeUser:
        user = super().add_user(user_id, name)
        user.files[""] = Node("folder", "")  # the root
        return user

    def put_file(self, user_id: str, path: str, data: bytes) -> dict:
        """A file put in the account directly (by an older console, by hand): its metadata."""
        with self.lock:
            return self._write(self.users[user_id], path, bytes(data)).metadata()

    def file(self, user_id: str, path: str) -> bytes | None:
        """A file's content (case-insensitive path), None when there is none."""
        with self.lock:
            node = self.users[user_id].files.get(path.lower())
            return node.data if node is not None and node.tag == "file" else None

    def paths(self, user_id: str) -> list[str]:
        """Every file's display path in an account."""
        with self.lock:
            return sorted(n.path_display for n in self.users[user_id].files.values()
                          if n.tag == "file")

    def remove(self, user_id: str, path: str) -> None:
        """Delete a file or a folder (with what is in it) directly, as a person would."""
        with self.lock:
            files = self.users[user_id].files
            base = path.lower()
            for key in [k for k in files if k == base or k.startswith(base + "/")]:
                del files[key]

    def damage_next_upload(self) -> None:
        """The next upload session that finishes stores one byte changed (its content_hash is
        of what is stored, as at Dropbox)."""
        with self.lock:
            self._damage_next = True

    def corrupt(self, user_id: str, path: str) -> None:
        """Flip a byte of a stored file in place, as damage at rest would: its content_hash
        follows the bytes (as at Dropbox), its size, rev and modified time stay. (A new modified
        time would make a verify take it for a replaced file, the next rescan's business, unless
        it fell in the same second as the upload: the test that used it passed by the clock.)"""
        with self.lock:
            node = self.users[user_id].files[path.lower()]
            data = bytearray(node.data)
            data[len(data) // 2] ^= 0xFF
            node.data = bytes(data)

    def fail_next(self, count: int = 1, mode: str = "500") -> None:
        """The next `count` upload requests fail: "500" (a server error), "429" (throttled,
        with Retry-After), "drop" (the connection drops before the data is taken) or
        "drop_after" (the data is taken, then the connection drops: the answer is lost)."""
        with self.lock:
            self._failures.extend([mode] * count)

    def after_upload_requests(self, count: int, action) -> None:
        """Run `action()` once, after `count` more upload requests were answered."""
        with self.lock:
            self._after = (count, action)

    def expire_sessions(self) -> None:
        with self.lock:
            for session in self.sessions.values():
                session.created = 0

    def expire_links(self) -> None:
        with self.lock:
            self.links = {t: (u, p, 0) for t, (u, p, _) in self.links.items()}

    def appended(self) -> list[tuple[int, int]]:
        """(offset, size) of every append that Dropbox took, in order."""
        with self.lock:
            return [(u["offset"], u["size"]) for u in self.uploads
                    if u["endpoint"].endswith("append_v2") and u["status"] == 200]

    # --- Dropbox's shapes ------------------------------------------------------------------

    def error(self, status: int, code: str, message: str = "", **extra):
        """A route error: `{"error_summary": "tag/...", "error": {".tag": tag, ...}}`."""
        tags = code.split("/")
        error: dict = {".tag": tags[-1], **extra}
        for outer in reversed(tags[:-1]):
            error = {".tag": outer, outer: error}
        response = jsonify({"error_summary": f"{code}/..", "error": error,
                            **({"user_message": {"text": message, "locale": "en"}}
                               if message else {})})
        response.status_code = status
        abort(response)

    def bad_request(self, message: str):
        """Dropbox's 400 for a malformed call: plain text."""
        abort(Response(f'Error in call to API function "{request.path}": {message}', 400,
                       content_type="text/plain; charset=utf-8"))

    def current_user(self) -> FakeUser:
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else None
        with self.lock:
            found = self.access_tokens.get(token) if token else None
        if found is None:
            self.error(401, "invalid_access_token")
        user_id, expires_at = found
        if expires_at <= time.time():
            self.error(401, "expired_access_token")
        return self.users[user_id]

    def rpc_args(self) -> dict:
        if not request.data:
            return {}
        if request.mimetype != "application/json":
            self.bad_request("Bad HTTP \"Content-Type\" header: expected \"application/json\"")
        try:
            args = json.loads(request.data)
        except ValueError:
            self.bad_request("could not decode input as JSON")
        if not isinstance(args, dict):
            self.bad_request("request body: expected an object")
        return args

    def content_args(self) -> dict:
        raw = request.headers.get("Dropbox-API-Arg")
        if raw is None:
            self.bad_request("Must provide HTTP header \"Dropbox-API-Arg\" or URL parameter "
                             "\"arg\"")
        if any(ord(ch) > 0x7e for ch in raw):
            self.bad_request("HTTP header \"Dropbox-API-Arg\": must be ASCII (escape the rest)")
        if request.mimetype != "application/octet-stream":
            self.bad_request("Bad HTTP \"Content-Type\" header: expected "
                             "\"application/octet-stream\"")
        try:
            return json.loads(raw)
        except ValueError:
            self.bad_request("HTTP header \"Dropbox-API-Arg\": could not decode input as JSON")

    def path(self, args: dict, key: str = "path", error: str = "path") -> str:
        """A valid Dropbox path from the arguments ("" is the root), lower-cased for lookups."""
        value = args.get(key)
        if not isinstance(value, str):
            self.bad_request(f"missing required field '{key}'")
        if value.startswith("id:"):
            return value
        if value == "":
            return ""
        if not value.startswith("/") or value.endswith("/"):
            self.error(409, f"{error}/malformed_path")
        for name in value.split("/")[1:]:
            if name in ("", ".", "..") or any(ch == "\\" or ord(ch) < 0x20 or ord(ch) == 0x7f
                                              for ch in name):
                self.error(409, f"{error}/malformed_path")
        return value

    def lookup(self, user: FakeUser, path: str) -> Node | None:
        if path.startswith("id:"):
            return next((n for n in user.files.values() if n.id == path), None)
        return user.files.get(path.lower())

    def _write(self, user: FakeUser, path: str, data: bytes) -> Node:
        """Place a file (mode overwrite), creating its parent folders."""
        parts = path.split("/")
        for depth in range(2, len(parts)):
            parent = "/".join(parts[:depth])
            node = user.files.get(parent.lower())
            if node is None:
                user.files[parent.lower()] = Node("folder", parent)
            elif node.tag != "folder":
                self.error(409, "path/conflict/file")
        existing = user.files.get(path.lower())
        if existing is not None and existing.tag == "folder":
            self.error(409, "path/conflict/folder")
        node = Node("file", existing.path_display if existing else path, data=data)
        if existing is not None:
            node.id = existing.id
        user.files[path.lower()] = node
        return node

    # --- routes ----------------------------------------------------------------------------

    def add_routes(self, app: Flask) -> None:
        rpc = {
            "users/get_current_account": self.get_current_account,
            "users/get_space_usage": self.get_space_usage,
            "files/list_folder": self.list_folder,
            "files/list_folder/continue": self.list_folder_continue,
            "files/create_folder_v2": self.create_folder,
            "files/delete_v2": self.delete,
            "files/get_metadata": self.get_metadata,
            "files/get_temporary_link": self.get_temporary_link,
        }
        content = {
            "files/download": self.download,
            "files/upload": self.upload,
            "files/upload_session/start": self.session_start,
            "files/upload_session/append_v2": self.session_append,
            "files/upload_session/finish": self.session_finish,
        }
        for name, view in rpc.items():
            app.add_url_rule(f"/api/2/{name}", f"rpc {name}", self._rpc_view(view),
                             methods=["POST"])
        for name, view in content.items():
            app.add_url_rule(f"/content/2/{name}", f"content {name}",
                             self._content_view(name, view), methods=["POST"])
        app.add_url_rule("/apitl/1/<token>", "temporary link", self.temporary_link,
                         methods=["GET"])

    def _rpc_view(self, view):
        def handle():
            self.record()
            user = self.current_user()
            args = self.rpc_args()
            with self.lock:
                return jsonify(view(user, args))
        return handle

    def _content_view(self, name, view):
        def handle():
            self.record()
            user = self.current_user()
            args = self.content_args()
            if name not in UPLOAD_ENDPOINTS:
                with self.lock:
                    return view(user, args)
            entry = {"endpoint": name, "offset": (args.get("cursor") or {}).get("offset"),
                     "size": request.content_length or 0, "status": None}
            with self.lock:
                self.uploads.append(entry)
                failure = self._failures.pop(0) if self._failures else None
            if failure == "500":
                entry["status"] = 500
                request.get_data()
                return jsonify({"error_summary": "internal_error/..", "error": {
                    ".tag": "internal_error"}}), 500
            if failure == "429":
                entry["status"] = 429
                request.get_data()
                return jsonify({"error_summary": "too_many_requests/..", "error": {
                    "reason": {".tag": "too_many_requests"},
                    "retry_after": self.retry_after}}), 429, {"Retry-After": str(self.retry_after)}
            if (request.content_length or 0) > self.max_request:
                entry["status"] = 409
                self.error(409, "payload_too_large")  # before reading a byte of it
            data = request.get_data()
            if failure == "drop":
                entry["status"] = "dropped"
                self._drop()
            try:
                with self.lock:
                    answer = view(user, args, data)
                entry["status"] = 200
            except Exception as exc:
                entry["status"] = getattr(getattr(exc, "response", None), "status_code", 500)
                raise
            finally:
                self._count_after()
            if failure == "drop_after":
                entry["status"] = 200  # taken; only the answer is lost
                self._drop()
            return jsonify(answer)
        return handle

    def _count_after(self) -> None:
        with self.lock:
            if self._after is None:
                return
            count, action = self._after
            self._after = (count - 1, action) if count > 1 else None
        if count <= 1:
            action()

    @staticmethod
    def _drop():
        """Close the connection without an answer, as a network that drops."""
        sock = request.environ.get("werkzeug.socket")
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        abort(Response("", 500))  # never reaches the client

    # RPC -------------------------------------------------------------------------------------

    def get_current_account(self, user, args):
        return {"account_id": f"dbid:{user.id}", "email": f"{user.id}@example.test",
                "name": {"display_name": user.name, "given_name": user.name,
                         "familiar_name": user.name, "surname": "", "abbreviated_name": "U"},
                "email_verified": True, "disabled": False, "country": "US", "locale": "en",
                "account_type": {".tag": "pro"}, "root_info": {
                    ".tag": "user", "root_namespace_id": "1", "home_namespace_id": "1"}}

    def get_space_usage(self, user, args):
        used = sum(len(n.data) for n in user.files.values())
        return {"used": used, "allocation": {".tag": "individual", "allocated": self.quota}}

    def list_folder(self, user, args):
        path = self.path(args)
        limit = args.get("limit", 2000)
        if not isinstance(limit, int) or not 1 <= limit <= 2000:
            self.bad_request("limit: must be between 1 and 2000")
        folder = self.lookup(user, path)
        if folder is None:
            self.error(409, "path/not_found")
        if folder.tag != "folder":
            self.error(409, "path/not_folder")
        base = folder.path_display.lower()
        found = [folder.metadata()] if args.get("recursive") and base else []
        for key, node in sorted(user.files.items()):
            if not key.startswith(base + "/") or node is folder:
                continue
            if args.get("recursive") or "/" not in key[len(base) + 1:]:
                found.append(node.metadata())
        return self._page(found, 0, min(limit, self.page_size))

    def _page(self, found: list[dict], start: int, size: int) -> dict:
        cursor = secrets.token_urlsafe(16)
        self.cursors[cursor] = (found, start + size, size)
        return {"entries": found[start:start + size], "cursor": cursor,
                "has_more": start + size < len(found)}

    def list_folder_continue(self, user, args):
        found = self.cursors.pop(args.get("cursor") or "", None)
        if found is None:
            self.error(409, "reset")
        entries, start, size = found
        return self._page(entries, start, size)

    def create_folder(self, user, args):
        path = self.path(args)
        existing = self.lookup(user, path)
        if existing is not None:
            self.error(409, f"path/conflict/{existing.tag}")
        parts = path.split("/")
        for depth in range(2, len(parts) + 1):
            sub = "/".join(parts[:depth])
            node = user.files.get(sub.lower())
            if node is None:
                user.files[sub.lower()] = Node("folder", sub)
            elif node.tag != "folder":
                self.error(409, "path/conflict/file")
        return {"metadata": {k: v for k, v in user.files[path.lower()].metadata().items()
                             if k != ".tag"}}

    def delete(self, user, args):
        path = self.path(args, error="path_lookup")
        node = self.lookup(user, path)
        if node is None or path == "":
            self.error(409, "path_lookup/not_found")
        base = node.path_display.lower()
        for key in [k for k in user.files if k == base or k.startswith(base + "/")]:
            del user.files[key]
        return {"metadata": node.metadata()}

    def get_metadata(self, user, args):
        node = self.lookup(user, self.path(args))
        if node is None:
            self.error(409, "path/not_found")
        return node.metadata()

    def get_temporary_link(self, user, args):
        node = self.lookup(user, self.path(args))
        if node is None:
            self.error(409, "path/not_found")
        if node.tag != "file":
            self.error(409, "path/not_file")
        token = secrets.token_urlsafe(24)
        self.links[token] = (user.id, node.path_display.lower(), time.time() + self.link_ttl)
        return {"metadata": node.metadata(), "link": f"{self.url}/apitl/1/{token}"}

    def temporary_link(self, token):
        with self.lock:
            found = self.links.get(token)
            if found is None:
                return "Not Found", 404
            user_id, path, expires = found
            if expires <= time.time():
                return "This link has expired", 410
            node = self.users[user_id].files.get(path)
            if node is None:
                return "Not Found", 404
            self.downloaded.append(node.path_display)
            data = node.data
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", request.headers.get("Range", ""))
        if match and int(match[1]) < len(data):  # temporary links take Range requests
            start = int(match[1])
            end = min(int(match[2]) if match[2] else len(data) - 1, len(data) - 1)
            return Response(data[start:end + 1], 206, content_type="application/octet-stream",
                            headers={"Content-Range": f"bytes {start}-{end}/{len(data)}"})
        return Response(data, 200, content_type="application/octet-stream")

    # content ---------------------------------------------------------------------------------

    def download(self, user, args):
        node = self.lookup(user, self.path(args))
        if node is None:
            self.error(409, "path/not_found")
        if node.tag != "file":
            self.error(409, "path/not_file")
        self.downloaded.append(node.path_display)
        return Response(node.data, 200, content_type="application/octet-stream",
                        headers={"Dropbox-API-Result": json.dumps(node.metadata())})

    def upload(self, user, args, data):
        path = self.path(args, error="path")
        if args.get("mode", "add") not in ("overwrite", {".tag": "overwrite"}) and \
                self.lookup(user, path) is not None:
            self.error(409, "path/conflict/file")
        return self._write(user, path, data).metadata()

    def session_start(self, user, args, data):
        session_id = secrets.token_urlsafe(32)
        self.sessions[session_id] = Session(user.id, bytearray(data),
                                            closed=bool(args.get("close")))
        return {"session_id": session_id}

    def _session(self, user, cursor: dict, outer: str = "") -> Session:
        prefix = f"{outer}/" if outer else ""
        session = self.sessions.get((cursor or {}).get("session_id") or "")
        if session is None or session.user_id != user.id or \
                session.created + self.session_ttl <= time.time():
            self.error(409, f"{prefix}not_found")
        if session.closed:
            self.error(409, f"{prefix}closed")
        if cursor.get("offset") != len(session.data):
            self.error(409, f"{prefix}incorrect_offset", correct_offset=len(session.data))
        return session

    def session_append(self, user, args, data):
        session = self._session(user, args.get("cursor"))
        session.data += data
        session.closed = bool(args.get("close"))
        return None

    def session_finish(self, user, args, data):
        session = self._session(user, args.get("cursor"), outer="lookup_failed")
        commit = args.get("commit") or {}
        path = self.path(commit, error="path")
        if commit.get("mode", "add") not in ("overwrite", {".tag": "overwrite"}) and \
                self.lookup(user, path) is not None:
            self.error(409, "path/conflict/file")
        session.data += data
        stored = bytes(session.data)
        if self._damage_next and stored:
            self._damage_next = False
            stored = bytes([stored[0] ^ 0xFF]) + stored[1:]
        node = self._write(user, path, stored)
        del self.sessions[args["cursor"]["session_id"]]
        return node.metadata()


__all__ = ["FakeDropbox", "content_hash"]
