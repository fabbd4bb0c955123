"""The DP node's API under /dp/v1/: the DP key for the central server, signed links for endpoints."""
import hmac
import io
import json
import os
from urllib.parse import quote

from flask import Blueprint, Response, current_app, request, send_file

from portal.core import jsonbody, signing
from portal.core.errors import Conflict, DepotError, NotFound, Unauthorized
from portal.core.files import ContentRoot, open_no_follow
from portal.core.paths import confine, inside_root
from portal.core.version import __version__
from portal.core.chunkstore import ChunkStore
from portal.dpnode import assembly, inventory
from portal.dpnode.uploads import UploadStore, chunk_offset, upload_id, valid_upload_id

bp = Blueprint("dpnode", __name__, url_prefix="/dp/v1")
PUBLIC_ENDPOINTS = {"dpnode.download"}


def store(app=None) -> UploadStore:
    """The node's upload store (one per app)."""
    app = app or current_app
    if "depot_uploads" not in app.extensions:
        app.extensions["depot_uploads"] = UploadStore(
            app.config["DEPOT_DP_ROOT"], app.config["DEPOT_DP_RESERVE_BYTES"],
            app.config["DEPOT_DP_UPLOAD_MAX_AGE"])
    return app.extensions["depot_uploads"]


def _root() -> str:
    return current_app.config["DEPOT_DP_ROOT"]


@bp.before_request
def _authenticate():
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    key = current_app.config["DEPOT_DP_KEY"]
    if scheme.lower() != "bearer" or not hmac.compare_digest(secret.strip().encode(), key.encode()):
        raise Unauthorized("this DP node needs its key: Authorization: Bearer <DEPOT_DP_KEY>")
    return None


@bp.before_request  # after _authenticate: who may not ask learns nothing
def _check_upload_id():
    """An upload id in the path is what upload_id makes (32 hexadecimal characters): anything
    else (a NUL, a control character, a dot) is a 400 before it comes near a file name."""
    uid = (request.view_args or {}).get("uid")
    if uid is not None and not valid_upload_id(uid):
        raise DepotError("an upload id is 32 hexadecimal characters, as POST /dp/v1/uploads "
                         "answers it", code="bad_upload_id")


def _json() -> dict:
    """The request's JSON object (portal.core.jsonbody), at most DEPOT_DP_MAX_JSON bytes: the
    node's MAX_CONTENT_LENGTH is an upload chunk's size."""
    request.max_content_length = current_app.config["DEPOT_DP_MAX_JSON"]  # before it is read
    return jsonbody.read_object(request)


@bp.get("/health")
def health():
    """Version, and free (above the reserve) and total bytes of the root's disk."""
    free, total = store().space()
    return {"status": "ok", "version": __version__, "free_bytes": free, "total_bytes": total,
            "reserve_bytes": store().reserve, "features": _features()}


def _features() -> list[str]:
    """What this node speaks beyond the first protocol: "delta" (chunk plans, see assembly)."""
    return ["delta"] if current_app.config.get("DEPOT_DP_DELTA", True) else []


@bp.get("/inventory")
def inventory_scan():
    """Every file under the library folders, as JSON lines, hashing only what changed (all of
    them with ?verify=1)."""
    root, threads, uploads = _root(), current_app.config["DEPOT_HASH_THREADS"], store()
    verify = request.args.get("verify") == "1"

    def lines():
        for record in inventory.scan(root, threads, verify):
            if record["type"] == "end":
                record["free_bytes"], record["total_bytes"] = uploads.space()
            yield json.dumps(record) + "\n"

    return Response(lines(), mimetype="application/x-ndjson")


@bp.post("/uploads")
def create_upload():
    """Start an upload of {path, size, sha256}, or return the one under way (201 new, 200 found)."""
    body = _json()
    done = store().completed(upload_id(str(body.get("path")), body.get("size"), body.get("sha256")))
    if done and inventory.known_sha256(_root(), done["path"], done["size"], done["mtime_ns"]) in (
            None, done["sha256"]):  # finished already, its answer lost: nothing to send
        # (a verify that found the placed file's bytes changed has told the cache otherwise)
        return dict(done, id=upload_id(done["path"], done["size"], done["sha256"]),
                    offset=done["size"], received=done["size"], complete=True)
    upload, created = store().create(body.get("path"), body.get("size"), body.get("sha256"))
    return upload.to_dict(), 201 if created else 200


@bp.get("/uploads/<uid>")
def show_upload(uid: str):
    """How far an upload got: `offset` is where the sender resumes."""
    return store().get(uid).to_dict()


@bp.patch("/uploads/<uid>")
def write_chunk(uid: str):
    """Write the body at the byte offset given by the Upload-Offset header."""
    offset = chunk_offset(request.headers, request.content_length)
    return store().write(uid, offset, request.content_length, request.stream.read).to_dict()


@bp.put("/uploads/<uid>/index")
def plan_upload(uid: str):
    """Take the new file's chunk index (the packed form of portal.core.chunks) and answer which
    chunks the node lacks: `need` (chunk-number ranges from `done` on) and `reused_bytes`."""
    if "delta" not in _features():
        raise NotFound("this DP node takes whole files only (DEPOT_DP_DELTA=0)")
    return assembly.plan(store(), _root(), uid, request.get_data())


