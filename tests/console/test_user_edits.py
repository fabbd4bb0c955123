"""Settings, Users, Edit: a person's role, sites, sign-in and password; sites picked from those
Depot knows; the safest role by default."""
import pytest

from portal.extensions import db
from portal.models import AuditEvent, User
from tests.factories import PASSWORD, add_dp, make_user
from tests.helpers import Console, csrf_from

NEW_PASSWORD = "tidal lantern moss 7"


def sign_in(app, user, password=PASSWORD):
    client = app.test_client()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    assert client.post("/login", data={"email": user.email, "password": password,
                                       "csrf_token": token}).status_code == 303
    return Console(client, user, csrf_from(client.get("/settings/password").get_data(as_text=True)))


def signed_in(console) -> bool:
    return console.client.get("/settings/password").status_code == 200


def updates(email):
    return [e.details for e in db.session.query(AuditEvent).filter_by(
        action="user.update", target=email).order_by(AuditEvent.id)]


def form(role="viewer", sites=(), active=True, password="", confirm=None):
    data = {"role": role, "sites": list(sites), "password": password,
            "confirm": password if confirm is None else confirm}
    if active:
        data["active"] = "y"
    return data


def test_edit_page_offers_the_sites_depot_knows(login_as):
    """Does the Edit page (page and fragment) show the person's role and tick their sites among
    the sites of Depot's DPs, each once and sorted, and say of a site no DP has any more that it
    is gone?"""
    admin = login_as("admin")
    add_dp("SEA-1", site="Seattle"), add_dp("SEA-2", site="Seattle"), add_dp("PDX", site="Portland")
    viewer = make_user("viewer", sites=["Seattle"])
    db.session.get(User, viewer.id).sites = ["Seattle", "Tacoma"]  # Tacoma's DP went away
    db.session.commit()
    html = admin.get(f"/settings/users/{viewer.id}/edit").get_data(as_text=True)
    assert "<html" in html and f"Edit user {viewer.email}" in html
    assert html.count('name="sites" value="Seattle" checked') == 1
    assert 'name="sites" value="Portland" >' in html
    assert html.index('value="Portland"') < html.index('value="Seattle"')
    assert "no distribution point is at this site now" in html
    assert '<option selected value="viewer">' in html
    fragment = admin.get(f"/settings/users/{viewer.id}/edit", hx=True).get_data(as_text=True)
    assert "<html" not in fragment and fragment.lstrip().startswith('<section id="user-form">')
    users = admin.get("/settings/users").get_data(as_text=True)
    assert f'href="/settings/users/{viewer.id}/edit"' in users


def test_role_change_ends_the_persons_sessions_and_is_audited(app, login_as):
    """Does a new role, saved from the Edit form, end every console session of that person and
    record who changed what from what?"""
    admin = login_as("admin")
    tech = make_user("technician")
    theirs = sign_in(app, tech)
    response = admin.post(f"/settings/users/{tech.id}", form(role="viewer"), hx=True)
    assert response.status_code == 200 and response.headers["HX-Redirect"] == "/settings/users"
    assert db.session.get(User, tech.id).role == "viewer"
    assert not signed_in(theirs)
    [details] = updates(tech.email)
    assert details["role"] == "viewer" and details["previous_role"] == "technician"
    assert details["fields"] == ["role"] and details["sessions_ended"] is True


def test_new_password_goes_through_the_policy_and_ends_sessions(app, login_as):
    """Is a weak or mistyped new password refused (the form again, nothing changed), and a good
    one set, signing the person out everywhere (the old password no longer works)?"""
    admin = login_as("admin")
    tech = make_user("technician")
    theirs = sign_in(app, tech)
    response = admin.post(f"/settings/users/{tech.id}", form("technician", password="password123"))
    assert response.status_code == 400 and "at least 12" in response.get_data(as_text=True)
    response = admin.post(f"/settings/users/{tech.id}",
                          form("technician", password=NEW_PASSWORD, confirm=NEW_PASSWORD + "x"))
    assert response.status_code == 400 and "differ" in response.get_data(as_text=True)
    assert signed_in(theirs) and updates(tech.email) == []
    response = admin.post(f"/settings/users/{tech.id}", form("technician", password=NEW_PASSWORD))
    assert response.status_code == 303
    assert not signed_in(theirs)
    [details] = updates(tech.email)
    assert details["fields"] == ["password"] and details["sessions_ended"] is True
    assert NEW_PASSWORD not in str(details)
    sign_in(app, tech, NEW_PASSWORD)


