"""Routes of /settings/: users, API tokens, the audit log, enrollment tokens and installers."""
import io

from flask import Response, request, send_file, stream_with_context
from flask_login import current_user, login_required, login_user
from sqlalchemy import String, cast, func

from portal.blueprints.settings import bp
from portal.blueprints.settings.forms import (
    EditUserForm,
    EnrollmentTokenForm,
    PasswordForm,
    TokenForm,
    UserForm,
)
from portal.core.errors import DepotError
from portal.core.numbers import id_from_text
from portal.models import User, utcnow
from portal.services import accounts, audit, audit_words, device_groups, sites
from portal.services import enrollment as enroll
from portal.services.permissions import can, require
from portal.web import tables
from portal.web.auth import console_actor
from portal.web.views import form_errors, load_page, page_number, page_or_fragment, see_other


@bp.get("/")
@login_required
def index():
    """Settings: users for admins, tokens for everyone else."""
    return see_other(".users" if can(current_user, "manage_users") else ".tokens")


USERS = tables.Table(
    columns={"email": func.lower(User.email), "role": User.role,
             "two_step": User.totp_enabled_at.is_not(None), "created": User.created_at},
    default_sort="email", tiebreak=User.id,
    search=(User.email, User.role, lambda q: cast(User.sites, String).icontains(q, autoescape=True)))


def _users_page(form, error=None, status=200):
    t = tables.rows_of(accounts.users_query(), USERS, "settings.users",
                       asked=tables.read(USERS, request.values))
    return page_or_fragment("settings/users.html", "settings/_users.html", form=form, t=t,
                            users=t.rows, sites=sites.known_sites(), error=error), status


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
    try:
        accounts.create_user(console_actor(), form.email.data, form.password.data, form.role.data,
                             form.site_list())
    except DepotError as exc:
        return _users_page(form, exc.message, exc.status)
    return _users_page(UserForm(formdata=None)) if request.htmx else see_other(".users")


def _user_form(user, form=None, error=None, status=200):
    form = form or EditUserForm.for_user(user)
    known = sites.known_sites()
    return page_or_fragment(
        "settings/user_edit.html", "settings/_user_form.html", user=user, form=form, error=error,
        sites=sorted(set(known) | set(user.sites or [])), known=known), status


@bp.get("/users/<int:user_id>/edit")
@login_required
def edit_user(user_id: int):
    """The form to change a person's role, sites, sign-in and password (admins only)."""
    require(current_user, "manage_users")
    return _user_form(accounts.get_user(user_id))


@bp.post("/users/<int:user_id>")
@login_required
def update_user(user_id: int):
    """Save a person's changes (a new role or password signs them out everywhere); errors: the
    form again, with why."""
    require(current_user, "manage_users")
    user = accounts.get_user(user_id)
    form = EditUserForm()
    if not form.validate():
        return _user_form(user, form, form_errors(form), 400)
    if (form.password.data or "") != (form.confirm.data or ""):
        return _user_form(user, form, "The two new passwords differ.", 400)
    try:
        accounts.update_user(console_actor(), user, form.changes())
    except DepotError as exc:
        return _user_form(user, form, exc.message, exc.status)
    return load_page(".users")


@bp.post("/users/<int:user_id>/delete")
@login_required
def delete_user(user_id: int):
    """Remove a person."""
    accounts.delete_user(console_actor(), accounts.get_user(user_id))
    return _users_page(UserForm(formdata=None)) if request.htmx else see_other(".users")


def _password_page(form, error=None, done=False, status=200):
    return page_or_fragment("settings/password.html", "settings/_password.html", form=form,
                            error=error, done=done), status


@bp.get("/password")
@login_required
def password():
    """Change your own password."""
    return _password_page(PasswordForm())


