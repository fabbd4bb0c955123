"""Console sessions end on the server: sign-out, a new password (one's own or set by an admin), a
new role and deactivation end every session of that user, a copied cookie included; API tokens
are a separate thing and keep working (deactivation ends them as it always has)."""
import pytest

from portal.extensions import db
from portal.models import AuditEvent, User
from tests.factories import PASSWORD, add_dp, make_token, make_user
from tests.helpers import Console, csrf_from

NEW_PASSWORD = "tidal lantern moss 7"


def sign_in(app, user, password=PASSWORD):
    client = app.test_client()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"email": user.email, "password": password,
                                           "csrf_token": token})
    assert response.status_code == 303, response.get_data(as_text=True)
    return Console(client, user, csrf_from(client.get("/").get_data(as_text=True)))


def copy_of(app, console):
    """Another browser holding a copy of this session's cookie (as a thief would)."""
    thief = app.test_client()
    thief.set_cookie("session", console.client.get_cookie("session").value)
    assert thief.get("/").status_code == 200  # the copy works, to begin with
    return thief


def signed_in(client) -> bool:
    return client.get("/").status_code == 200


def actions(*names):
    return [(e.action, e.target, e.details) for e in db.session.query(AuditEvent).order_by(
        AuditEvent.id) if e.action in names]


def test_sign_out_ends_a_copied_session_too(app):
    """Does POST /logout end the session on the server, so a copy of its cookie taken before
    sign-out is refused afterwards (and the sign-out audited)?"""
    user = make_user("technician")
    console = sign_in(app, user)
    thief = copy_of(app, console)
    assert console.post("/logout").status_code == 303
    assert not signed_in(thief) and not signed_in(console.client)
    assert actions("auth.logout") == [("auth.logout", user.email, {})]


def test_sign_out_ends_every_session_of_that_user_only(app):
    """Does signing out in one browser end that user's other sessions, but nobody else's?"""
    user, other = make_user("viewer"), make_user("viewer")
    laptop, phone, theirs = sign_in(app, user), sign_in(app, user), sign_in(app, other)
    laptop.post("/logout")
    assert not signed_in(phone.client)
    assert signed_in(theirs.client)


@pytest.mark.parametrize("changes", [{"password": NEW_PASSWORD}, {"role": "viewer"},
                                     {"active": False}])
def test_an_admins_change_ends_the_users_sessions(app, api_as, changes):
    """Does an admin's new password, new role or deactivation of a user end the sessions that
    user has open (audited as such)?"""
    admin = api_as("admin")
    user = make_user("technician")
    console = sign_in(app, user)
    thief = copy_of(app, console)
    response = admin.patch(f"/api/v1/users/{user.id}", json=changes)
    assert response.status_code == 200, response.get_json()
    assert not signed_in(console.client) and not signed_in(thief)
    [(_, target, details)] = actions("user.update")
    assert target == user.email and details["sessions_ended"] is True


def test_changing_sites_or_email_keeps_the_session(app, api_as):
    """Is a change that grants or takes nothing security-relevant (sites, email) left to take
    effect on the next request, without signing the person out?"""
    admin = api_as("admin")
    user = make_user("viewer")
    add_dp("Seattle DP", site="Seattle")
    console = sign_in(app, user)
    assert admin.patch(f"/api/v1/users/{user.id}",
                       json={"sites": ["Seattle"], "email": "moved@example.com"}).status_code == 200
    assert signed_in(console.client)
    [(_, _, details)] = actions("user.update")
    assert details["sessions_ended"] is False


