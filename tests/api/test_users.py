"""GET/POST /api/v1/users, PATCH/DELETE /api/v1/users/<id>: admins only, validated, audited."""
import pytest

from portal.extensions import db
from portal.models import AuditEvent, User
from tests.factories import add_dp


def users_count():
    return db.session.query(User).count()


def test_admin_creates_lists_updates_and_deletes(api_as):
    """Can an admin manage users through the API, each change audited with the actor?"""
    api = api_as("admin")
    add_dp("Seattle DP", site="Seattle")
    response = api.post("/api/v1/users", json={"email": "branch@example.com", "password": "plum kettle orbit",
                                               "role": "viewer", "sites": ["Seattle"]})
    assert response.status_code == 201
    created = response.get_json()
    assert created["role"] == "viewer" and created["sites"] == ["Seattle"]
    assert "password" not in str(created) and "hash" not in str(created)
    emails = [u["email"] for u in api.get("/api/v1/users").get_json()["items"]]
    assert "branch@example.com" in emails
    patched = api.patch(f"/api/v1/users/{created['id']}", json={"role": "technician", "sites": []})
    assert patched.status_code == 200 and patched.get_json()["role"] == "technician"
    assert api.delete(f"/api/v1/users/{created['id']}").status_code == 204
    assert api.get(f"/api/v1/users/{created['id']}").status_code == 404
    actions = [e.action for e in db.session.query(AuditEvent).filter_by(actor=api.user.email)]
    assert {"user.create", "user.update", "user.delete"} <= set(actions)


@pytest.mark.parametrize("role", ["technician", "viewer"])
def test_only_admins_manage_users(api_as, role):
    """Is a technician or viewer refused (403) on every user call, and nothing changed?"""
    api = api_as(role)
    before = users_count()
    assert api.get("/api/v1/users").status_code == 403
    response = api.post("/api/v1/users", json={"email": "x@example.com", "password": "plum kettle orbit",
                                               "role": "admin"})
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "forbidden"
    assert api.patch(f"/api/v1/users/{api.user.id}", json={"role": "admin"}).status_code == 403
    assert api.delete(f"/api/v1/users/{api.user.id}").status_code == 403
    assert users_count() == before
    db.session.refresh(api.user)
    assert api.user.role == role


@pytest.mark.parametrize("body, message", [
    ({"email": "not-an-email", "password": "plum kettle orbit", "role": "viewer"}, "email must look like"),
    ({"email": 5, "password": "plum kettle orbit", "role": "viewer"}, "email must be a string"),
    ({"email": "a@example.com", "password": "short", "role": "viewer"}, "at least 12"),
    ({"email": "a@example.com", "password": ["x"], "role": "viewer"}, "password must be a string"),
    ({"email": "a@example.com", "password": "plum kettle orbit", "role": "root"}, "role must be one of"),
    ({"email": "a@example.com", "password": "plum kettle orbit", "role": "viewer", "sites": "Seattle"},
     "sites must be a list"),
    ({"email": "a@example.com", "password": "plum kettle orbit", "role": "viewer", "sites": ["Sea\x07"]},
     "control characters"),
    ({"email": "a@example.com", "password": "plum kettle orbit", "role": "viewer", "sites": ["s" * 101]},
     "at most 100"),
])
def test_bad_user_input_is_refused(api_as, body, message):
    """Are bad fields a 400 with a message that names the problem, and nothing created?"""
    api = api_as("admin")
    before = users_count()
    response = api.post("/api/v1/users", json=body)
    assert response.status_code == 400
    assert message in response.get_json()["error"]["message"]
    assert users_count() == before


def test_duplicate_email_is_a_conflict(api_as):
    """Is a second user with an email already taken a 409?"""
    api = api_as("admin")
    response = api.post("/api/v1/users", json={"email": api.user.email, "password": "plum kettle orbit",
                                               "role": "viewer"})
    assert response.status_code == 409


def test_last_admin_cannot_be_removed_or_demoted(api_as):
    """Can the last admin neither be deleted nor made a viewer?"""
    api = api_as("admin")
    assert api.delete(f"/api/v1/users/{api.user.id}").status_code == 409
    response = api.patch(f"/api/v1/users/{api.user.id}", json={"role": "viewer"})
    assert response.status_code == 409 and "last active admin" in response.get_json()["error"]["message"]
    db.session.refresh(api.user)
    assert api.user.role == "admin"


def test_patch_refuses_unknown_fields(api_as):
    """Is a PATCH with a field users do not have (is_superuser) a 400, not ignored?"""
    api = api_as("admin")
    response = api.patch(f"/api/v1/users/{api.user.id}", json={"is_superuser": True})
    assert response.status_code == 400 and "unknown field" in response.get_json()["error"]["message"]


def test_a_site_depot_does_not_know_is_refused(api_as):
    """Is a viewer scoped to "Seatle" refused (400 unknown_site, naming Seattle) on create and
    on PATCH, while a site the person already had may stay?"""
    api = api_as("admin")
    add_dp("Seattle DP", site="Seattle")
    before = users_count()
    body = {"email": "branch@example.com", "password": "plum kettle orbit", "role": "viewer"}
    response = api.post("/api/v1/users", json={**body, "sites": ["Seatle"]})
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "unknown_site" and "Did you mean Seattle?" in error["message"]
    assert users_count() == before
    created = api.post("/api/v1/users", json={**body, "sites": ["Seattle"]}).get_json()
    response = api.patch(f"/api/v1/users/{created['id']}", json={"sites": ["Seattle", "Tacoma"]})
    assert response.status_code == 400 and "Tacoma is not a site Depot knows" in str(response.get_json())
    user = db.session.get(User, created["id"])
    user.sites = ["Seattle", "Tacoma"]  # Tacoma's DP went away since
    db.session.commit()
    response = api.patch(f"/api/v1/users/{created['id']}", json={"sites": ["Tacoma"]})
    assert response.status_code == 200 and response.get_json()["sites"] == ["Tacoma"]
