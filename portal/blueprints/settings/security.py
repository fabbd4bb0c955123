"""Settings, Security: one's own two-step sign-in (set up, recovery codes, turn off), and an
admin's reset of someone else's (Settings, Users)."""
from flask import request
from flask_login import current_user, login_required, login_user

from portal.blueprints.settings import bp
from portal.blueprints.settings.forms import TotpCodeForm, TotpDisableForm, UserForm
from portal.blueprints.settings.routes import _users_page
from portal.core.errors import DepotError
from portal.services import accounts, two_factor
from portal.web.auth import console_actor
from portal.web.views import form_errors, page_or_fragment, see_other


def _security_page(error=None, codes=None, status=200, code_form=None, disable_form=None,
                   notice=None):
    user = current_user
    return page_or_fragment(
        "settings/security.html", "settings/_security.html", error=error, codes=codes,
        notice=notice,
        enabled=two_factor.enabled(user), must_enrol=two_factor.must_enrol(user),
        required=two_factor.required(user), pending=two_factor.pending(user),
        codes_left=two_factor.recovery_codes_left(user) if two_factor.enabled(user) else 0,
        code_form=code_form or TotpCodeForm(formdata=None),
        disable_form=disable_form or TotpDisableForm(formdata=None)), status


def _refused(form, exc: DepotError | None = None):
    """The page again with why not (a form's errors, or the service's)."""
    if exc is None:
        return _security_page(form_errors(form), status=400)
    return _security_page(exc.message, status=exc.status)


@bp.get("/security")
@login_required
def security():
    """Two-step sign-in: whether it is on, and setting it up or off."""
    return _security_page()


@bp.post("/security/setup")
@login_required
def security_setup():
    """Start setting up an authenticator app: its key, to scan or type in."""
    try:
        two_factor.begin(console_actor())
    except DepotError as exc:
        return _refused(None, exc)
    return _security_page()


@bp.post("/security/confirm")
@login_required
def security_confirm():
    """The app's first code: two-step sign-in on, and the recovery codes shown this once."""
    form = TotpCodeForm()
    if not form.validate_on_submit():
        return _refused(form)
    try:
        codes = two_factor.confirm(console_actor(), form.code.data)
    except DepotError as exc:
        return _refused(form, exc)
    login_user(current_user._get_current_object())  # this session goes on; the others are over
    return _security_page(codes=codes, notice="Your other sessions have been signed out.")


@bp.post("/security/sign-out-others")
@login_required
def security_sign_out_others():
    """Sign out everywhere else: every other console session of yours ends, this one goes on."""
    login_user(accounts.end_other_sessions(console_actor()))
    return _security_page(notice="Every other session of yours has been signed out.")


@bp.post("/security/recovery-codes")
@login_required
def security_recovery_codes():
    """Ten new recovery codes (the old ones stop working), for a current code."""
    form = TotpCodeForm()
    if not form.validate_on_submit():
        return _refused(form)
    try:
        codes = two_factor.regenerate_recovery_codes(console_actor(), form.code.data)
    except DepotError as exc:
        return _refused(form, exc)
    return _security_page(codes=codes)


@bp.post("/security/disable")
@login_required
def security_disable():
    """Turn two-step sign-in off (the password and a code)."""
    form = TotpDisableForm()
    if not form.validate_on_submit():
        return _refused(form)
    try:
        two_factor.disable(console_actor(), form.password.data, form.code.data)
    except DepotError as exc:
        return _refused(form, exc)
    if two_factor.must_enrol(current_user):
        return see_other(".security")
    return _security_page()


@bp.post("/users/<int:user_id>/two-factor/reset")
@login_required
def reset_two_factor(user_id: int):
    """An admin turns off someone else's two-step sign-in (a lost phone); audited."""
    try:
        two_factor.reset(console_actor(), accounts.get_user(user_id))
    except DepotError as exc:
        if not request.htmx:
            raise
        return _users_page(UserForm(formdata=None), exc.message, exc.status)
    return _users_page(UserForm(formdata=None)) if request.htmx else see_other(".users")