def test_a_new_password_leaves_api_tokens_working(app, api_as):
    """Are personal API tokens left alone by a password change (they are revoked on their own)?"""
    admin = api_as("admin")
    user = make_user("technician")
    token = make_token(user)
    admin.patch(f"/api/v1/users/{user.id}", json={"password": NEW_PASSWORD})
    response = app.test_client().get("/api/v1/distribution-points",
                                     headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


def test_deactivation_still_ends_api_tokens(app, api_as):
    """Does deactivating a user end their API tokens too, as before?"""
    admin = api_as("admin")
    user = make_user("technician")
    token = make_token(user)
    admin.patch(f"/api/v1/users/{user.id}", json={"active": False})
    response = app.test_client().get("/api/v1/distribution-points",
                                     headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


def test_changing_ones_own_password_keeps_this_session_and_ends_the_others(app):
    """Does a person's own new password (Settings > Password) sign out their other sessions,
    keep this one, and make the new password the one that works?"""
    user = make_user("viewer")
    here, elsewhere = sign_in(app, user), sign_in(app, user)
    response = here.post("/settings/password", {"current": PASSWORD, "new": NEW_PASSWORD,
                                                 "confirm": NEW_PASSWORD})
    assert response.status_code == 200
    assert "Password changed" in response.get_data(as_text=True)
    assert signed_in(here.client) and not signed_in(elsewhere.client)
    sign_in(app, user, NEW_PASSWORD)
    assert actions("user.password_change") == [("user.password_change", user.email,
                                                 {"sessions_ended": True})]


@pytest.mark.parametrize("current, new, confirm, status, message", [
    ("wrong password", NEW_PASSWORD, NEW_PASSWORD, 401, "current password is not right"),
    (PASSWORD, NEW_PASSWORD, "tidal lantern moss 8", 400, "two new passwords differ"),
    (PASSWORD, "password", "password", 400, "at least 12 characters"),
    (PASSWORD, "password1234", "password1234", 400, "too easy to guess"),
    (PASSWORD, PASSWORD, PASSWORD, 400, "must differ from the current one"),
])
def test_a_refused_own_password_change_changes_nothing(app, current, new, confirm, status, message):
    """Is a wrong current password, a mistyped confirmation or a weak new password refused with
    why, the password and every session left as they were?"""
    user = make_user("viewer")
    here, elsewhere = sign_in(app, user), sign_in(app, user)
    before = db.session.get(User, user.id).password_hash
    response = here.post("/settings/password", {"current": current, "new": new,
                                                 "confirm": confirm})
    assert response.status_code == status
    assert message in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(User, user.id).password_hash == before
    assert signed_in(here.client) and signed_in(elsewhere.client)


def test_a_wrong_current_password_is_audited(app):
    """Is a failed attempt to change one's password (a borrowed session guessing) audited?"""
    user = make_user("viewer")
    sign_in(app, user).post("/settings/password", {"current": "nope nope nope", "new": NEW_PASSWORD,
                                                   "confirm": NEW_PASSWORD})
    assert actions("user.password_change_refused") == [
        ("user.password_change_refused", user.email, {})]


def test_a_session_from_before_session_versions_must_sign_in_again(app):
    """Is a session holding a bare user id (signed in before the upgrade) refused?"""
    user = make_user("admin")
    console = sign_in(app, user)
    with console.client.session_transaction() as session:
        assert session["_user_id"] == f"{user.id}:0"
        session["_user_id"] = str(user.id)
    assert console.client.get("/").status_code == 302


@pytest.mark.parametrize("session_id", ["abc:0", "{id}:x", "{id}:", ":0", "{id}:-1",
                                        "9" * 40 + ":0", "{id}:" + "9" * 40, "{id}:1",
                                        "2147483648:0", "+{id}:0", "{id}:0:0"])
def test_a_malformed_or_stale_session_id_is_signed_out(app, session_id):
    """Is a session id that is not "id:current version" signed out (not a 500)?"""
    user = make_user("admin")
    console = sign_in(app, user)
    with console.client.session_transaction() as session:
        session["_user_id"] = session_id.format(id=user.id)
    assert console.client.get("/").status_code == 302


def test_sign_in_is_audited(app):
    """Is a successful sign-in audited with the address it came from?"""
    user = make_user("viewer")
    sign_in(app, user)
    [event] = db.session.query(AuditEvent).filter_by(action="auth.login").all()
    assert (event.actor, event.target, event.ip) == (user.email, user.email, "127.0.0.1")


def test_the_password_page_works_as_an_htmx_fragment(app):
    """Does the Password tab show its form, and an htmx change answer with the section only,
    the session going on under the new version?"""
    user = make_user("technician")
    console = sign_in(app, user)
    page = console.get("/settings/password").get_data(as_text=True)
    assert 'name="current"' in page and 'autocomplete="new-password"' in page
    response = console.post("/settings/password", {"current": PASSWORD, "new": NEW_PASSWORD,
                                                   "confirm": NEW_PASSWORD}, hx=True)
    text = response.get_data(as_text=True)
    assert response.status_code == 200 and text.lstrip().startswith('<section id="password">')
    assert "Password changed" in text and signed_in(console.client)
    with console.client.session_transaction() as session:
        assert session["_user_id"] == f"{user.id}:1"


def test_sign_out_everywhere_else_keeps_this_session_only(app):
    """Does Settings > Security's "Sign out everywhere else" end the person's other sessions (a
    copied cookie included) and nobody else's, keep this one and its API tokens, and is it
    audited, as a page and as a fragment?"""
    user, other = make_user("viewer"), make_user("viewer")
    token = make_token(user)
    here, elsewhere, theirs = sign_in(app, user), sign_in(app, user), sign_in(app, other)
    thief = copy_of(app, here)
    page = here.get("/settings/security").get_data(as_text=True)
    assert "Sign out everywhere else" in page and "/settings/security/sign-out-others" in page
    response = here.post("/settings/security/sign-out-others", hx=True)
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and body.lstrip().startswith('<section id="security">')
    assert "Every other session of yours has been signed out" in body
    assert signed_in(here.client) and signed_in(theirs.client)
    assert not signed_in(elsewhere.client) and not signed_in(thief)
    assert app.test_client().get("/api/v1/distribution-points", headers={
        "Authorization": f"Bearer {token}"}).status_code == 200
    assert actions("auth.logout_others") == [("auth.logout_others", user.email, {})]
    again = here.post("/settings/security/sign-out-others")  # a plain form post: the page
    assert again.status_code == 200 and "<html" in again.get_data(as_text=True)
    assert signed_in(here.client) and len(actions("auth.logout_others")) == 2


def test_sign_out_everywhere_else_needs_a_session_and_its_token(app):
    """Is the button's post refused without a session (sign-in page) or without the CSRF token
    (nothing ended)?"""
    user = make_user("viewer")
    here, elsewhere = sign_in(app, user), sign_in(app, user)
    stranger = app.test_client()
    token = csrf_from(stranger.get("/login").get_data(as_text=True))
    anonymous = stranger.post("/settings/security/sign-out-others", data={"csrf_token": token})
    assert anonymous.status_code in (302, 303) and "/login" in anonymous.headers["Location"]
    forged = elsewhere.client.post("/settings/security/sign-out-others")
    assert forged.status_code == 400
    assert signed_in(here.client) and signed_in(elsewhere.client)
    assert actions("auth.logout_others") == []


def test_the_session_and_the_pending_second_step_are_checked_one_way(app):
    """Do a console session and the pending second step of signing in name their user through
    the one check (web.auth.session_user): the current version of an active user only?"""
    from portal.web.auth import session_user

    user = make_user("viewer")
    assert session_user(user.get_id()) == user and session_user(f"{user.id}:1") is None
    for odd in (None, 7, "", f"{user.id}", f"{2 ** 31}:0", f"{user.id}:{'9' * 19}"):
        assert session_user(odd) is None
    user.active = False
    db.session.commit()
    assert session_user(user.get_id()) is None
