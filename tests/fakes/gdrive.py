"""A local Google Drive: Google's OAuth 2 endpoints (from the shared fake provider) and the part of
the Drive API v3 Depot uses, with Drive's paths, parameters, JSON shapes and status codes:
`about`, `files` list (q, fields, orderBy, pageSize/pageToken), get (metadata or `alt=media` with
Range), create (folders), metadata PATCH, DELETE, and resumable uploads (`uploadType=resumable`
POST for a new file or PATCH for a new revision -> `Location`; PUT chunks with Content-Range,
multiples of 256 KiB but the last, in order -> 308 + `Range: bytes=0-N`, 200/201 with the file at
the end; `bytes */total` status queries; DELETE -> 499; sessions that expire -> 404).

Every API call needs a valid bearer token; an upload session URI works without one (its upload_id
is the credential) but a token sent with it must be valid. Pages are small (`max_page`) so a client
must follow nextPageToken. Test controls: `add_file`, `replace`, `remove`, `read`, `find`,
`paths`, `corrupt`, `fail_uploads`, `damage_next_upload`, `expire_upload_sessions`, `chunks` (every
upload PUT with its range and size), `downloaded` (the path of every file whose content was read),
plus the base's `expire_access_tokens` and `revoke`.
"""
import hashlib
import re
import secrets
import socket
import time
from datetime import datetime, timezone

from flask import Flask, jsonify, request

from tests.fakes.oauth_server import FakeOAuthProvider, FakeUser

FOLDER = "application/vnd.google-apps.folder"
GRANULE = 256 * 1024
DEFAULT_FILE_FIELDS = "kind,id,name,mimeType"

_CLAUSE = re.compile(r"""\s*(?:
    '(?P<parent>(?:[^'\\]|\\.)*)'\s+in\s+parents
  | trashed\s*=\s*(?P<trashed>true|false)
  | name\s*=\s*'(?P<name>(?:[^'\\]|\\.)*)'
  | mimeType\s*(?P<op>=|!=)\s*'(?P<mime>[^']*)'
)\s*(?:and\b|$)""", re.X)


