"""Assets: the top-level library entries a DP's inventory makes up, with their digests, and
their status at each DP against central (current, outdated, only-here, unverified, failed).

Rebuilt after every change to an inventory: a rescan, a copy, a delete, a verify. `central_dp`
is the DP every status is measured against (and every copy comes from).
"""
from sqlalchemy import select

from portal.core.libraries import ManifestEntry, manifest_digest, split_inventory_path
from portal.extensions import db
from portal.models import Asset, DistributionPoint, InventoryFile, utcnow


def rebuild_assets(dp_id: int) -> None:
    """Group a DP's inventory into assets (top-level library entries) with their digests.

    One rebuild of a DP at a time: two workers rebuilding the same DP's assets at once (two copies
    to it ending together) would both insert an asset neither saw yet, and the second would fail
    on `uq_assets_dp_key`. The DP's row is locked first, until the caller's transaction ends.
    """
    lock_dp(dp_id)
    groups: dict[tuple[str, str], dict] = {}
    for row in db.session.execute(
        select(InventoryFile.path, InventoryFile.size, InventoryFile.mtime_ns,
               InventoryFile.sha256, InventoryFile.error).where(InventoryFile.dp_id == dp_id)
    ):
        split = split_inventory_path(row.path)
        if split is None:
            continue
        library, name, inner = split
        group = groups.setdefault((library, name), {
            "kind": "file" if inner == name and row.path.count("/") == 1 else "folder",
            "entries": [], "size": 0, "mtime_ns": 0, "unhashed": 0, "error": None,
        })
        group["size"] += row.size
        group["mtime_ns"] = max(group["mtime_ns"], row.mtime_ns)
        if row.sha256:
            group["entries"].append(ManifestEntry(inner, row.size, row.sha256))
        else:
            group["unhashed"] += 1
            group["error"] = group["error"] or (f"{row.path}: {row.error}" if row.error else None)

    existing = {a.key: a for a in db.session.scalars(select(Asset).where(Asset.dp_id == dp_id))}
    now = utcnow()
    for (library, name), group in groups.items():
        key = f"{library}/{name}"
        asset = existing.pop(key, None) or Asset(dp_id=dp_id, key=key, library=library, name=name)
        asset.kind, asset.size, asset.mtime_ns = group["kind"], group["size"], group["mtime_ns"]
        asset.file_count = len(group["entries"]) + group["unhashed"]
        if group["unhashed"]:
            asset.digest = None
            asset.status_reason = group["error"] or f"{group['unhashed']} file(s) not hashed yet"
        else:
            asset.digest = manifest_digest(group["entries"])
            asset.status_reason = None
        asset.updated_at = now
        db.session.add(asset)
    for asset in existing.values():
        db.session.delete(asset)
    db.session.flush()


def lock_dp(dp_id: int) -> None:
    """Lock a DP's row until the transaction ends (PostgreSQL: FOR NO KEY UPDATE, which rows
    inserted meanwhile with a foreign key to it do not wait for; SQLite writes one transaction
    at a time already and has no row locks)."""
    db.session.execute(select(DistributionPoint.id).where(DistributionPoint.id == dp_id)
                       .with_for_update(key_share=True))


def central_dp() -> DistributionPoint:
    """The central DP (there is always exactly one)."""
    return db.session.scalars(
        select(DistributionPoint).where(DistributionPoint.kind == "central")).one()


def refresh_statuses(dp_id: int | None = None) -> None:
    """Recompute each asset's status against central, for one DP or for all of them."""
    central = central_dp()
    central_digests = dict(db.session.execute(
        select(Asset.key, Asset.digest).where(Asset.dp_id == central.id)).all())
    query = select(Asset)
    if dp_id is not None:
        query = query.where(Asset.dp_id == dp_id)
    for asset in db.session.scalars(query):
        asset.status = asset_status(asset, central.id, central_digests)
    db.session.flush()


def asset_status(asset: Asset, central_id: int, central_digests: dict) -> str:
    """current / outdated / only-here / unverified / failed for an asset present at a DP."""
    if asset.digest is None:  # not all hashed: not yet, or a verify found a file changed
        return "failed" if asset.status_reason and "hash mismatch" in asset.status_reason \
            else "unverified"
    if asset.dp_id == central_id:
        return "current"
    if asset.key not in central_digests:
        return "only-here"
    central = central_digests[asset.key]
    if central is None:
        return "unverified"
    return "current" if central == asset.digest else "outdated"
