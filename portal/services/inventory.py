"""Rescans: what a DP holds, file by file, hashing only what changed, and the assets it makes up.

The assets and their statuses against central are built by `assets` once the inventory is
written; a cloud DP's content that Depot did not record is matched to central's here.
"""
import json
import os
import time
from contextlib import closing
from typing import Iterator

from flask import current_app
from sqlalchemy import delete, insert, select, update

from portal.core.chunks import wants_index
from portal.core.chunkstore import ChunkStore
from portal.core.errors import DepotError, NeedsAuth
from portal.core.files import ContentRoot, FileEntry
from portal.core.hashes import MAKERS, PROVIDER_HASH
from portal.core.hashing import Hashed, Reader, hash_entry, hash_files
from portal.core.names import unescape_component
from portal.extensions import db
from portal.models import Asset, DistributionPoint, InventoryFile, Job, utcnow
from portal.services import notifications
from portal.services.assets import central_dp, rebuild_assets, refresh_statuses
from portal.services.backends import open_storage
from portal.services.job_runs import Progress
from portal.services.jobs import dp_of
from portal.storage import answers

BATCH = 500
BATCH_SECONDS = 2.0


def rescan(job: Job, progress: Progress) -> str:
    """Bring a DP's inventory and assets up to date with what its storage holds now."""
    dp = dp_of(job)
    with open_storage(dp) as backend:
        backend.cancelled = progress.cancelled
        return _rescan(dp, backend, progress)


def _rescan(dp: DistributionPoint, backend, progress: Progress) -> str:
    if not dp.is_central or not current_app.config["DEPOT_CHUNK_INDEXES"]:
        return _rescan_with(dp, backend, progress, None)
    with ChunkStore(dp.root) as chunks:
        summary = _rescan_with(dp, backend, progress, chunks)
        chunks.prune(set(db.session.scalars(select(InventoryFile.sha256).distinct()
                                            .where(InventoryFile.sha256.is_not(None)))))
    return summary


