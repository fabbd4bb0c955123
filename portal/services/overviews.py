"""What the console's overview pages show, gathered in one call each: the dashboard, the DP list
and a library at the selected DP, with what each row offers the person looking.

An action is offered only when the person may take it and it would do something now. The service
that does it checks again when asked: these decide what a page shows, never what is allowed.
"""
from typing import NamedTuple

from portal.models import DistributionPoint, User
from portal.services import attention, copies, deltas, job_lists
from portal.services import distribution_points as dps
from portal.services.jobs import active_job
from portal.services.permissions import can

# The content statuses a copy from central puts right (a failed copy is tried again).
COPYABLE = ("missing", "outdated", "failed")


def copies_to(user: User, dp: DistributionPoint) -> bool:
    """May the user copy to this DP now: not central, not disabled, offline or needing
    reconnecting?"""
    return can(user, "copy") and not dp.is_central and copies.copy_refusal(dp) is None


def offers_copy_missing(user: User, dp: DistributionPoint, counts: dict[str, int]) -> bool:
    """Offer "Copy what is missing or outdated": the user may copy there and the DP lacks
    something central has (missing, outdated, or a copy that failed)."""
    return copies_to(user, dp) and any(counts.get(status) for status in COPYABLE)


class DpOffers(NamedTuple):
    """What a DP's row in the list offers besides Rescan."""

    copy_missing: bool
    edit: bool
    reconnect: bool
    forget: bool


class AssetOffers(NamedTuple):
    """What an asset's row on a library page offers: tick it for Copy to…, Deploy it, copy it to
    this DP (`copy`, or `repair` after a failed copy), delete it (`central` asks twice, `dp`)."""

    tick: bool
    deploy: bool
    copy: str | None
    delete: str | None


def dp_offers(user: User, dp: DistributionPoint, counts: dict[str, int]) -> DpOffers:
    """What a DP's row in the list offers the user."""
    manage = can(user, "manage_dps") and not dp.is_central
    return DpOffers(copy_missing=offers_copy_missing(user, dp, counts),
                    edit=manage and dp.kind in ("local", "cloud"),
                    reconnect=manage and dps.by_consent(dp), forget=manage)


def asset_offers(user: User, dp: DistributionPoint, library: str, status: str) -> AssetOffers:
    """What an asset's row on a library page offers the user, given its status at the DP."""
    copy = None
    if copies_to(user, dp) and status in COPYABLE:
        copy = "repair" if status == "failed" else "copy"
    delete = None
    if can(user, "delete_content") and status != "missing":
        delete = "central" if dp.is_central else "dp"
    return AssetOffers(tick=status != "only-here",
                       deploy=library == "Images" and status != "only-here" and can(user, "deploy"),
                       copy=copy, delete=delete)


def dashboard(user: User) -> dict:
    """Every DP the user may see with its health and counts per content status, what is wrong
    (`attention`), and the work running now."""
    visible = dps.visible_dps(user)
    counts = dps.status_counts([dp.id for dp in visible])
    return {"dps": visible, "counts": counts, **attention.overview(user, visible, counts),
            "active_jobs": job_lists.running_jobs(user, limit=20)}


def dp_list(user: User) -> list[dict]:
    """The DP list's rows: each DP with where it keeps its files, its health, its counts per
    content status, its running rescan, what the row offers and, where it offers Copy what is
    missing or outdated, about how many bytes that would send (`to_send`, else None)."""
    visible = dps.visible_dps(user)
    counts = dps.status_counts([dp.id for dp in visible])
    rows = []
    for dp in visible:
        here = counts.get(dp.id, {})
        health, reason = dps.health(dp)
        rows.append({"dp": dp, "location": dps.location(dp), "health": health, "reason": reason,
                     "counts": here, "scan": active_job(f"rescan:{dp.id}"),
                     "offers": dp_offers(user, dp, here), "to_send": None})
    estimates = deltas.bytes_to_send([row["dp"] for row in rows if row["offers"].copy_missing])
    for row in rows:
        row["to_send"] = estimates.get(row["dp"].id)
    return rows


def library_page(user: User, library: str) -> dict:
    """One library at the user's selected DP: its assets with what each row offers, the DP's
    running rescan and verify, the DPs the user may copy to, and the copies and deletes running."""
    dp = dps.selected_dp(user)
    items = dps.content(dp, library)
    return {"library": library, "dp": dp, "items": items,
            "offers": {item["key"]: asset_offers(user, dp, library, item["status"])
                       for item in items},
            "scan": active_job(f"rescan:{dp.id}"), "check": active_job(f"verify:{dp.id}"),
            "targets": copies.copy_targets(user, dp),
            "running": job_lists.library_work(user, library)}


def status_matrix(user: User, *, library: str | None = None, status: str | None = None,
                  dp: str = "") -> dict:
    """The status matrix: the visible DPs as columns (or the one `dp` names), central's assets
    (and those only at some DP) as rows, filtered by library and status; counts per column of
    what the rows show (so the summary follows the filter), and per row the cells that offer
    a copy from central (`offers`: {dp_id: "copy" or "repair"}) to the user."""
    visible = dps.visible_dps(user)
    columns = [d for d in visible if dp in ("", str(d.id))]
    ids = [d.id for d in columns]
    rows = dps.status_matrix(ids, library=library, status=status)
    counts: dict[int, dict[str, int]] = {}
    copy_to = [d.id for d in columns if copies_to(user, d)]
    for row in rows:
        for dp_id, cell in row["cells"].items():
            counts.setdefault(dp_id, {})[cell] = counts.get(dp_id, {}).get(cell, 0) + 1
        row["offers"] = {dp_id: "repair" if row["cells"][dp_id] == "failed" else "copy"
                       for dp_id in copy_to
                       if row["at_central"] and row["cells"][dp_id] in COPYABLE}
    return {"visible": visible, "columns": columns, "rows": rows, "counts": counts}
