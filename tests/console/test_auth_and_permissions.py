"""Sign-in, CSRF on every unsafe request, and what each role may do in the console."""
import pytest

from portal.extensions import db
from portal.models import ApiToken, AuditEvent, Job, User
from tests import factories
from tests.factories import PASSWORD, make_user
from tests.helpers import csrf_from


def login(client, email, password):
    token = csrf_from(client.get("/login").get_data(as_text=True))
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token})


def test_sign_in_lands_on_the_dashboard_and_sign_out_ends_the_session(app, client):
    """Does signing in land on the dashboard as that user, and signing out send the next page to
    the login?"""
    user = make_user("technician")
    response = login(client, user.email, PASSWORD)
    assert response.status_code == 303 and response.headers["Location"] == "/"
    assert user.email in client.get("/").get_data(as_text=True)
    token = csrf_from(client.get("/").get_data(as_text=True))
    assert client.post("/logout", data={"csrf_token": token}).status_code == 303
    assert client.get("/").status_code == 302


@pytest.mark.parametrize("which", ["email", "password"])
def test_wrong_sign_in_gives_no_hint(app, client, which):
    """Is the message the same whichever part was wrong?"""
    user = make_user("admin")
    email = "someone@example.com" if which == "email" else user.email
    password = PASSWORD if which == "email" else "wrong password"
    response = login(client, email, password)
    assert response.status_code == 401
    assert "Invalid email or password." in response.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_repeated_wrong_sign_ins_are_slowed_down(app, client):
    """After three failures, is the next try (even with the right password) told to wait?"""
    user = make_user("admin")
    for _ in range(3):
        assert login(client, user.email, "wrong password").status_code == 401
    response = login(client, user.email, PASSWORD)
    assert response.status_code == 429
    assert ("Too many failed sign-ins to this account from this address. Try again in"
            in response.get_data(as_text=True))
    assert client.get("/").status_code == 302


def test_next_parameter_never_leaves_the_site(app, client):
    """Is a `next` that points at another site (//evil.example) ignored after sign-in?"""
    user = make_user("admin")
    token = csrf_from(client.get("/login").get_data(as_text=True))
    response = client.post("/login?next=//evil.example/x", data={
        "email": user.email, "password": PASSWORD, "csrf_token": token})
    assert response.headers["Location"] == "/"


