"""Uploads into central's libraries from the console: the DP node's resumable upload protocol
(portal.dpnode.uploads.UploadStore, the very code a DP node runs) over central's content root.

The browser (portal/static/depot-upload.js) declares each file's path, size and SHA-256, sends
it in chunks in order and, after a dropped connection or a closed lid, asks how far it got. The
store writes the bytes beside the root (`.depot/uploads/`, outside the library folders, so no
rescan sees a partial file), checks size and SHA-256 when the last chunk is in, and only then
renames the file over the asset it replaces: a damaged upload leaves the old asset as it was.
Central then rescans itself (portal.services.central_changes) so the new digest is current.
"""
from flask import current_app

from portal.core.errors import Conflict, DepotError, NotFound
from portal.core.libraries import LIBRARIES, is_ignored_entry
from portal.core.names import escape_component
from portal.core.paths import library_parts
from portal.core.units import human_bytes
from portal.dpnode.uploads import Upload, UploadStore, upload_id, valid_upload_id
from portal.extensions import db
from portal.models import Job
from portal.services import audit, central_changes
from portal.services.actors import Actor
from portal.services.assets import central_dp
from portal.services.permissions import require

MAX_DEPTH = 32  # folders inside a folder asset an upload may name


def store() -> UploadStore:
    """Central's upload store (one per app and root), on central's root with the upload
    settings."""
    app, root = current_app, central_dp().root
    stores = app.extensions.setdefault("depot_central_uploads", {})
    if root not in stores:
        stores[root] = UploadStore(root, app.config["DEPOT_UPLOAD_RESERVE_BYTES"],
                                   app.config["DEPOT_UPLOAD_ABANDON_AFTER"])
    return stores[root]


def asset_path(library: str, rel) -> str:
    """The inventory path ('Images/Win11.wim') of `rel`, a path inside `library` as the browser
    gives it ('Win11.wim', 'Win11-Ref/drivers/x.inf' from a folder); BadPath-style DepotError on
    what the content code refuses: absolute paths, '..', NUL, empty parts, names a rescan would
    ignore (hidden or temporary files at the top of a library)."""
    if library not in LIBRARIES:
        raise NotFound(f"no library {library!r}")
    if not isinstance(rel, str) or not rel or len(rel) > 4096:
        raise DepotError("name the file to upload (a path inside the library)", code="bad_path")
    if rel.startswith(("/", "\\")) or (len(rel) > 1 and rel[1] == ":"):
        raise DepotError(f"the path must be relative to the library, not absolute: {rel!r}",
                         code="bad_path")
    parts = rel.split("/")
    if len(parts) > MAX_DEPTH or any(p in ("", ".", "..") or "\0" in p for p in parts):
        raise DepotError(f"the path may not hold empty, '.' or '..' parts or NUL: {rel!r}",
                         code="bad_path")
    if any(len(p.encode()) > 255 for p in parts):
        raise DepotError(f"a name in {rel!r} is longer than 255 bytes", code="bad_path")
    if is_ignored_entry(parts[0]):
        raise DepotError(f"{parts[0]!r} would not be an asset (hidden and temporary names at the "
                         "top of a library are ignored): rename it first", code="bad_path")
    path = "/".join([library, *(escape_component(p.encode()) for p in parts)])
    library_parts(path)  # the content code's own check, on the escaped form it will use
    return path


def _check_size(size) -> None:
    limit = current_app.config["DEPOT_UPLOAD_MAX_BYTES"]
    if isinstance(size, int) and not isinstance(size, bool) and limit and size > limit:
        raise DepotError(f"the file is {human_bytes(size)}; uploads from the console are limited "
                         f"to {human_bytes(limit)} (DEPOT_UPLOAD_MAX_BYTES)", code="too_large",
                         status=413)


def start(actor: Actor, library: str, rel, size, sha256) -> tuple[dict, bool]:
    """Start an upload of a file into a library at central, or find the one under way (or the
    one that finished, its answer lost): (its state, created)."""
    require(actor.user, "edit_content")
    path = asset_path(library, rel)
    _check_size(size)
    if isinstance(size, int) and isinstance(sha256, str):
        done = store().completed(upload_id(path, size, sha256))
        if done and done["sha256"] == sha256:
            return _state(dict(done, id=upload_id(path, size, sha256), offset=size,
                               received=size, complete=True)), False
    upload, created = store().create(path, size, sha256)
    return _state(upload.to_dict()), created


def status(actor: Actor, library: str, uid: str) -> dict:
    """How far an upload got: `offset` is where the browser resumes."""
    require(actor.user, "edit_content")
    return _state(_upload(library, uid).to_dict())


def write(actor: Actor, library: str, uid: str, offset: int, length: int, read) -> dict:
    """Write the next chunk: `length` bytes at `offset`, which must be where the upload stands
    (409 with the offset otherwise, so a browser that lost track asks and resumes there)."""
    require(actor.user, "edit_content")
    upload = _upload(library, uid)
    if offset != upload.offset:
        exc = Conflict(f"this upload stands at byte {upload.offset}, not {offset}: resume there")
        exc.extra = {"offset": upload.offset}
        raise exc
    return _state(store().write(uid, offset, length, read).to_dict())


def finish(actor: Actor, library: str, uid: str) -> tuple[dict, Job | None]:
    """Check size and SHA-256 and put the file in place of the asset (422 and discarded if it
    arrived damaged: the old asset stays); then central rescans itself: (the upload's state,
    the rescan that will see the file, None while one runs that may not)."""
    require(actor.user, "edit_content")
    if not valid_upload_id(uid):
        raise NotFound(f"no upload {uid}")
    try:
        upload = _upload(library, uid)
    except NotFound:
        done = store().completed(uid)
        if done is None or not done["path"].startswith(library + "/"):
            raise
        return _state(dict(done, id=uid, offset=done["size"], complete=True)), None
    done = store().finish(upload.id)
    audit.record(actor, "content.upload", target=done["path"], size=done["size"],
                 sha256=done["sha256"])
    db.session.commit()
    job = central_changes.rescan_central(actor)
    return _state(dict(done, id=uid, offset=done["size"], complete=True)), job


def abort(actor: Actor, library: str, uid: str) -> None:
    """Forget an upload and the bytes received."""
    require(actor.user, "edit_content")
    store().abort(_upload(library, uid).id)


def _upload(library: str, uid: str) -> Upload:
    """The upload `uid` if it goes into `library`; NotFound otherwise."""
    if not valid_upload_id(uid):
        raise NotFound(f"no upload {uid}")
    upload = store().get(uid)
    if not upload.path.startswith(library + "/"):
        raise NotFound(f"no upload {uid} in {library}")
    return upload


def _state(record: dict) -> dict:
    """What the browser is told: the store's record, the path inside the library, the chunk size
    to send and whether it is complete."""
    path = record["path"]
    return dict(record, name=path.split("/", 1)[1] if "/" in path else path,
                complete=bool(record.get("complete")),
                chunk_bytes=current_app.config["DEPOT_UPLOAD_CHUNK_BYTES"])

