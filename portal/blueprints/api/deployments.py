"""Deployments: create (the DP chosen by the rules, or 409 with the reasons), get, list, cancel."""
from flask import g, request

from portal.blueprints.api import bp
from portal.core.errors import DepotError
from portal.core.numbers import clean_id
from portal.services import deployment_preview, deployments
from portal.services.permissions import require
from portal.web.auth import api_actor
from portal.web.views import json_body, paginated, pagination


def _int_arg(name: str) -> int | None:
    value = request.args.get(name)
    if value in (None, ""):
        return None
    return clean_id(value, name, from_text=True,
                    message=f"{name} must be an id (a positive whole number)")


@bp.post("/deployments")
def create_deployments():
    """Deploy {image, platform_pack, application_packs, answer_file} to {device_ids} or a
    {group_id}, from {dp_id} or the DP the rules choose: 201 {items}; 409 {reasons}."""
    body = json_body()
    unknown = set(body) - {"device_ids", "group_id", "image", "platform_pack",
                           "application_packs", "answer_file", "dp_id"}
    if unknown:
        raise DepotError(f"unknown field(s): {', '.join(sorted(unknown))}")
    items = deployments.create_deployments(
        api_actor(), device_ids=body.get("device_ids"), group_id=body.get("group_id"),
        image=body.get("image"), platform_pack=body.get("platform_pack"),
        application_packs=body.get("application_packs") or [],
        answer_file=body.get("answer_file"), dp_id=body.get("dp_id"))
    return {"items": [d.to_dict() for d in items], "batch_id": items[0].batch_id}, 201


@bp.get("/deployments")
def list_deployments():
    """Deployments newest first; ?state= ?device_id= ?group_id= ?batch_id= ?dp_id= ?site=."""
    page, per_page = pagination()
    items, total = deployments.list_deployments(
        g.api_user, state=request.args.get("state"), device_id=_int_arg("device_id"),
        group_id=_int_arg("group_id"), batch_id=request.args.get("batch_id"),
        dp_id=_int_arg("dp_id"), site=request.args.get("site"), page=page, per_page=per_page)
    return paginated([d.to_dict() for d in items], total, page, per_page)


@bp.get("/deployments/preview")
def preview_deployment():
    """What a deployment would do: ?device_id= (repeated) or ?group_id=, ?image=, ?platform_pack=,
    ?application_pack= (repeated), ?answer_file=, ?dp_id=: per device the DP and why."""
    require(g.api_user, "deploy")
    device_ids = [clean_id(v, "device_id", from_text=True,
                           message="device_id must be an id (a positive whole number)")
                  for v in request.args.getlist("device_id")]
    result = deployment_preview.preview(
        g.api_user, device_ids=device_ids or None, group_id=_int_arg("group_id"),
        image=request.args.get("image"), platform_pack=request.args.get("platform_pack"),
        application_packs=request.args.getlist("application_pack"),
        answer_file=request.args.get("answer_file"), dp_id=_int_arg("dp_id"))
    return deployment_preview.preview_json(result)


@bp.get("/deployments/<int:deployment_id>")
def get_deployment(deployment_id: int):
    """One deployment: state, bytes done/total, error, the DP and why."""
    return deployments.get_deployment(g.api_user, deployment_id).to_dict()


@bp.post("/deployments/<int:deployment_id>/cancel")
def cancel_deployment(deployment_id: int):
    """Cancel a pending deployment, or ask a running one to stop (409 once finished)."""
    return deployments.cancel_deployment(api_actor(), deployment_id).to_dict()
