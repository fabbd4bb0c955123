"""Routes of /deployments/: the list with live progress, the form with its preview, one deployment,
cancel."""
from flask import make_response, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from portal.blueprints.deployments import bp
from portal.core.errors import DepotError, PermissionDenied
from portal.models.deployments import DEPLOYMENT_STATES
from portal.services import deployment_preview, deployments
from portal.web.auth import console_actor
from portal.web.views import page_number, page_or_fragment, require_role_action

PER_PAGE = 50


def _ints(values: list[str], what: str) -> list[int]:
    try:
        return [int(v) for v in values if v != ""]
    except ValueError:
        raise DepotError(f"{what} must be ids") from None


def _chosen(source) -> dict:
    """What the form (or the query string of a link to it) asks to deploy, and to whom."""
    group = _ints([source.get("group_id", "")], "group_id")
    devices = _ints(source.getlist("device_id"), "device_id")
    target = source.get("target") or ("group" if group and not devices else "devices")
    dp = _ints([source.get("dp_id", "")], "dp_id")
    return {"device_ids": devices if target == "devices" else [],
            "group_id": group[0] if group and target == "group" else None,
            "image": source.get("image") or None,
            "platform_pack": source.get("platform_pack") or None,
            "application_packs": [p for p in source.getlist("application_pack") if p],
            "answer_file": source.get("answer_file") or None,
            "dp_id": dp[0] if dp else None, "target": target}


def _form(chosen: dict, error: DepotError | None = None, status: int = 200):
    """The form page (or its preview fragment for htmx) for what is chosen so far."""
    args = {k: v for k, v in chosen.items() if k != "target"}
    args["device_ids"] = args["device_ids"] or None
    response = page_or_fragment(
        "deployments/new.html", "deployments/_preview.html", chosen=chosen, error=error,
        options=deployment_preview.form_options(current_user),
        preview=deployment_preview.preview(current_user, **args))
    response.status_code = status
    return response


@bp.get("/")
@login_required
def index():
    """Deployments newest first, filtered by state or batch; progress refreshes while any runs."""
    state = request.args.get("state") if request.args.get("state") in DEPLOYMENT_STATES else None
    batch = request.args.get("batch") or None
    page = page_number()
    items, total = deployments.list_deployments(current_user, state=state, batch_id=batch,
                                                page=page, per_page=PER_PAGE)
    return page_or_fragment("deployments/index.html", "deployments/_list.html", items=items,
                            total=total, state=state, batch=batch, page=page, per_page=PER_PAGE,
                            states=DEPLOYMENT_STATES, any_active=any(d.is_active for d in items))


@bp.get("/new")
@login_required
def new():
    """The deploy form: target, image, packs, answer file, DP; the preview says which DP and why."""
    require_role_action("deploy")
    return _form(_chosen(request.args))


@bp.get("/preview")
@login_required
def preview():
    """The form's preview for what is chosen so far (htmx re-renders it on every change)."""
    require_role_action("deploy")
    return _form(_chosen(request.args))


@bp.post("/")
@login_required
def create():
    """Create the deployments and go to their batch; a refusal shows the form again with why."""
    require_role_action("deploy")
    chosen = _chosen(request.form)
    args = {k: v for k, v in chosen.items() if k != "target"}
    try:
        created = deployments.create_deployments(
            console_actor(), **dict(args, device_ids=args["device_ids"] or None))
    except PermissionDenied:
        raise
    except DepotError as exc:
        return _form(chosen, exc, exc.status)
    return redirect(url_for("deployments.index", batch=created[0].batch_id), code=303)


@bp.get("/<int:deployment_id>")
@login_required
def show(deployment_id: int):
    """One deployment: device, DP and why, pinned assets, progress (polling while active)."""
    deployment = deployments.get_deployment(current_user, deployment_id)
    return page_or_fragment("deployments/show.html", "deployments/_deployment.html",
                            deployment=deployment)


@bp.post("/<int:deployment_id>/cancel")
@login_required
def cancel(deployment_id: int):
    """Cancel a pending deployment, or ask a running one's agent to stop."""
    deployment = deployments.cancel_deployment(console_actor(), deployment_id)
    if not request.htmx:
        return redirect(url_for("deployments.show", deployment_id=deployment.id), code=303)
    response = make_response(render_template("deployments/_deployment.html",
                                             deployment=deployment))
    response.headers["HX-Trigger"] = "deployments-changed"
    return response
