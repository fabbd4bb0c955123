"""The copy and delete jobs: what a worker does to make an asset at a DP identical to central's,
or to remove it there.

A copy sends only the files whose size or SHA-256 differ at the DP (through `transfer`, which
resumes what an earlier run left half-sent), then deletes at the DP the files the asset no longer
has, and records what changed in the DP's inventory, assets and statuses. A DP that takes copies
only in some hours (`allowed_hours`) makes the job wait for its window without counting a try.
"""
import json
from datetime import datetime

from sqlalchemy import delete, or_, select

from portal.core.errors import DepotError, StorageUnavailable
from portal.core.units import human_bytes
from portal.extensions import db
from portal.models import DistributionPoint, InventoryFile, Job, utcnow
from portal.services.assets import central_dp, rebuild_assets, refresh_statuses
from portal.services.backends import open_storage
from portal.services.deltas import sent_words
from portal.services.job_runs import Progress, RetryLater
from portal.services.jobs import dp_of
from portal.services.transfer import Transfer


def in_allowed_hours(hours: str | None, now: datetime) -> float:
    """0 when copies may run now under 'HH-HH', else the seconds until the window opens."""
    if not hours:
        return 0
    start, end = (int(h) for h in hours.split("-"))
    hour = now.hour
    inside = start <= hour < end if start < end else (hour >= start or hour < end)
    if inside:
        return 0
    opens = now.replace(hour=start, minute=0, second=0, microsecond=0)
    wait_s = (opens - now).total_seconds()
    return wait_s if wait_s > 0 else wait_s + 86400


def copy_asset(job: Job, progress: Progress) -> str:
    """Make the job's asset at its DP identical to central's (the RQ job `copy`)."""
    dp = dp_of(job)
    if dp.disabled:
        raise DepotError(f"{dp.name} is disabled for maintenance")
    wait_s = in_allowed_hours(dp.allowed_hours, datetime.now())
    if wait_s:
        raise RetryLater(f"{dp.name} takes copies only {dp.allowed_hours} h", delay=wait_s,
                         counts=False)
    central = central_dp()
    key, dp_id = job.asset_key, dp.id
    sources = _asset_files(central.id, key)
    if not sources:
        raise DepotError(f"{key} is no longer at central")
    if any(row.sha256 is None for row in sources):
        raise DepotError(f"{key} is not fully hashed at central: rescan central, then copy again")
    here = {row.path: row for row in _asset_files(dp_id, key)}
    with open_storage(dp) as backend:
        backend.cancelled = progress.cancelled
        return _copy(dp, backend, central, key, sources, here, progress, job.bytes_sent or 0)


def _copy(dp: DistributionPoint, backend, central: DistributionPoint, key: str, sources: list,
          here: dict, progress: Progress, sent_before: int = 0) -> str:
    """The copy itself, once the backend is open: changed files sent, stale ones removed."""
    dp_id = dp.id
    central_has_file = [row.path for row in sources] == [key]
    if here and central_has_file != (key in here):  # a file became a folder, or the other way
        _run_at_dp(backend.delete, key)  # its files cannot be placed over the old shape
        _record(dp_id, [], list(here))
        here = {}
    to_send = [row for row in sources
               if not (row.path in here and here[row.path].sha256 == row.sha256
                       and here[row.path].size == row.size)]
    stale = sorted(set(here) - {row.path for row in sources})
    transfer = Transfer(backend, dp, central.root, progress, here)
    transfer.sent = sent_before  # what earlier runs of this copy sent counts too
    progress.update(phase="copying", files_total=len(to_send), files_done=0,
                    bytes_total=sum(row.size for row in to_send), bytes_done=0,
                    bytes_sent=transfer.sent, force=True)
    done_bytes, sent = 0, []
    try:
        for number, row in enumerate(to_send, 1):
            progress.update(phase=f"copying {row.path}"[:64], files_done=number - 1, force=True)
            result = transfer.send_file(row, done_bytes)
            sent.append((row, result))
            done_bytes += row.size
        for path in stale:
            progress.check()
            backend.delete(path)
    except StorageUnavailable as exc:
        _record(dp_id, sent, [])
        raise RetryLater(exc.message, delay=exc.retry_after,
                         progressed=transfer.moved > 0) from None
    except BaseException:
        _record(dp_id, sent, [])
        raise
    _record(dp_id, sent, stale)
    progress.update(files_done=len(to_send), bytes_done=done_bytes, phase=None, force=True)
    skipped = len(sources) - len(to_send)
    return (f"{key} is current at {dp.name}: {len(to_send)} file(s) sent, {skipped} already there"
            + (f", {len(stale)} removed" if stale else "") + _network_words(dp, transfer, done_bytes))


