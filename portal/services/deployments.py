"""Deployments: create (DP chosen by the selection rules, digests pinned), cancel, list."""
from sqlalchemy import or_, select

from portal.extensions import db
from portal.models import Asset, InventoryFile
from portal.services import Conflict


def pin_assets(dp_id: int, keys: list[str]) -> list[dict]:
    """What a deployment of `keys` from this DP must get, as the DP holds it now:
    [{key, digest, files: [{path, size, sha256}]}]; Conflict when a key is not there hashed."""
    pinned = []
    for key in keys:
        asset = db.session.scalars(
            select(Asset).where(Asset.dp_id == dp_id, Asset.key == key)).first()
        if asset is None or not asset.digest:
            raise Conflict(f"{key} is not at this DP (or not hashed yet)")
        rows = db.session.scalars(
            select(InventoryFile)
            .where(InventoryFile.dp_id == dp_id,
                   or_(InventoryFile.path == key, InventoryFile.path.startswith(key + "/",
                                                                                autoescape=True)))
            .order_by(InventoryFile.path)
        ).all()
        if any(not row.sha256 for row in rows):
            raise Conflict(f"{key} is not hashed yet at this DP")
        pinned.append({"key": key, "digest": asset.digest,
                       "files": [{"path": r.path, "size": r.size, "sha256": r.sha256} for r in rows]})
    return pinned