def test_unknown_site_is_refused_by_name(login_as):
    """Is "Seatle" refused as a site Depot does not know (suggesting Seattle), on the Edit form
    and the Add form, with nothing changed; and a known site saved without signing the viewer
    out?"""
    admin = login_as("admin")
    add_dp("SEA", site="Seattle")
    viewer = make_user("viewer")
    response = admin.post(f"/settings/users/{viewer.id}", form(sites=["Seatle"]), hx=True)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "Seatle is not a site Depot knows. Did you mean Seattle?" in html
    assert db.session.get(User, viewer.id).sites == []
    response = admin.post("/settings/users", {"email": "new@example.com", "password": NEW_PASSWORD,
                                              "role": "viewer", "sites": "Seatle"}, hx=True)
    assert response.status_code == 400 and "not a site Depot knows" in response.get_data(as_text=True)
    assert db.session.query(User).filter_by(email="new@example.com").count() == 0
    response = admin.post(f"/settings/users/{viewer.id}", form(sites=["Seattle"]))
    assert response.status_code == 303
    assert db.session.get(User, viewer.id).sites == ["Seattle"]
    [details] = updates(viewer.email)
    assert details["sites"] == ["Seattle"] and details["sessions_ended"] is False


@pytest.mark.parametrize("changes", [{"role": "technician"}, {"active": False}])
def test_the_last_active_admin_is_neither_demoted_nor_deactivated(login_as, changes):
    """Is the last active admin's demotion or deactivation refused (409, saying why), with
    nothing changed?"""
    admin = login_as("admin")
    data = form("admin")
    data.update({k: v for k, v in changes.items() if k == "role"})
    if "active" in changes:
        data.pop("active")
    response = admin.post(f"/settings/users/{admin.user.id}", data, hx=True)
    assert response.status_code == 409
    assert "last active admin" in response.get_data(as_text=True)
    me = db.session.get(User, admin.user.id)
    assert me.role == "admin" and me.active and updates(me.email) == []


def test_an_admin_may_be_demoted_while_another_remains(login_as):
    """Is a second admin's demotion and deactivation saved (one audit entry naming both)?"""
    admin = login_as("admin")
    other = make_user("admin")
    response = admin.post(f"/settings/users/{other.id}", form("technician", active=False))
    assert response.status_code == 303
    changed = db.session.get(User, other.id)
    assert changed.role == "technician" and not changed.active
    [details] = updates(other.email)
    assert details["fields"] == ["active", "role"] and details["active"] is False


@pytest.mark.parametrize("role", ["technician", "viewer"])
def test_other_roles_may_not_edit_users(login_as, role):
    """Are a technician and a viewer refused (403) the Edit page and the save, nothing changed?"""
    console = login_as(role)
    target = make_user("technician")
    assert console.get(f"/settings/users/{target.id}/edit").status_code == 403
    assert console.post(f"/settings/users/{target.id}", form("admin")).status_code == 403
    assert db.session.get(User, target.id).role == "technician"


def test_edit_without_csrf_token_is_refused(login_as):
    """Is a save without its CSRF token a 400, nothing changed?"""
    admin = login_as("admin")
    target = make_user("technician")
    response = admin.client.post(f"/settings/users/{target.id}", data=form("admin"))
    assert response.status_code == 400
    assert db.session.get(User, target.id).role == "technician"


def test_bad_role_and_unknown_user(login_as):
    """Is a role that is not one a 400, and a user that does not exist a 404?"""
    admin = login_as("admin")
    target = make_user("technician")
    response = admin.post(f"/settings/users/{target.id}", form("root"))
    assert response.status_code == 400 and "Not a valid choice" in response.get_data(as_text=True)
    assert admin.get("/settings/users/999999/edit").status_code == 404
    assert admin.post("/settings/users/999999", form()).status_code == 404


def test_the_safest_role_is_the_default(login_as):
    """Does the Add form preselect Viewer, and is a person added without a role a viewer?"""
    admin = login_as("admin")
    html = admin.get("/settings/users").get_data(as_text=True)
    assert '<option selected value="viewer">' in html
    assert '<option selected value="admin">' not in html
    response = admin.post("/settings/users", {"email": "new@example.com", "password": NEW_PASSWORD})
    assert response.status_code == 303
    assert db.session.query(User).filter_by(email="new@example.com").one().role == "viewer"
