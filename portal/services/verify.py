"""Verify: hash again everything a DP holds and flag files whose bytes changed under an unchanged
size and mtime (a failing disk, or someone tampering): their asset turns `failed` with the reason.

A file whose size or mtime changed was simply replaced; that is a rescan's business, not a
verify's, so it is left for the next rescan.
"""
import json

from flask import current_app
from sqlalchemy import select, update

from portal.core.errors import PermissionDenied
from portal.core.hashing import Hashed, Reader, hash_files
from portal.extensions import db
from portal.models import DistributionPoint, InventoryFile, Job
from portal.services import notifications
from portal.services.actors import SYSTEM, Actor
from portal.services.assets import rebuild_assets, refresh_statuses
from portal.services.backends import open_storage
from portal.services.job_runs import Progress
from portal.services.jobs import dp_of, start_job
from portal.services.permissions import can_see_dp, require

MAX_NOTIFIED = 20


def request_verify(dp: DistributionPoint, actor: Actor) -> tuple[Job, bool]:
    """Start a verify of the DP, or return the one already queued or running."""
    require(actor.user, "verify")
    if not can_see_dp(actor.user, dp):
        raise PermissionDenied("you may not verify this distribution point")
    return start_job("verify", actor, dp_id=dp.id, dedup_key=f"verify:{dp.id}")


def verify_all() -> list[Job]:
    """The scheduled verify: one job per enabled DP, central included (running ones are joined)."""
    return [start_job("verify", SYSTEM, dp_id=dp.id, dedup_key=f"verify:{dp.id}")[0]
            for dp in db.session.scalars(select(DistributionPoint).where(
                DistributionPoint.disabled.is_(False)).order_by(DistributionPoint.id))]


def _rehash(dp: DistributionPoint, backend, progress: Progress,
            known: dict) -> tuple[list[Hashed], list[str]]:
    """Every file of the DP with its SHA-256 as it is now."""
    problems: list[str] = []
    if backend.hashing == "self":
        progress.update(phase="hashing at the DP", force=True)
        entries = list(backend.walk(problems, verify=True))
        return [Hashed(e, sha256=e.sha256, error=e.error) for e in entries], problems
    entries = list(backend.walk(problems))
    intact = []
    if backend.hashing == "reports":
        # The provider computes its own hash of what it stores: where it still equals the one
        # recorded for this version, the bytes are those Depot recorded. The rest (content written
        # by others, or a hash that changed) is downloaded and hashed.
        entries, intact = _compare_provider_hashes(entries, known)
    progress.update(phase="hashing", files_total=len(entries), files_done=0, bytes_done=0,
                    bytes_total=sum(e.size for e in entries), force=True)
    reader = Reader(current_app.config["DEPOT_SCAN_RATE_LIMIT"], progress.cancelled)
    results: list[Hashed] = []
    threads = max(1, current_app.config["DEPOT_HASH_THREADS"])
    for batch in hash_files(backend, entries, reader, threads):
        results.extend(batch)
        progress.check()
        progress.update(files_done=len(results), bytes_done=reader.bytes_read)
    return intact + results, problems


def _compare_provider_hashes(entries, known: dict) -> tuple[list, list[Hashed]]:
    """(entries to download and hash, results of those the provider's hash vouches for)."""
    to_read, intact = [], []
    for entry in entries:
        row = known.get(entry.path)
        recorded = json.loads(row.hashes) if row is not None and row.hashes else {}
        common = set(recorded) & set(entry.hashes)
        if (row is not None and row.sha256 and common and row.size == entry.size
                and all(recorded[k] == entry.hashes[k] for k in common)):
            intact.append(Hashed(entry, sha256=row.sha256))
        else:
            to_read.append(entry)
    return to_read, intact


def verify_dp(job: Job, progress: Progress) -> str:
    """Hash everything the DP holds again and flag what no longer matches its recorded SHA-256."""
    dp = dp_of(job)
    with open_storage(dp) as backend:
        backend.cancelled = progress.cancelled
        return _verify(job, dp, backend, progress)


def _verify(job: Job, dp: DistributionPoint, backend, progress: Progress) -> str:
    known = {row.path: row for row in db.session.execute(
        select(InventoryFile.id, InventoryFile.path, InventoryFile.size, InventoryFile.mtime_ns,
               InventoryFile.sha256, InventoryFile.hashes, InventoryFile.error)
        .where(InventoryFile.dp_id == dp.id))}
    results, problems = _rehash(dp, backend, progress, known)
    mismatches, hashed_once = [], 0
    for result in results:
        row, entry = known.get(result.entry.path), result.entry
        if row is None or not result.sha256 or (row.size, row.mtime_ns) != (entry.size, entry.mtime_ns):
            continue  # new, unreadable or replaced: the next rescan's business
        if row.sha256 and row.sha256 != result.sha256:
            mismatches.append((row, result.sha256))
        elif row.sha256 is None and row.error is None:  # nobody had hashed it: now it is
            db.session.execute(update(InventoryFile).where(InventoryFile.id == row.id).values(
                sha256=result.sha256))
            hashed_once += 1
    for row, found in mismatches:
        db.session.execute(update(InventoryFile).where(InventoryFile.id == row.id).values(
            sha256=None, error=f"hash mismatch at {dp.name}: expected {row.sha256[:12]}…, "
                               f"found {found[:12]}…"))
    if mismatches or hashed_once:
        rebuild_assets(dp.id)
        refresh_statuses(dp.id)
        for row, _ in mismatches[:MAX_NOTIFIED]:
            notifications.notify("verify.failed", f"hash mismatch at {dp.name}: {row.path}",
                                 level="error", dp_id=dp.id, job_id=job.id)
    db.session.commit()
    for problem in problems:
        progress.warn(problem)
    for row, _ in mismatches:
        progress.warn(f"hash mismatch at {dp.name}: {row.path}")
    return (f"{len(results)} file(s) verified at {dp.name}; "
            + (f"{len(mismatches)} hash mismatch(es)" if mismatches else "all intact")
            + (f"; {hashed_once} hashed for the first time" if hashed_once else ""))
