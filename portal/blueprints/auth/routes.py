"""Routes of sign-in and sign-out."""
from urllib.parse import urlsplit

from flask import redirect, render_template, request, url_for
from flask_login import login_required, login_user, logout_user

from portal.blueprints.auth import bp
from portal.blueprints.auth.forms import LoginForm
from portal.core.errors import DepotError
from portal.services import accounts
from portal.web.views import see_other


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Sign in; the same message whichever of email or password was wrong."""
    form = LoginForm()
    error, status = None, 200
    if form.validate_on_submit():
        try:
            user = accounts.authenticate(form.email.data, form.password.data)
        except DepotError as exc:
            error, status = exc.message, exc.status
        else:
            login_user(user)
            target = request.args.get("next", "")
            if not target.startswith("/") or target.startswith("//") or urlsplit(target).netloc:
                target = url_for("dashboard.index")
            return redirect(target, code=303)
    elif request.method == "POST":
        error, status = "Enter your email and password.", 400
    return render_template("auth/login.html", form=form, error=error), status


@bp.post("/logout")
@login_required
def logout():
    """Sign out."""
    logout_user()
    return see_other("auth.login")
