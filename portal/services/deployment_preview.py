"""The deploy form and its preview: what the form offers (central's assets per library, devices,
groups, DPs), and what a deployment would do before it is created: per device the DP the rules
choose and why, and every DP the user sees with the reasons it can or cannot serve.
"""
from sqlalchemy import select

from portal.core.errors import DepotError
from portal.extensions import db
from portal.models import Asset, Device, DeviceGroup, DistributionPoint
from portal.services.assets import central_dp
from portal.services.deployments import (
    MAX_DEVICES,
    PARTS,
    deployment_keys,
    target_devices,
    unfinished,
)
from portal.services.permissions import can_see_dp
from portal.services.selection import Snapshot


def preview(user, *, device_ids=None, group_id=None, image=None, platform_pack=None,
            application_packs=(), answer_file=None, dp_id=None) -> dict:
    """What a deployment would do, for the form: per device the DP and why (or that it is busy),
    and every DP the user sees with its reasons. Input problems are in `error`, never raised."""
    result = {"keys": [], "error": None, "devices": [], "dps": [], "explicit": None,
              "by_dp": [], "copying": False}
    try:
        keys = deployment_keys(image, platform_pack, application_packs, answer_file)
    except DepotError as exc:
        result["error"] = exc.message
        return result
    result["keys"] = keys
    snapshot = Snapshot(keys)
    visible = [dp for dp in sorted(snapshot.dps.values(),
                                   key=lambda d: (not d.is_central, d.name.lower()))
               if can_see_dp(user, dp)]
    for dp in visible:
        reasons = snapshot.eligibility(dp)
        result["dps"].append({"dp": dp, "eligible": not reasons, "reasons": reasons,
                              "copyable": snapshot.copyable(dp) if reasons else []})
    # While a copy the preview mentions runs, the preview refreshes itself.
    result["copying"] = any((snapshot.jobs.get((dp.id, key)) or ("",))[0] == "copying"
                            for dp in visible for key in keys)
    if dp_id is not None:
        result["explicit"] = next((d for d in result["dps"] if d["dp"].id == dp_id), None)
    try:
        devices, _ = target_devices(device_ids, group_id) \
            if device_ids or group_id is not None else ([], None)
    except DepotError as exc:
        result["error"] = exc.message
        return result
    busy = unfinished(devices)
    summary: dict[tuple, dict] = {}
    for device in devices:
        if result["explicit"] is not None:
            explicit = result["explicit"]
            dp = explicit["dp"] if explicit["eligible"] else None
            reason = "chosen by hand" if dp else "; ".join(explicit["reasons"])
            skipped = []
        else:
            choice = snapshot.choose(device)
            dp, reason, skipped = choice.dp, choice.reason, choice.skipped
        result["devices"].append({"device": device, "dp": dp, "reason": reason,
                                  "skipped": skipped, "busy": busy.get(device.id)})
        entry = summary.setdefault((dp.id if dp else None, reason),
                                   {"dp": dp, "reason": reason, "devices": []})
        entry["devices"].append(device.name)
    result["by_dp"] = sorted(summary.values(), key=lambda e: -len(e["devices"]))
    return result


def preview_json(result: dict) -> dict:
    """The preview as the API gives it."""
    def dp_ref(dp):
        return {"id": dp.id, "name": dp.name} if dp else None
    return {
        "keys": result["keys"], "error": result["error"],
        "devices": [{"device_id": d["device"].id, "device_name": d["device"].name,
                     "dp": dp_ref(d["dp"]), "reason": d["reason"],
                     "skipped": [{"dp": dp_ref(s.dp), "rule": s.rule, "reasons": s.reasons}
                                 for s in d["skipped"]],
                     "busy_deployment_id": d["busy"].id if d["busy"] else None}
                    for d in result["devices"]],
        "dps": [{"dp": dp_ref(d["dp"]), "eligible": d["eligible"], "reasons": d["reasons"],
                 "copyable": d["copyable"]} for d in result["dps"]],
    }


def form_options(user) -> dict:
    """What the deploy form offers: central's assets per library, devices, groups, DPs."""
    central = central_dp()
    by_library: dict[str, list[str]] = {library: [] for _, library in PARTS}
    for key, library in db.session.execute(
            select(Asset.key, Asset.library).where(Asset.dp_id == central.id,
                                                   Asset.library.in_(list(by_library)))
            .order_by(Asset.key)):
        by_library[library].append(key)
    dps = [dp for dp in db.session.scalars(select(DistributionPoint).order_by(
        DistributionPoint.kind != "central", DistributionPoint.name)) if can_see_dp(user, dp)]
    return {"images": by_library["Images"], "platform_packs": by_library["Platform Packs"],
            "application_packs": by_library["Application Packs"],
            "answer_files": by_library["Answer Files"],
            "devices": list(db.session.scalars(select(Device)
                                               .where(Device.claims_device_id.is_(None))
                                               .order_by(Device.name)
                                               .limit(MAX_DEVICES))),
            "groups": list(db.session.scalars(select(DeviceGroup).order_by(DeviceGroup.name))),
            "dps": dps}
