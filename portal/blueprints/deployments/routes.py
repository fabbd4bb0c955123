"""Routes of /deployments/: the list with live progress, the form with its preview, one deployment,
cancel, redeploy of the ticked ones."""
from flask import make_response, render_template, request
from flask_login import current_user, login_required
from sqlalchemy import func

from portal.blueprints.deployments import bp
from portal.blueprints.deployments.forms import DeployForm
from portal.core.errors import DepotError, PermissionDenied
from portal.models import Deployment
from portal.models.deployments import DEPLOYMENT_STATES
from portal.services import bulk, deployment_preview, deployments
from portal.web import tables
from portal.web.auth import console_actor
from portal.web.views import page_or_fragment, require_role_action, see_other

PER_PAGE = 50


def _asked(form: DeployForm) -> dict:
    """What to hand the services from what the form chose (devices None when none)."""
    args = {k: v for k, v in form.chosen().items() if k != "target"}
    return dict(args, device_ids=args["device_ids"] or None)


def _form(form: DeployForm, error: DepotError | None = None, status: int = 200):
    """The form page (or its preview fragment for htmx) for what is chosen so far."""
    response = page_or_fragment(
        "deployments/new.html", "deployments/_preview.html", chosen=form.chosen(), error=error,
        options=deployment_preview.form_options(current_user),
        preview=deployment_preview.preview(current_user, **_asked(form)))
    response.status_code = status
    return response


TABLE = tables.Table(
    columns={"id": Deployment.id, "device": func.lower(Deployment.device_name),
             "image": Deployment.image, "dp": Deployment.dp_name, "state": Deployment.state,
             "created": Deployment.created_at},
    default_sort="created", default_dir="desc", tiebreak=Deployment.id, per_page=PER_PAGE,
    search=(Deployment.device_name, Deployment.image, Deployment.dp_name, Deployment.state,
            Deployment.error))


@bp.get("/")
@login_required
def index():
    """Deployments newest first (or sorted by a column), filtered by state or batch, searched and
    paged; progress refreshes while any runs."""
    state = request.args.get("state") if request.args.get("state") in DEPLOYMENT_STATES else None
    batch = request.args.get("batch") or None
    t = tables.rows_of(deployments.deployments_query(current_user, state=state, batch_id=batch),
                       TABLE, "deployments.index", keep={"state": state, "batch": batch})
    return page_or_fragment("deployments/index.html", "deployments/_list.html", t=t,
                            items=t.rows, total=t.total, state=state, batch=batch,
                            any_active=any(d.is_active for d in t.rows))


@bp.post("/redeploy")
@login_required
def redeploy():
    """Deploy again what the ticked failed or cancelled deployments deployed, to the same
    devices, through the same checks as the deploy form."""
    return tables.bulk_action(bulk.redeploy, request.form.getlist("deployment_id"),
                              "deployments.index")


@bp.get("/new")
@login_required
def new():
    """The deploy form: target, image, packs, answer file, DP; the preview says which DP and why."""
    require_role_action("deploy")
    return _form(DeployForm(request.args))


@bp.get("/preview")
@login_required
def preview():
    """The form's preview for what is chosen so far (htmx re-renders it on every change)."""
    require_role_action("deploy")
    return _form(DeployForm(request.args))


@bp.post("/")
@login_required
def create():
    """Create the deployments and go to their batch; a refusal shows the form again with why."""
    require_role_action("deploy")
    form = DeployForm()
    asked = _asked(form)  # ids that are not numbers: a 400 of its own, not the form again
    try:
        created = deployments.create_deployments(console_actor(), **asked)
    except PermissionDenied:
        raise
    except DepotError as exc:
        return _form(form, exc, exc.status)
    return see_other("deployments.index", batch=created[0].batch_id)


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
        return see_other("deployments.show", deployment_id=deployment.id)
    response = make_response(render_template("deployments/_deployment.html",
                                             deployment=deployment))
    response.headers["HX-Trigger"] = "deployments-changed"
    return response