@pytest.mark.parametrize("target", ["/\\evil.example/x", "https://evil.example/x"])
def test_next_with_a_backslash_or_a_scheme_never_leaves_the_site(app, client, target):
    """Browsers read `/\\evil.example` as `//evil.example`: is it ignored after sign-in too?"""
    user = make_user("admin")
    token = csrf_from(client.get("/login").get_data(as_text=True))
    response = client.post("/login", query_string={"next": target}, data={
        "email": user.email, "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 303 and response.headers["Location"] == "/"


def test_form_without_csrf_token_is_refused(login_as, central):
    """Is a form post without its CSRF token a 400, with nothing changed?"""
    console = login_as("admin")
    response = console.client.post(f"/distribution-points/{central.id}/rescan")
    assert response.status_code == 400
    assert "security token" in response.get_data(as_text=True)
    response = console.client.post("/settings/users", data={
        "email": "new@example.com", "password": "plum kettle orbit", "role": "admin"})
    assert response.status_code == 400
    assert db.session.query(Job).count() == 0
    assert db.session.query(User).filter_by(email="new@example.com").count() == 0


def test_htmx_request_with_a_wrong_csrf_header_is_refused(login_as, central):
    """Is an htmx post with a forged X-CSRFToken a 400 shown in the flash area, with nothing
    done?"""
    console = login_as("admin")
    response = console.client.post(f"/distribution-points/{central.id}/rescan",
                                   headers={"HX-Request": "true", "X-CSRFToken": "forged"})
    assert response.status_code == 400
    assert response.headers["HX-Retarget"] == "#flash"
    assert db.session.query(Job).count() == 0


@pytest.mark.parametrize("url, data", [
    ("/distribution-points/{dp}/rescan", {}),
    ("/settings/users", {"email": "x@example.com", "password": "plum kettle orbit", "role": "admin"}),
])
def test_viewer_posting_a_form_is_refused(login_as, central, url, data):
    """Is a viewer's form post a 403 with nothing changed?"""
    console = login_as("viewer")
    response = console.post(url.format(dp=central.id), dict(data, csrf_token=console.csrf))
    assert response.status_code == 403
    assert db.session.query(Job).count() == 0
    assert db.session.query(User).filter_by(email="x@example.com").count() == 0


def test_viewer_sees_no_write_buttons(login_as, central):
    """Do a viewer's Images and DP pages offer no Rescan button?"""
    html = login_as("viewer").get("/libraries/images").get_data(as_text=True)
    assert "Rescan" not in html
    html = login_as("viewer").get("/distribution-points/").get_data(as_text=True)
    assert ">Rescan<" not in html


def test_technician_cannot_administer_users(login_as):
    """Are Users and Audit closed to a technician, whose Settings open on their tokens?"""
    console = login_as("technician")
    assert console.get("/settings/users").status_code == 403
    assert console.get("/settings/audit").status_code == 403
    assert console.get("/settings/").headers["Location"].endswith("/settings/tokens")


def test_admin_adds_a_user_through_the_form(login_as):
    """Does the Users form add a person (audited), and show a clear error for bad input?"""
    console = login_as("admin")
    response = console.post("/settings/users", {"email": "tech@example.com", "password": "plum kettle orbit",
                                                "role": "technician", "sites": ""}, hx=True)
    assert response.status_code == 200 and "tech@example.com" in response.get_data(as_text=True)
    assert db.session.query(AuditEvent).filter_by(action="user.create", target="tech@example.com",
                                                  via="console").count() == 1
    response = console.post("/settings/users", {"email": "bad", "password": "plum kettle orbit",
                                                "role": "viewer"}, hx=True)
    assert response.status_code == 400
    assert "email must look like" in response.get_data(as_text=True)
    factories.add_dp("Seattle DP", site="Seattle")
    factories.add_dp("Portland DP", site="Portland")
    response = console.post("/settings/users", {"email": "v@example.com", "password": "plum kettle orbit",
                                                "role": "viewer", "sites": "Seattle, Portland"})
    assert response.status_code == 303
    assert db.session.query(User).filter_by(email="v@example.com").one().sites == ["Portland", "Seattle"]


def test_token_is_shown_once(login_as):
    """Is a new token shown once, then only its prefix?"""
    console = login_as("technician")
    response = console.post("/settings/tokens", {"name": "laptop script"}, hx=True)
    html = response.get_data(as_text=True)
    token = html.split('<code id="new-token">')[1].split("</code>")[0]
    assert token.startswith("dpt_")
    again = console.get("/settings/tokens").get_data(as_text=True)
    assert token not in again and token[:10] in again
    stored = db.session.query(ApiToken).one()
    response = console.post(f"/settings/tokens/{stored.id}/revoke", hx=True)
    assert "revoked" in response.get_data(as_text=True)
    assert db.session.get(ApiToken, stored.id).revoked_at is not None


def test_token_without_a_name_is_refused_in_the_console(login_as):
    """Is a token with an empty name a 400 in the console, with no token made?"""
    console = login_as("technician")
    response = console.post("/settings/tokens", {"name": ""}, hx=True)
    assert response.status_code == 400
    assert db.session.query(ApiToken).count() == 0


def test_audit_page_filters_by_action_and_actor(login_as):
    """Does the Audit page filter events by action and by who did them?"""
    console = login_as("admin")
    console.post("/settings/users", {"email": "a1@example.com", "password": "plum kettle orbit",
                                     "role": "viewer"})
    html = console.get("/settings/audit?action=user.create&actor=" + console.user.email,
                       hx=True).get_data(as_text=True)
    assert "a1@example.com" in html and "1 event" in html


def test_mark_all_read_empties_the_bell(login_as, central, work):
    """Does a finished job ring the bell, and Mark all read empty it (and tell the page)?"""
    from portal.services import distribution_points as dps
    from portal.services import notifications
    from portal.services.actors import Actor

    console = login_as("admin")
    notifications.choose_successes(console.user, True)  # a finished rescan is routine news
    dps.request_rescan(central, Actor(console.user, via="console"))
    work()
    assert 'class="bell-count">1<' in console.get("/").get_data(as_text=True)
    response = console.post("/notifications/read-all", hx=True)
    assert response.headers["HX-Trigger"] == "bell-changed"
    assert "bell-count" not in console.get("/notifications/bell", hx=True).get_data(as_text=True)
