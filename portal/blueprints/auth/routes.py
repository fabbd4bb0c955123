"""Routes of sign-in and sign-out."""

from flask import redirect, render_template, request, session
from flask_login import login_required, login_user, logout_user

from portal.blueprints.auth import bp
from portal.blueprints.auth import two_factor as second_step
from portal.blueprints.auth.forms import LoginForm
from portal.core.errors import DepotError
from portal.services import accounts, two_factor
from portal.web import nav
from portal.web.auth import client_ip, console_actor
from portal.web.errors import retry_after
from portal.web.views import safe_next, see_other


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Sign in; the same message whichever of email or password was wrong. The session keeps the
    user's session version (User.get_id), so sign-out or a new password elsewhere ends it."""
    form = LoginForm()
    error, status, headers = None, 200, {}
    if form.validate_on_submit():
        try:
            user = accounts.check_password(form.email.data, form.password.data, ip=client_ip())
        except DepotError as exc:
            error, status, headers = exc.message, exc.status, retry_after(exc)
        else:
            target = nav.after_sign_in(user, safe_next(request.args.get("next")))
            if two_factor.enabled(user):  # the code next (blueprints/auth/two_factor.py)
                return second_step.begin(user, target)
            session.pop(second_step.SSO_SESSION_KEY, None)
            login_user(user)
            return redirect(target, code=303)
    elif request.method == "POST":
        error, status = "Enter your email and password.", 400
    return render_template("auth/login.html", form=form, error=error), status, headers


@bp.post("/logout")
@login_required
def logout():
    """Sign out, ending every console session of this user (a copied cookie included)."""
    accounts.sign_out(console_actor())
    logout_user()
    session.pop(second_step.SSO_SESSION_KEY, None)
    return see_other("auth.login")