def _network_words(dp: DistributionPoint, transfer: Transfer, size: int) -> str:
    """What crossed the network against the size of what was copied: "; 5.2 GiB: 61.0 MiB
    sent, 5.1 GiB reused"; whole files say why where the DP cannot reuse parts."""
    if not size:
        return ""
    try:
        reuses = transfer.backend.reuses_parts
    except DepotError:  # a node that stopped answering after the copy: say nothing of it
        return ""
    if not reuses:
        why = ("the DP node takes whole files only" if dp.kind == "local"
               else "the provider cannot reuse parts")
        return f"; {human_bytes(size)} sent whole: {why}"
    return "; " + sent_words(size, transfer.sent, max(0, size - transfer.sent))


def _run_at_dp(call, *args):
    """A call to the DP outside the sending loop: a DP not answering is a passing failure."""
    try:
        return call(*args)
    except StorageUnavailable as exc:
        raise RetryLater(exc.message, delay=exc.retry_after) from None


def _record(dp_id: int, sent: list, removed: list[str]) -> None:
    """Write what the copy changed at the DP into its inventory, then its assets and statuses."""
    db.session.rollback()
    now = utcnow()
    for row, result in sent:
        db.session.execute(delete(InventoryFile).where(InventoryFile.dp_id == dp_id,
                                                       InventoryFile.path == row.path))
        db.session.add(InventoryFile(dp_id=dp_id, path=row.path, size=result["size"],
                                     mtime_ns=result["mtime_ns"], sha256=result["sha256"],
                                     hashes=json.dumps(result["hashes"]) if result.get("hashes")
                                     else None, last_seen_at=now))
    if removed:
        db.session.execute(delete(InventoryFile).where(InventoryFile.dp_id == dp_id,
                                                       InventoryFile.path.in_(removed)))
    if sent or removed:
        rebuild_assets(dp_id)
        refresh_statuses(dp_id)
    db.session.commit()


def delete_asset(job: Job, progress: Progress) -> str:
    """Remove the job's asset at its DP, then bring the DP's inventory and statuses up to date."""
    dp = dp_of(job)
    try:
        with open_storage(dp) as backend:
            backend.delete(job.asset_key)
    except StorageUnavailable as exc:
        raise RetryLater(exc.message, delay=exc.retry_after) from None
    removed = [row.path for row in _asset_files(dp.id, job.asset_key)]
    _record(dp.id, [], removed)
    if dp.is_central:
        refresh_statuses(None)  # every DP's copy of it is now only-here
        db.session.commit()
    return f"{job.asset_key} deleted from {dp.name}"


def _asset_files(dp_id: int, key: str) -> list:
    """The inventory rows that make up asset `key` at a DP (one for a file, all under a folder)."""
    return list(db.session.execute(
        select(InventoryFile.id, InventoryFile.path, InventoryFile.size, InventoryFile.mtime_ns,
               InventoryFile.sha256, InventoryFile.hashes)
        .where(InventoryFile.dp_id == dp_id,
               or_(InventoryFile.path == key,
                   InventoryFile.path.startswith(key + "/", autoescape=True)))
        .order_by(InventoryFile.path)))