def _unquote(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _split_fields(fields: str) -> list[str]:
    """Top-level comma-separated parts of a `fields` mask ("a,files(b,c)" -> [a, files(b,c)])."""
    parts, depth, current = [], 0, ""
    for ch in fields:
        if ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        current += ch
    if current.strip():
        parts.append(current.strip())
    return parts


class FakeDrive(FakeOAuthProvider):
    """Google's OAuth endpoints and a Drive v3 API keeping each user's files in memory."""

    authorize_path = "/o/oauth2/v2/auth"
    token_path = "/token"
    rotate_refresh_tokens = False  # Google keeps the refresh token and gives none on a refresh
    max_page = 3  # Drive may answer with fewer items than pageSize; this one always does
    quota_limit = 15 * 1024 ** 3
    session_ttl = 7 * 86400

    def __init__(self):
        self.sessions: dict[str, dict] = {}
        self.chunks: list[dict] = []  # every upload PUT: {upload_id, start, length, status}
        self.page_tokens: dict[str, tuple[str, int]] = {}
        self._failures: list[str] = []
        self._damage_next = False
        self._seq = 0
        # after_chunk(n): called (under the lock) once the n-th upload chunk was stored
        self.after_chunk = None
        self.stored_chunks = 0
        self.downloaded: list[str] = []
        super().__init__()

    # --- test controls ---------------------------------------------------------------------

    def add_user(self, user_id: str, name: str) -> FakeUser:
        user = super().add_user(user_id, name)
        self._new_item(user, "My Drive", FOLDER, None, item_id=f"root-{user_id}")
        return user

    def add_file(self, user_id: str, path: str, data: bytes, app_properties: dict | None = None,
                 mime_type: str = "application/octet-stream") -> dict:
        """Put a file at "Depot/Images/x.wim" under the user's My Drive, making folders, as an
        older console (or a person) would have; returns the item."""
        user = self.users[user_id]
        with self.lock:
            *folders, name = path.split("/")
            parent = self._root(user)["id"]
            for folder in folders:
                found = self._named(user, parent, folder, FOLDER)
                parent = (found or self._new_item(user, folder, FOLDER, parent))["id"]
            item = self._new_item(user, name, mime_type, parent)
            self._set_content(item, data)
            item["appProperties"] = dict(app_properties or {})
            return item

    def replace(self, user_id: str, path: str, data: bytes) -> dict:
        """New content for the file at a path, as another app saving a new revision does (same
        id, its appProperties kept, a new md5Checksum and modifiedTime)."""
        item = self.find(user_id, path)
        with self.lock:
            self._set_content(item, data)
            return item

    def remove(self, user_id: str, path: str) -> None:
        """Delete the (oldest) file or folder at a path, with what is in it, as a person would."""
        item = self.find(user_id, path)
        with self.lock:
            self._delete(self.users[user_id], item)

    def find(self, user_id: str, path: str) -> dict | None:
        """The oldest item at a path under My Drive."""
        user = self.users[user_id]
        with self.lock:
            item = self._root(user)
            for name in path.split("/"):
                item = self._named(user, item["id"], name)
                if item is None:
                    return None
            return item

    def read(self, user_id: str, path: str) -> bytes | None:
        item = self.find(user_id, path)
        return None if item is None else item["content"]

    def paths(self, user_id: str) -> list[str]:
        """Every file's path under My Drive, sorted."""
        user = self.users[user_id]
        with self.lock:
            out = []
            for item in user.files.values():
                if item["mimeType"] != FOLDER and not item["trashed"]:
                    out.append(self._path(user, item))
            return sorted(out)

    def corrupt(self, user_id: str, path: str) -> None:
        """Flip a byte of a stored file in place, as damage at rest would: its md5Checksum follows
        the bytes (as Drive's does), its size and modifiedTime stay."""
        item = self.find(user_id, path)
        with self.lock:
            content = bytearray(item["content"])
            content[len(content) // 2] ^= 0xFF
            item["content"] = bytes(content)
            item["md5Checksum"] = hashlib.md5(item["content"]).hexdigest()

    def fail_uploads(self, count: int = 1, how: str = "drop") -> None:
        """The next `count` upload chunks fail: "drop" keeps part of the chunk (whole 256 KiB
        units of its first half, as Drive may) then drops the connection; "500" answers 503."""
        with self.lock:
            self._failures.extend([how] * count)

    def damage_next_upload(self) -> None:
        """The next upload that completes stores one byte changed (Drive's MD5 is of that)."""
        self._damage_next = True

    def expire_upload_sessions(self) -> None:
        with self.lock:
            for session in self.sessions.values():
                session["expires"] = 0

    def upload_bytes(self) -> int:
        """Bytes of content sent in upload chunks so far."""
        return sum(c["length"] for c in self.chunks)

    # --- items -----------------------------------------------------------------------------

    def _root(self, user: FakeUser) -> dict:
        return user.files[f"root-{user.id}"]

    def _new_item(self, user, name, mime, parent, item_id=None) -> dict:
        self._seq += 1
        item = {"id": item_id or secrets.token_urlsafe(18), "name": name, "mimeType": mime,
                "parents": [parent] if parent else [], "content": None, "appProperties": {},
                "created": self._seq, "createdTime": _now(), "modifiedTime": _now(),
                "md5Checksum": None, "trashed": False}
        user.files[item["id"]] = item
        return item

    def _set_content(self, item: dict, data: bytes) -> None:
        item["content"] = data
        item["md5Checksum"] = hashlib.md5(data).hexdigest()
        item["modifiedTime"] = _now()

    def _named(self, user, parent_id, name, mime=None):
        found = [i for i in user.files.values() if parent_id in i["parents"] and i["name"] == name
                 and not i["trashed"] and (mime is None or i["mimeType"] == mime)]
        return min(found, key=lambda i: i["created"]) if found else None

    def _path(self, user, item) -> str:
        names = [item["name"]]
        while item["parents"] and item["parents"][0] != f"root-{user.id}":
            item = user.files[item["parents"][0]]
            names.append(item["name"])
        return "/".join(reversed(names))

    def _resource(self, item: dict) -> dict:
        out = {"kind": "drive#file", **{k: item[k] for k in (
            "id", "name", "mimeType", "parents", "appProperties", "createdTime", "modifiedTime",
            "trashed")}}
        if item["mimeType"] != FOLDER:
            out["size"] = str(len(item["content"] or b""))  # int64 as a string, as Drive does
            out["md5Checksum"] = item["md5Checksum"]
        if not out["appProperties"]:
            del out["appProperties"]
        return out

    def _select(self, resource: dict, fields: str | None, default: str) -> dict:
        wanted = _split_fields(fields or default)
        if "*" in wanted:
            return resource
        out = {}
        for name in wanted:
            if "(" in name:
                self.error(400, "invalidParameter", f"Invalid field selection {name}")
            if name in resource:
                out[name] = resource[name]
        return out

    def _item(self, user, file_id) -> dict:
        if file_id == "root":
            return self._root(user)
        item = user.files.get(file_id)
        if item is None:
            self.error(404, "notFound", f"File not found: {file_id}.", location="fileId")
        return item

    # --- Drive's errors --------------------------------------------------------------------

    def error(self, status: int, code: str, message: str, location: str | None = None):
        """Drive's error shape: {"error": {"code", "message", "errors": [{reason, ...}]}}."""
        from flask import abort

        reason = {"InvalidAuthenticationToken": "authError"}.get(code, code)
        detail = {"domain": "global", "reason": reason, "message": message}
        if location:
            detail.update(location=location, locationType="parameter")
        if status == 401:
            detail.update(message="Invalid Credentials", location="Authorization",
                          locationType="header")
            message = ("Request had invalid authentication credentials. Expected OAuth 2 access "
                       "token, login cookie or other valid authentication credential.")
        response = jsonify({"error": {"code": status, "message": message, "errors": [detail]}})
        response.status_code = status
        abort(response)

    # --- the API ---------------------------------------------------------------------------

    def add_routes(self, app: Flask) -> None:
        app.add_url_rule("/drive/v3/about", "about", self._about)
        app.add_url_rule("/drive/v3/files", "files", self._files, methods=["GET", "POST"])
        app.add_url_rule("/drive/v3/files/<file_id>", "file", self._file,
                         methods=["GET", "PATCH", "DELETE"])
        app.add_url_rule("/upload/drive/v3/files", "upload", self._upload,
                         methods=["POST", "PUT", "DELETE"])
        app.add_url_rule("/upload/drive/v3/files/<file_id>", "upload_file", self._upload,
                         methods=["PATCH", "PUT", "DELETE"])

    def _about(self):
        user = self.current_user()
        self.record()
        if not request.args.get("fields"):
            self.error(400, "required", "The 'fields' parameter is required for this method.",
                       location="fields")
        with self.lock:
            usage = sum(len(i["content"] or b"") for i in user.files.values())
        email = user.name if "@" in user.name else f"{user.id}@example.com"
        about = {"kind": "drive#about",
                 "user": {"kind": "drive#user", "displayName": user.name, "me": True,
                          "permissionId": f"perm-{user.id}", "emailAddress": email},
                 "storageQuota": {"limit": str(self.quota_limit), "usage": str(usage),
                                  "usageInDrive": str(usage), "usageInDriveTrash": "0"}}
        return jsonify(self._select(about, request.args["fields"], ""))

    def _files(self):
        user = self.current_user()
        self.record()
        if request.method == "POST":
            return self._create(user)
        args = request.args
        try:
            page_size = int(args.get("pageSize", 100))
        except ValueError:
            page_size = 0
        if not 1 <= page_size <= 1000:
            self.error(400, "invalid", f"Invalid value '{args.get('pageSize')}'. Values must be "
                                       "within the range: [1, 1000]", location="pageSize")
        if args.get("orderBy") not in (None, "createdTime"):
            self.error(400, "invalid", "this fake orders by createdTime only", location="orderBy")
        q = args.get("q", "")
        token = args.get("pageToken")
        if token:
            saved = self.page_tokens.get(token)
            if saved is None or saved[0] != q:
                self.error(400, "invalid", "Invalid Value", location="pageToken")
            start = saved[1]
        else:
            start = 0
        with self.lock:
            matches = sorted((i for i in user.files.values() if self._matches(user, i, q)),
                             key=lambda i: i["created"])
            page = matches[start:start + min(page_size, self.max_page)]
            answer = {"kind": "drive#fileList", "incompleteSearch": False}
            end = start + len(page)
            if end < len(matches):
                next_token = secrets.token_urlsafe(12)
                self.page_tokens[next_token] = (q, end)
                answer["nextPageToken"] = next_token
        fields = args.get("fields") or ("kind,incompleteSearch,nextPageToken,"
                                        "files(kind,id,name,mimeType)")
        selected = {}
        for part in _split_fields(fields):
            if part.startswith("files(") and part.endswith(")"):
                selected["files"] = [self._select(self._resource(i), part[6:-1], "")
                                     for i in page]
            elif part == "files":
                selected["files"] = [self._resource(i) for i in page]
            elif part in answer:
                selected[part] = answer[part]
        return jsonify(selected)

    def _matches(self, user, item, q: str) -> bool:
        position, ok = 0, True
        q = q.strip()
        while position < len(q):
            match = _CLAUSE.match(q, position)
            if match is None or match.end() == position:
                self.error(400, "invalid", "Invalid Value", location="q")
            position = match.end()
            if match["parent"] is not None:
                parent = _unquote(match["parent"])
                if parent == "root":
                    parent = f"root-{user.id}"
                ok &= parent in item["parents"]
            elif match["trashed"] is not None:
                ok &= item["trashed"] == (match["trashed"] == "true")
            elif match["name"] is not None:
                ok &= item["name"] == _unquote(match["name"])
            else:
                ok &= (item["mimeType"] == match["mime"]) == (match["op"] == "=")
        return ok and not item["id"].startswith("root-")

    def _create(self, user):
        body = request.get_json(silent=True) or {}
        parents = body.get("parents") or ["root"]
        if len(parents) != 1:
            self.error(403, "cannotAddParent", "Increasing the number of parents is not allowed")
        with self.lock:
            parent = self._item(user, parents[0])
            if parent["mimeType"] != FOLDER:
                self.error(400, "invalid", "The parent is not a folder", location="parents")
            item = self._new_item(user, body.get("name") or "Untitled",
                                  body.get("mimeType") or "application/octet-stream", parent["id"])
            if item["mimeType"] != FOLDER:
                self._set_content(item, b"")
            item["appProperties"] = {k: v for k, v in (body.get("appProperties") or {}).items()
                                     if v is not None}
            return jsonify(self._select(self._resource(item), request.args.get("fields"),
                                        DEFAULT_FILE_FIELDS))

    def _file(self, file_id):
        user = self.current_user()
        self.record()
        with self.lock:
            item = self._item(user, file_id)
            if request.method == "DELETE":
                self._delete(user, item)
                return "", 204
            if request.method == "PATCH":
                body = request.get_json(silent=True) or {}
                if "name" in body:
                    item["name"] = body["name"]
                for key, value in (body.get("appProperties") or {}).items():
                    if value is None:
                        item["appProperties"].pop(key, None)
                    else:
                        item["appProperties"][key] = str(value)
                return jsonify(self._select(self._resource(item), request.args.get("fields"),
                                            DEFAULT_FILE_FIELDS))
            if request.args.get("alt") != "media":
                return jsonify(self._select(self._resource(item), request.args.get("fields"),
                                            DEFAULT_FILE_FIELDS))
            if item["mimeType"] == FOLDER or item["content"] is None:
                self.error(403, "fileNotDownloadable", "Only files with binary content can be "
                                                       "downloaded.")
            content = item["content"]
            self.downloaded.append(self._path(user, item))
        return self._media(content)

    def _media(self, content: bytes):
        header = request.headers.get("Range")
        if not header:
            return content, 200, {"Content-Type": "application/octet-stream",
                                  "Accept-Ranges": "bytes"}
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", header)
        if not match or (not match[1] and not match[2]):
            return content, 200, {"Accept-Ranges": "bytes"}
        size = len(content)
        if match[1]:
            start = int(match[1])
            end = min(int(match[2]), size - 1) if match[2] else size - 1
        else:
            start, end = max(0, size - int(match[2])), size - 1
        if start >= size or start > end:
            return "", 416, {"Content-Range": f"bytes */{size}"}
        return content[start:end + 1], 206, {"Content-Range": f"bytes {start}-{end}/{size}",
                                             "Accept-Ranges": "bytes",
                                             "Content-Type": "application/octet-stream"}

    def _delete(self, user, item):
        for child in [i for i in user.files.values() if item["id"] in i["parents"]]:
            self._delete(user, child)
        user.files.pop(item["id"], None)

    # --- resumable uploads -----------------------------------------------------------------

    def _upload(self, file_id=None):
        upload_id = request.args.get("upload_id")
        if request.method in ("POST", "PATCH") and upload_id is None:
            return self._start_session(file_id)
        if upload_id is None:
            self.error(400, "invalid", "upload_id is required", location="upload_id")
        with self.lock:
            session = self.sessions.get(upload_id)
        if session is None or session["expires"] <= time.time() or session["file_id"] != file_id:
            self.record()
            self.error(404, "notFound", "The upload session was not found or has expired.")
        if request.headers.get("Authorization"):  # optional here, but it must be good if sent
            if self.current_user().id != session["user"]:
                self.error(403, "forbidden", "The upload session belongs to another user.")
        if request.method == "DELETE":
            self.record()
            with self.lock:
                self.sessions.pop(upload_id, None)
            return "", 499
        if request.method != "PUT":
            self.error(400, "invalid", "send chunks with PUT")
        return self._chunk(upload_id, session)

    def _start_session(self, file_id):
        user = self.current_user()
        self.record()
        if request.args.get("uploadType") != "resumable":
            self.error(400, "invalid", "this fake takes resumable uploads only",
                       location="uploadType")
        try:
            size = int(request.headers["X-Upload-Content-Length"])
        except (KeyError, ValueError):
            self.error(400, "invalid", "X-Upload-Content-Length is required")
        body = request.get_json(silent=True) or {}
        with self.lock:
            if file_id is not None:
                target = self._item(user, file_id)
                if target["mimeType"] == FOLDER:
                    self.error(403, "fileNotDownloadable", "A folder has no content")
            else:
                parents = body.get("parents") or ["root"]
                if len(parents) != 1:
                    self.error(403, "cannotAddParent", "Only one parent is allowed")
                self._item(user, parents[0])
            upload_id = secrets.token_urlsafe(32)
            self.sessions[upload_id] = {
                "user": user.id, "file_id": file_id, "size": size, "metadata": body,
                "data": bytearray(), "fields": request.args.get("fields"),
                "expires": time.time() + self.session_ttl, "done": None}
        path = "/upload/drive/v3/files" + (f"/{file_id}" if file_id else "")
        location = f"{self.url}{path}?uploadType=resumable&upload_id={upload_id}"
        return "", 200, {"Location": location, "X-GUploader-UploadID": upload_id}

    def _range_answer(self, session):
        kept = len(session["data"])
        headers = {"Range": f"bytes=0-{kept - 1}"} if kept else {}
        return "", 308, headers

    def _chunk(self, upload_id: str, session: dict):
        header = request.headers.get("Content-Range", "")
        data = request.get_data()
        status_query = re.fullmatch(r"bytes \*/(\d+)", header)
        ranged = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", header)
        if status_query:
            self.record()
            if data or int(status_query[1]) != session["size"]:
                self.error(400, "invalid", "A status query has an empty body and the total size")
            with self.lock:
                if session["done"] is None and len(session["data"]) == session["size"]:
                    self._complete(session)  # a zero-byte file completes on its status query
                if session["done"] is not None:
                    return self._done(session)
                return self._range_answer(session)
        if not ranged:
            self.error(400, "invalid", "Content-Range is required: bytes start-end/total")
        start, end, total = int(ranged[1]), int(ranged[2]), int(ranged[3])
        length = len(data)
        record = {"upload_id": upload_id, "start": start, "length": length, "status": None}
        with self.lock:
            self.chunks.append(record)
            self.log.append((request.method, request.path, length))
            if session["done"] is not None:
                record["status"] = 200
                return self._done(session)
            if total != session["size"] or end - start + 1 != length or end >= total:
                record["status"] = 400
                self.error(400, "invalid", "Content-Range does not match the body or the size")
            if end + 1 < total and length % GRANULE:
                record["status"] = 400
                self.error(400, "invalid", "Invalid request. The number of bytes uploaded is "
                           "required to be a multiple of 262144, except for the final request.")
            if start != len(session["data"]):
                record["status"] = 400
                self.error(400, "invalid", f"Chunk starts at {start}; the session has "
                                           f"{len(session['data'])} bytes")
            failure = self._failures.pop(0) if self._failures else None
            if failure == "500":
                record["status"] = 503
                self.error(503, "backendError", "Backend Error")
            if failure == "drop":
                keep = (length // 2) // GRANULE * GRANULE
                session["data"] += data[:keep]
                record["status"] = "dropped"
            else:
                session["data"] += data
                self.stored_chunks += 1
                if self.after_chunk is not None:
                    self.after_chunk(self.stored_chunks)
                if len(session["data"]) == session["size"]:
                    self._complete(session)
                    record["status"] = 201 if session["file_id"] is None else 200
                    return self._done(session)
                record["status"] = 308
                return self._range_answer(session)
        self._drop_connection()
        return "", 500

    def _drop_connection(self) -> None:
        sock = request.environ.get("werkzeug.socket")
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _complete(self, session: dict) -> None:
        user = self.users[session["user"]]
        content = bytes(session["data"])
        if self._damage_next and content:
            self._damage_next = False
            damaged = bytearray(content)
            damaged[0] ^= 0xFF
            content = bytes(damaged)
        metadata = session["metadata"]
        if session["file_id"] is None:
            item = self._new_item(user, metadata.get("name") or "Untitled",
                                  metadata.get("mimeType") or "application/octet-stream",
                                  (metadata.get("parents") or [f"root-{user.id}"])[0])
            if item["parents"] == ["root"]:
                item["parents"] = [f"root-{user.id}"]
        else:
            item = user.files.get(session["file_id"])
            if item is None:
                self.error(404, "notFound", f"File not found: {session['file_id']}.")
        self._set_content(item, content)
        for key, value in (metadata.get("appProperties") or {}).items():
            if value is None:
                item["appProperties"].pop(key, None)
            else:
                item["appProperties"][key] = str(value)
        session["done"] = item["id"]

    def _done(self, session: dict):
        user = self.users[session["user"]]
        item = user.files.get(session["done"])
        if item is None:
            self.error(404, "notFound", "The uploaded file is gone.")
        status = 201 if session["file_id"] is None else 200
        body = self._select(self._resource(item), session["fields"], DEFAULT_FILE_FIELDS)
        return jsonify(body), status
