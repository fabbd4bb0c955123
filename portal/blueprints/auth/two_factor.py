"""The second step of signing in (a code from the authenticator app, or a recovery code) and the
gate that keeps an admin who must set up two-step sign-in on Settings, Security until done.

Between the two steps the session holds whom the password was right for (id and session
version), when, and where to go next; nobody is signed in until the code is right, and the
pending step lapses after PENDING_SECONDS (the password is asked again).
"""
import time

from flask import redirect, render_template, request, session, url_for
from flask_login import current_user, login_user

from portal.blueprints.auth import bp
from portal.blueprints.auth.forms import CodeForm, LoginForm
from portal.core.errors import DepotError, PermissionDenied
from portal.models import User
from portal.services import two_factor
from portal.web.auth import client_ip, session_user
from portal.web.errors import retry_after

# set in the session by a sign-in through the OpenID Connect provider (blueprints/auth/sso.py)
SSO_SESSION_KEY = "depot_signed_in_by_sso"

PENDING_KEY = "pending_second_step"
PENDING_SECONDS = 300
# What an admin who must set up two-step sign-in may still reach (besides static files).
ENROLMENT_ENDPOINTS = {"auth.login", "auth.logout", "auth.second_step", "settings.security",
                       "settings.security_setup", "settings.security_confirm",
                       "settings.security_sign_out_others", "static"}
NOT_CONSOLE = {"api", "agent_api"}  # bearer tokens and device tokens, never the session


def begin(user: User, target: str):
    """After the right password of someone with two-step sign-in: ask for the code."""
    session[PENDING_KEY] = {"user": user.get_id(), "at": int(time.time()), "next": target}
    return redirect(url_for("auth.second_step"), code=303)


def _pending_user() -> tuple[User | None, str]:
    """(the person whose password was right, where to go next); None if nothing is pending,
    it lapsed, or the person changed since (signed out everywhere, deactivated)."""
    pending = session.get(PENDING_KEY)
    if not isinstance(pending, dict):
        return None, ""
    at, target = pending.get("at"), pending.get("next") or url_for("dashboard.index")
    if not isinstance(at, int) or not 0 <= time.time() - at <= PENDING_SECONDS:
        return None, ""
    user = session_user(pending.get("user"))
    if user is None or not two_factor.enabled(user):
        return None, ""
    return user, target


def _again(message: str):
    session.pop(PENDING_KEY, None)
    return render_template("auth/login.html", form=LoginForm(formdata=None), error=message), 400


@bp.route("/login/code", methods=["GET", "POST"])
def second_step():
    """The code after the password; a wrong one counts as a failed sign-in of that account."""
    user, target = _pending_user()
    if user is None:
        return _again("Your sign-in was not finished in time. Enter your email and password "
                      "again.")
    form = CodeForm()
    error, status, headers = None, 200, {}
    if form.validate_on_submit():
        try:
            two_factor.sign_in(user, form.code.data, ip=client_ip())
        except DepotError as exc:
            error, status, headers = exc.message, exc.status, retry_after(exc)
        else:
            session.pop(PENDING_KEY, None)
            session.pop(SSO_SESSION_KEY, None)
            login_user(user)
            return redirect(target, code=303)
    elif request.method == "POST":
        error, status = "Enter the code from your authenticator app.", 400
    return render_template("auth/code.html", form=form, error=error), status, headers


@bp.before_app_request
def _enrolment_gate():
    """An admin who must use two-step sign-in and has not set it up may only set it up (or
    sign out): pages lead there, htmx's reads get nothing (the bell's poll on that very page),
    anything else is refused."""
    if request.blueprint in NOT_CONSOLE or request.endpoint in ENROLMENT_ENDPOINTS \
            or request.endpoint is None:
        return None
    if not current_user.is_authenticated or not two_factor.must_enrol(current_user):
        return None
    if session.get(SSO_SESSION_KEY):  # signed in by the OpenID Connect provider, whose own
        return None                   # second factor applies (README "Single sign-on")
    if request.method == "GET":
        if getattr(request, "htmx", False):
            return "", 204
        return redirect(url_for("settings.security"), code=303)
    raise PermissionDenied("Set up two-step sign-in first (Settings, Security): admins must "
                           "use it here.")