def _rescan_with(dp: DistributionPoint, backend, progress: Progress,
                 chunks: ChunkStore | None) -> str:
    """The rescan; at central, `chunks` gets the chunk index of every file hashed (computed in
    the same read) and files hashed before indexes existed are read once more for theirs."""
    dp_id = dp.id
    problems: list[str] = []
    entries: list[FileEntry] = []
    kinds = wanted_hashes() if dp.is_central else ()
    indexed = None
    try:
        backend.ensure_layout() if dp.is_central else backend.ping()
        progress.update(phase="listing files", force=True)
        listing = f"{dp.name}'s listing"
        for entry in backend.walk(problems):
            entries.append(entry if dp.is_central else answers.entry(entry, listing))
            if len(entries) % 5000 == 0:
                progress.check()
                progress.update(phase=f"listing files ({len(entries)} so far)")
        known = {row.path: row for row in db.session.execute(
            select(InventoryFile.id, InventoryFile.path, InventoryFile.size, InventoryFile.mtime_ns,
                   InventoryFile.sha256, InventoryFile.hashes)
            .where(InventoryFile.dp_id == dp_id))}
        indexed = chunks.known() if chunks is not None else None  # the root is there by now
        to_hash = [e for e in entries if _needs_hash(known.get(e.path), e, kinds, indexed)]
        space = answers.space(*backend.space(), f"{dp.name} answered a free space") \
            if not dp.is_central else None
        if backend.hashing == "reports":  # what Depot recorded beside the objects, no download
            progress.update(phase="reading recorded hashes", force=True)
            backend.fill_hashes(to_hash)
            # The last call to the DP was just made: from here on this job writes, and a token
            # renewal (which stores through its own connection) must not wait on those writes.
            match_central(to_hash, progress)
    except DepotError as exc:
        db.session.rollback()
        dp = db.session.get(DistributionPoint, dp_id)
        notifications.set_dp_status(dp, "needs-auth" if isinstance(exc, NeedsAuth) else "offline",
                                    exc.message)
        db.session.commit()
        raise
    progress.update(phase="hashing", files_total=len(to_hash), files_done=0,
                    bytes_total=sum(e.size for e in to_hash), bytes_done=0, force=True)

    if backend.hashes_itself:  # the DP hashed them, or Depot recorded them: store what it said
        reader = Reader(0, progress.cancelled)
        results = (batch for batch in [[Hashed(e, sha256=e.sha256, error=e.error,
                                               hashes=e.hashes or None) for e in to_hash]])
    else:
        reader = Reader(current_app.config["DEPOT_SCAN_RATE_LIMIT"], progress.cancelled, kinds,
                        chunk=chunks is not None)
        threads = max(1, current_app.config["DEPOT_HASH_THREADS"])
        results = hash_files(backend, to_hash, reader, threads)
    counts = _store_results(dp_id, results, reader, known, progress, chunks)
    seen = {e.path for e in entries} - counts.pop("vanished_paths")
    gone = [row.id for path, row in known.items() if path not in seen]
    for start in range(0, len(gone), BATCH):
        db.session.execute(delete(InventoryFile).where(InventoryFile.id.in_(gone[start:start + BATCH])))
    db.session.execute(update(InventoryFile).where(InventoryFile.dp_id == dp_id)
                       .values(last_seen_at=utcnow()))
    changed = bool(to_hash or gone)
    has_assets = db.session.scalar(select(Asset.id).where(Asset.dp_id == dp_id).limit(1))
    if changed or not has_assets:
        progress.update(phase="building assets", force=True)
        rebuild_assets(dp_id)
        refresh_statuses(None if dp.is_central else dp_id)

    dp = db.session.get(DistributionPoint, dp_id)
    dp.free_bytes, dp.total_bytes = backend.space() if dp.is_central else space
    notifications.set_dp_status(dp, "online")
    dp.last_scan_at = utcnow()
    for problem in problems + counts.pop("problems"):
        progress.warn(problem)
    progress.update(files_done=len(to_hash), force=True)
    assets = db.session.scalar(select(db.func.count()).where(Asset.dp_id == dp_id))
    return (f"{_count(assets, 'asset')}, {_count(len(entries), 'file')}; {counts['hashed']} hashed, "
            f"{len(gone)} removed, {len(problems) + counts['unreadable']} skipped")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _needs_hash(row, entry: FileEntry, kinds=(), indexed: set | None = None) -> bool:
    """True when the inventory's row is not this version of the file, has no hash yet, lacks
    a provider hash central now computes (`kinds`), or, with `indexed` (the SHA-256s central
    has chunk indexes of), lacks the index a file of its size has."""
    return (row is None or row.sha256 is None or row.size != entry.size
            or (indexed is not None and wants_index(entry.size) and row.sha256 not in indexed)
            or row.mtime_ns != entry.mtime_ns
            or (entry.sha256 is not None and entry.sha256 != row.sha256)
            or _provider_hash_changed(row, entry)
            or (bool(kinds) and not set(kinds) <= set(json.loads(row.hashes or "{}"))))


def _provider_hash_changed(row, entry: FileEntry) -> bool:
    """The provider reports another hash for the file than the inventory recorded: its bytes
    changed under an unchanged size and time (clients may set Drive's modifiedTime)."""
    if not entry.hashes or not row.hashes:
        return False
    recorded = json.loads(row.hashes)
    return any(recorded[k] != v for k, v in entry.hashes.items() if k in recorded)


def wanted_hashes() -> tuple:
    """The provider hashes central computes at ingest: those of the cloud DPs that exist."""
    providers = db.session.scalars(select(DistributionPoint.provider).where(
        DistributionPoint.kind == "cloud").distinct())
    return tuple(sorted({PROVIDER_HASH[p] for p in providers if p in PROVIDER_HASH}))