@bp.post("/password")
@login_required
def change_password():
    """A new password: every other console session of yours ends, this one goes on."""
    form = PasswordForm()
    if not form.validate_on_submit():
        return _password_page(form, form_errors(form), status=400)
    if form.new.data != form.confirm.data:
        return _password_page(form, "The two new passwords differ.", status=400)
    try:
        user = accounts.change_own_password(console_actor(), form.current.data, form.new.data)
    except DepotError as exc:
        return _password_page(form, exc.message, status=exc.status)
    login_user(user)  # this session under the new session version; the others are over
    return _password_page(PasswordForm(formdata=None), done=True)


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
    return _tokens_page(TokenForm(formdata=None), new_token=secret,
                        status=200 if request.htmx else 201)


@bp.post("/tokens/<int:token_id>/revoke")
@login_required
def revoke_token(token_id: int):
    """Revoke a token at once."""
    accounts.revoke_token(console_actor(), token_id)
    return _tokens_page(TokenForm(formdata=None)) if request.htmx else see_other(".tokens")


AUDIT_FILTERS = ("actor", "action", "from", "to")


def _audit_args() -> dict:
    """The audit filters as typed, to show back in the form and the links."""
    return {k: request.args.get(k, "").strip()[:254] for k in AUDIT_FILTERS}


def _audit_filters(args: dict) -> dict:
    """The filters as the service takes them; a bad date is a DepotError saying so."""
    since, until = audit.parse_day(args["from"], "from"), audit.parse_day(args["to"], "to")
    audit.check_range(since, until)
    return {"actor": args["actor"] or None, "action": args["action"] or None,
            "since": since, "until": until}


@bp.get("/audit")
@login_required
def audit_log():
    """Who changed what, when and from where, in sentences; filter by who, what and dates."""
    require(current_user, "view_audit")
    page, args, error = page_number(), _audit_args(), None
    try:
        events, total = audit.search(**_audit_filters(args), page=page)
    except DepotError as exc:  # a bad date: said above the (empty) list, the filters kept
        events, total, error = [], 0, exc.message
    status = 400 if error and not request.htmx else 200  # htmx swaps in 2xx answers only
    return page_or_fragment(
        "settings/audit.html", "settings/_audit.html", lines=audit_words.describe(events),
        total=total, page=page, per_page=50, args=args, error=error,
        kinds=audit_words.ACTION_KINDS, actors=audit.actors()), status


@bp.get("/audit.csv")
@login_required
def audit_csv():
    """The filtered audit log as a CSV download (every matching event, newest first)."""
    require(current_user, "view_audit")
    rows = audit.csv_rows(**_audit_filters(_audit_args()))
    name = f"depot-audit-{utcnow():%Y%m%d-%H%M}.csv"
    return Response(stream_with_context(rows), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


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
        command=enroll.agent_command(), windows_command=enroll.agent_command_windows(), new=new, error=error,
        form=form or EnrollmentTokenForm(formdata=None, days="7")), status


@bp.get("/enrollment")
@login_required
def enrollment():
    """Enrollment tokens and the client installer endpoints need (admins only)."""
    require(current_user, "manage_settings")
    created = id_from_text(request.args.get("created"))
    token = None
    if created is not None:
        try:
            token = enroll.get_enrollment_token(created)
        except DepotError:
            token = None
    return _enrollment_page(created=token)


@bp.post("/enrollment")
@login_required
def create_enrollment_token():
    """Create an enrollment token (name, validity in days, optional group)."""
    require(current_user, "manage_settings")
    form = EnrollmentTokenForm()
    try:
        token, _ = enroll.create_enrollment_token(console_actor(), **form.values())
    except DepotError as exc:
        return _enrollment_page(exc.message, form, status=exc.status)
    if request.htmx:
        return _enrollment_page(created=token)
    return see_other(".enrollment", created=token.id)


@bp.post("/enrollment/<int:token_id>/revoke")
@login_required
def revoke_enrollment_token(token_id: int):
    """Revoke an enrollment token: no further device enrolls with it."""
    require(current_user, "manage_settings")
    enroll.revoke_enrollment_token(console_actor(), token_id)
    return _enrollment_page() if request.htmx else see_other(".enrollment")


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
