"""Delta replication as people see it: which DPs reuse parts of what they hold, what a copy sent
across the network against its size, and about how much "Copy what is missing or outdated"
would send.

What the console shows is decided here from the rows (the job, the DP, the inventories) and
central's chunk store; nothing here asks a DP anything, so a page costs no round trip. A DP node
too old to speak the delta protocol is still counted as reusing parts (only its health check
would tell), and gets whole files from the copy itself. An S3 DP reuses runs of 5 MiB or more
only (its parts' smallest size), so its estimate is what a delta upload's plan would upload.
"""
import logging
import os
import sqlite3

from sqlalchemy import select

from portal.core.chunks import ChunkIndex, wants_index
from portal.core.chunkstore import ChunkStore, store_path
from portal.core.errors import DepotError
from portal.core.libraries import split_inventory_path
from portal.core.units import human_bytes
from portal.extensions import db
from portal.models import Asset, DistributionPoint, InventoryFile, Job
from portal.services.assets import central_dp
from portal.storage.s3_plan import uploaded_bytes

log = logging.getLogger(__name__)

# Cloud providers whose uploads can take parts of an object already there (S3's UploadPartCopy).
# OneDrive, Google Drive and Dropbox have no server-side partial copy: whole files only.
REUSING_PROVIDERS = ("s3",)
WHOLE_FILE = "whole file: the provider cannot reuse parts"


def reuses_parts(dp: DistributionPoint) -> bool:
    """Can a copy to this DP send only the chunks it lacks: DP nodes and S3, not the others?"""
    return dp.kind == "local" or (dp.kind == "cloud" and dp.provider in REUSING_PROVIDERS)


def _reuse(dp: DistributionPoint) -> str | None:
    """How a DP reuses what it holds: "chunks" (a DP node: any chunk), "runs" (S3: runs of
    5 MiB or more, copied as parts), None (whole files)."""
    if not reuses_parts(dp):
        return None
    return "chunks" if dp.kind == "local" else "runs"


def copy_words(job: Job) -> str | None:
    """What a copy's progress says beside its bar of the network: "5.2 GiB: 61.0 MiB sent, 5.1
    GiB reused" (reused: bytes covered but not sent; while running, of the bytes done so far),
    or WHOLE_FILE for a DP whose provider cannot reuse parts. None for other jobs, a copy that
    has not counted its bytes (bytes_sent NULL: older jobs, or none sent yet), a copy that
    failed or was cancelled (its error says what happened), and a finished copy whose summary
    already says the same words."""
    if job.kind != "copy" or job.state not in ("queued", "running", "succeeded"):
        return None
    if job.dp is not None and not reuses_parts(job.dp):
        return WHOLE_FILE
    if job.bytes_sent is None or not job.bytes_total:
        return None
    covered = job.bytes_done if job.is_active else job.bytes_total
    words = sent_words(job.bytes_total, job.bytes_sent, max(0, (covered or 0) - job.bytes_sent))
    if not job.is_active and words in (job.summary or ""):
        return None
    return words


def sent_words(size: int, sent: int, reused: int) -> str:
    """"5.2 GiB: 61.0 MiB sent, 5.1 GiB reused": the one way progress and summaries say it."""
    return f"{human_bytes(size)}: {human_bytes(sent)} sent, {human_bytes(reused)} reused"


def bytes_to_send(dps: list[DistributionPoint]) -> dict[int, int]:
    """About how many bytes "Copy what is missing or outdated" would send to each of `dps`.

    Every file of central's hashed assets that the DP lacks or holds in another version counts
    whole, except where the DP reuses parts and central's chunk store has the indexes of both
    the new version and the DP's version at that path: then only the new version's chunks whose
    digest the old one lacks count (at S3: what the delta's plan uploads). An estimate from the rows and the indexes alone (no file is
    read, one store opened): a DP node that finds a chunk in another of its files sends less.
    """
    if not dps:
        return {}
    central = central_dp()
    hashed = set(db.session.scalars(select(Asset.key).where(
        Asset.dp_id == central.id, Asset.digest.is_not(None))))
    wanted = [(path, size, sha) for path, size, sha in db.session.execute(
        select(InventoryFile.path, InventoryFile.size, InventoryFile.sha256)
        .where(InventoryFile.dp_id == central.id, InventoryFile.sha256.is_not(None)))
        if _asset_key(path) in hashed]
    ids = [dp.id for dp in dps]
    held: dict[int, dict[str, tuple[int, str | None]]] = {dp_id: {} for dp_id in ids}
    for dp_id, path, size, sha in db.session.execute(
            select(InventoryFile.dp_id, InventoryFile.path, InventoryFile.size,
                   InventoryFile.sha256).where(InventoryFile.dp_id.in_(ids))):
        held[dp_id][path] = (size, sha)
    with _Indexes(central.root) as indexes:
        return {dp.id: sum(_to_send(indexes, _reuse(dp), held[dp.id].get(path), size, sha)
                           for path, size, sha in wanted)
                for dp in dps}


def _asset_key(path: str) -> str | None:
    split = split_inventory_path(path)
    return f"{split[0]}/{split[1]}" if split else None


def _to_send(indexes: "_Indexes", reuse: str | None, old: tuple[int, str | None] | None,
             size: int, sha256: str) -> int:
    """The bytes one central file would cost: 0 when the DP holds this version, its changed
    chunks (S3: its plan's uploads) when both indexes are known, else all of it."""
    if old is not None and old == (size, sha256):
        return 0
    if not (reuse and old is not None and old[1] and wants_index(size)):
        return size
    changed = indexes.changed_bytes(sha256, old[1], runs=reuse == "runs")
    return size if changed is None else changed


class _Indexes:
    """Central's chunk store for one request, read only: each pair of versions is compared once,
    and a store that is not there (no rescan since chunk indexes came) or cannot be read counts
    as having no indexes, so the page still shows, with whole files."""

    def __init__(self, root: str | None):
        self.store = None
        if root and os.path.exists(store_path(root)):
            self.store = ChunkStore(root)
        self._changed: dict[tuple[str, str, bool], int | None] = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        if self.store is not None:
            self.store.close()

    def _get(self, sha256: str) -> ChunkIndex | None:
        try:
            return self.store.get(sha256)
        except (sqlite3.Error, DepotError) as exc:
            log.warning("central's chunk store: %s", exc)
            self.store.close()
            self.store = None
            return None

    def changed_bytes(self, new: str, old: str, runs: bool = False) -> int | None:
        """Bytes of the new version's chunks whose digest the old version lacks (`runs`: that
        an S3 delta upload's plan uploads); None unless both indexes are in the store."""
        if (new, old, runs) not in self._changed:
            self._changed[new, old, runs] = self._compare(new, old, runs)
        return self._changed[new, old, runs]

    def _compare(self, new: str, old: str, runs: bool) -> int | None:
        if self.store is None:
            return None
        new_index = self._get(new)
        old_index = self._get(old) if new_index is not None else None
        if new_index is None or old_index is None:
            return None
        if runs:
            return uploaded_bytes(new_index, old_index)
        known = set(old_index.digests)
        return sum(length for length, digest in zip(new_index.lengths, new_index.digests)
                   if digest not in known)
