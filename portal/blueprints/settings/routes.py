import io

from flask import redirect, request, send_file, url_for
from flask_login import current_user, login_required

from portal.blueprints.settings import bp
from portal.blueprints.settings.forms import TokenForm, UserForm
from portal.core.errors import DepotError
from portal.services import accounts, audit, device_groups
from portal.services import enrollment as enroll
from portal.services.permissions import can, require
from portal.web.auth import console_actor
from portal.web.views import form_errors, page_number, page_or_fragment


@bp.get("/")
@login_required
def index():
    """Settings: users for admins, tokens for everyone else."""
    return redirect(url_for(".users" if can(current_user, "manage_users") else ".tokens"), code=303)


def _users_page(form, error=None, status=200):
    return page_or_fragment("settings/users.html", "settings/_users.html", form=form,
                            users=accounts.list_users(), error=error), status


@bp.get("/users")
@login_required
def users():
    """People who can sign in, and a form to add one (admins only)."""
    require(current_user, "manage_users")
    return _users_page(UserForm())


@bp.post("/users")
@login_required
def create_user():
    """Add a person."""
    require(current_user, "manage_users")
    form = UserForm()
    if not form.validate_on_submit():
        return _users_page(form, form_errors(form), 400)
    sites = [s for s in (form.sites.data or "").split(",") if s.strip()]
    try:
        accounts.create_user(console_actor(), form.email.data, form.password.data, form.role.data, sites)
    except DepotError as exc:
        return _users_page(form, exc.message, exc.status)
    if request.htmx:
        return _users_page(UserForm(formdata=None))
    return redirect(url_for(".users"), code=303)


@bp.post("/users/<int:user_id>/delete")
@login_required
def delete_user(user_id: int):
    """Remove a person."""
    accounts.delete_user(console_actor(), accounts.get_user(user_id))
    if request.htmx:
        return _users_page(UserForm(formdata=None))
    return redirect(url_for(".users"), code=303)


def _tokens_page(form, new_token=None, status=200):
    return page_or_fragment("settings/tokens.html", "settings/_tokens.html", form=form,
                            tokens=current_user.tokens, new_token=new_token), status


@bp.get("/tokens")
@login_required
def tokens():
    """Your personal API tokens."""
    return _tokens_page(TokenForm())


@bp.post("/tokens")
@login_required
def create_token():
    """Create a token; it is shown once."""
    form = TokenForm()
    if not form.validate_on_submit():
        raise DepotError("give the token a name of at most 100 characters")
    _, secret = accounts.create_token(console_actor(), current_user, form.name.data)
    return _tokens_page(TokenForm(formdata=None), new_token=secret, status=201 if not request.htmx else 200)


@bp.post("/tokens/<int:token_id>/revoke")
@login_required
def revoke_token(token_id: int):
    """Revoke a token at once."""
    accounts.revoke_token(console_actor(), token_id)
    if request.htmx:
        return _tokens_page(TokenForm(formdata=None))
    return redirect(url_for(".tokens"), code=303)


@bp.get("/audit")
@login_required
def audit_log():
    """Who changed what, when and from where; filter by person and action."""
    require(current_user, "view_audit")
    page = page_number()
    actor, action = request.args.get("actor", ""), request.args.get("action", "")
    events, total = audit.search(actor=actor or None, action=action or None, page=page)
    return page_or_fragment("settings/audit.html", "settings/_audit.html", events=events,
                            total=total, page=page, per_page=50, actor=actor, action=action)


# --- enrollment ------------------------------------------------------------------------------

def _enrollment_page(error=None, form=None, created=None, status=200):
    server = enroll.server_url(request.host_url)
    new = None
    if created is not None and created.state == "valid":
        secret = enroll.token_secret(created)
        new = {"token": created, "secret": secret,
               "module_command": enroll.module_command(server, secret)}
    return page_or_fragment(
        "settings/enrollment.html", "settings/_enrollment.html",
        tokens=enroll.list_enrollment_tokens(), groups=device_groups.list_groups(), server=server,
        command=enroll.agent_command(), new=new, error=error, form=form or {"days": 7}), status


@bp.get("/enrollment")
@login_required
def enrollment():
    """Enrollment tokens and the client installer endpoints need (admins only)."""
    require(current_user, "manage_settings")
    created = request.args.get("created", "")
    token = None
    if created.isdecimal():
        try:
            token = enroll.get_enrollment_token(int(created))
        except DepotError:
            token = None
    return _enrollment_page(created=token)


@bp.post("/enrollment")
@login_required
def create_enrollment_token():
    """Create an enrollment token (name, validity in days, optional group)."""
    require(current_user, "manage_settings")
    form = {k: request.form.get(k, "") for k in ("name", "days", "group_id")}
    group_id = int(form["group_id"]) if form["group_id"].isdecimal() else None
    try:
        token, _ = enroll.create_enrollment_token(console_actor(), form["name"],
                                                  form["days"] or 7, group_id)
    except DepotError as exc:
        return _enrollment_page(exc.message, form, status=exc.status)
    if request.htmx:
        return _enrollment_page(created=token)
    return redirect(url_for(".enrollment", created=token.id), code=303)


@bp.post("/enrollment/<int:token_id>/revoke")
@login_required
def revoke_enrollment_token(token_id: int):
    """Revoke an enrollment token: no further device enrolls with it."""
    require(current_user, "manage_settings")
    enroll.revoke_enrollment_token(console_actor(), token_id)
    if request.htmx:
        return _enrollment_page()
    return redirect(url_for(".enrollment"), code=303)


@bp.get("/enrollment/<int:token_id>/installer")
@login_required
def enrollment_installer(token_id: int):
    """The client installer of a valid token: depot-agent.json, depot-agent.pyz, README.txt."""
    require(current_user, "manage_settings")
    token, data = enroll.build_installer(console_actor(), token_id,
                                         enroll.server_url(request.host_url))
    slug = "".join(c if c.isalnum() else "-" for c in token.name.lower()).strip("-") or "token"
    return send_file(io.BytesIO(data), mimetype="application/zip", as_attachment=True,
                     download_name=f"depot-agent-{slug}.zip", max_age=0)