def match_central(entries: list[FileEntry], progress: Progress) -> int:
    """Content in a cloud account that Depot did not record (an older console put it there, or
    someone by hand) is taken as central's file when path, size and the provider's own hash agree
    with central's. Central lacking that hash for a candidate computes it once, now. How many
    matched."""
    candidates = [e for e in entries if e.sha256 is None and e.error is None and e.hashes]
    if not candidates:
        return 0
    central = central_dp()
    rows = {}
    paths = [e.path for e in candidates]
    for start in range(0, len(paths), BATCH):
        rows.update({row.path: row for row in db.session.scalars(select(InventoryFile).where(
            InventoryFile.dp_id == central.id, InventoryFile.path.in_(paths[start:start + BATCH]),
            InventoryFile.sha256.is_not(None)))})
    storage, reader, matched = ContentRoot(central.root), Reader(0, progress.cancelled), 0
    for entry in candidates:
        row = rows.get(entry.path)
        if row is None or row.size != entry.size:
            continue
        known = json.loads(row.hashes or "{}")
        missing = tuple(kind for kind in entry.hashes if kind in MAKERS and kind not in known)
        if missing:
            progress.update(phase=f"hashing {entry.path} at central"[:64], force=True)
            reader.kinds = missing
            fresh = hash_entry(storage, FileEntry(row.path, row.size, row.mtime_ns,
                                                  _central_path(central.root, row.path)), reader)
            if fresh.sha256 != row.sha256:
                continue  # central's file changed since its scan: its rescan will see it
            known.update(fresh.hashes or {})
            row.hashes = json.dumps(known, sort_keys=True)
        if any(known.get(kind) == value for kind, value in entry.hashes.items()):
            entry.sha256 = row.sha256
            matched += 1
    db.session.flush()
    return matched


def _central_path(root: str, path: str) -> bytes:
    return os.path.join(os.fsencode(root), *(unescape_component(p) for p in path.split("/")))


def _store_results(dp_id: int, results: Iterator[list[Hashed]], reader: Reader, known: dict,
                   progress: Progress, chunks: ChunkStore | None = None) -> dict:
    """Write hashing results to the inventory in batches, reporting progress as they come."""
    counts = {"hashed": 0, "unreadable": 0, "vanished_paths": set(), "problems": []}
    inserts, updates = [], []
    files_done = 0
    last_write = time.monotonic()

    def write_batch():
        if inserts:
            db.session.execute(insert(InventoryFile), inserts)
        if updates:
            db.session.execute(update(InventoryFile), updates)
        inserts.clear()
        updates.clear()

    with closing(results):  # on any error here, closing it stops the hashing threads at once
        for batch in results:
            for result in batch:
                files_done += 1
                _collect(result, dp_id, known, inserts, updates, counts)
                if chunks is not None and result.index is not None and result.sha256:
                    chunks.put(result.sha256, result.index)
            progress.check()
            if len(inserts) + len(updates) >= BATCH or time.monotonic() - last_write > BATCH_SECONDS:
                write_batch()
                last_write = time.monotonic()
                progress.update(force=True, files_done=files_done, bytes_done=reader.bytes_read)
            else:
                progress.update(files_done=files_done, bytes_done=reader.bytes_read)
    write_batch()
    progress.update(bytes_done=reader.bytes_read, force=True)
    return counts


def _collect(result: Hashed, dp_id, known, inserts, updates, counts) -> None:
    entry = result.entry
    if result.vanished:
        counts["vanished_paths"].add(entry.path)
        counts["problems"].append(f"{entry.path}: vanished during the scan")
        return
    if result.error:
        counts["unreadable"] += 1
        counts["problems"].append(f"{entry.path}: {result.error}")
    else:
        counts["hashed"] += 1
    values = {"size": entry.size, "mtime_ns": entry.mtime_ns, "sha256": result.sha256,
              "error": result.error, "last_seen_at": utcnow(),
              "hashes": json.dumps(result.hashes, sort_keys=True) if result.hashes else None}
    row = known.get(entry.path)
    if row is None:
        inserts.append({"dp_id": dp_id, "path": entry.path, **values})
    else:
        updates.append({"id": row.id, **values})