@bp.post("/uploads/<uid>/chunks")
def send_chunks(uid: str):
    """Chunks ?first=F&last=L of a planned upload: the body holds, in order, the bytes of the
    ones the plan says the node lacks; the node builds the rest from its own files."""
    try:
        first, last = int(request.args["first"]), int(request.args["last"])
    except (KeyError, ValueError):
        raise DepotError("name the batch's chunks: ?first=F&last=L") from None
    # The body is read whole first, while the batches before this one are still assembled: the
    # network and the assembly work at the same time (a batch is at most DEPOT_DP_MAX_CHUNK).
    body = io.BytesIO(_body(request.content_length))
    return assembly.assemble(store(), _root(), uid, first, last, body.read)


def _body(length: int | None) -> bytes:
    """The request body read in large pieces (asking gunicorn for a few KiB at a time copies its
    read-ahead buffer again on every call: a batch's body was read at a few hundred MB/s)."""
    if length is None:
        raise DepotError("send a Content-Length with every batch")
    parts, got = [], 0
    while got < length:
        block = request.stream.read(length - got)
        if not block:
            break
        parts.append(block)
        got += len(block)
    return b"".join(parts)


@bp.post("/uploads/<uid>/finish")
def finish_upload(uid: str):
    """Check size and SHA-256 and move the file into place; 422 (and discarded) if damaged."""
    plan = assembly.index_of(store(), uid)
    if plan is not None:  # the batches answered already may still be going into the hash
        assembly.drain(store(), _root(), uid, wait=True)
        assembly.check_assembled(store(), _root(), uid)
    done = store().finish(uid)
    inventory.remember(_root(), done["path"], done["size"], done["mtime_ns"], done["sha256"])
    if plan is not None and plan.size == done["size"]:  # its chunks are where future deltas look
        with ChunkStore(_root(), locate=True) as chunks:
            chunks.put(done["sha256"], plan)
    return done


@bp.delete("/uploads/<uid>")
def abort_upload(uid: str):
    """Forget an upload and its bytes."""
    store().abort(uid)
    return "", 204


@bp.delete("/content")
def delete_content():
    """Delete an asset (file or folder) or one file inside a folder asset: ?path=Images/x.wim."""
    rel = request.args.get("path")
    if not ContentRoot(_root()).delete(rel):
        raise NotFound(f"{rel} is not at this DP")
    return {"deleted": rel}


@bp.get("/download")
def download():
    """A file for an endpoint, through a signed link; Range and conditional requests work."""
    rel, expires, sig = (request.args.get(k) for k in ("path", "expires", "sig"))
    if not rel:
        raise DepotError("the download link names no file")
    signing.check(signing.DP_NODE, current_app.config["DEPOT_DP_KEY"], rel, expires, sig)
    path = confine(_root(), rel)
    if not os.path.isfile(path) or not inside_root(_root(), path):
        raise NotFound(f"{rel} is not at this DP")
    st = os.stat(path)
    etag = inventory.known_sha256(_root(), rel, st.st_size, st.st_mtime_ns)
    prefix = current_app.config.get("DEPOT_DP_X_ACCEL_PREFIX")
    if prefix:  # nginx sends the bytes (and handles Range); we only said yes
        response = Response(status=200)
        response.headers["X-Accel-Redirect"] = prefix.rstrip("/") + "/" + quote(
            os.path.relpath(path, os.fsencode(_root())))
    else:
        response = send_file(os.fsdecode(path), as_attachment=True, conditional=True,
                             etag=etag or False, max_age=0)
        if request.method == "GET" and response.status_code in (200, 206):
            _hand_off(response, path)
    if etag and prefix:
        response.set_etag(etag)
    response.headers["Accept-Ranges"] = "bytes"
    return response


SEND_BLOCK = 1024 * 1024


def _hand_off(response: Response, path) -> None:
    """The body of a 200 or 206 answer as the file itself, at the range's start, for the server
    to send: gunicorn with sendfile(2), waitress reading blocks itself (both send from the
    file's position and no more than Content-Length). Werkzeug's own Range path would read and
    slice every block in Python (several times the CPU per GiB)."""
    start = response.content_range.start if response.status_code == 206 else 0
    length = response.content_length or 0
    response.response.close()  # send_file's own handle
    fh = os.fdopen(open_no_follow(path), "rb", buffering=0)
    try:
        if os.fstat(fh.fileno()).st_size < start + length:
            raise Conflict("the file changed while its download started: ask again")
        fh.seek(start)
    except BaseException:
        fh.close()
        raise
    wrapper = request.environ.get("wsgi.file_wrapper")
    response.response = wrapper(fh, SEND_BLOCK) if wrapper else _Slice(fh, length)


class _Slice:
    """`length` bytes of an open file from its position, in blocks, for a server that has no
    file wrapper (Werkzeug's development server, in tests); closed with the response."""

    def __init__(self, fh, length: int):
        self.fh, self.left = fh, length

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        block = self.fh.read(min(SEND_BLOCK, self.left)) if self.left > 0 else b""
        if not block:
            raise StopIteration
        self.left -= len(block)
        return block

    def close(self) -> None:
        self.fh.close()
