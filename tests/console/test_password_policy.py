"""The password policy: at least 12 characters and not easy to guess (zxcvbn), wherever a password
is set (console, API, CLI, the first admin); passwords set before the policy still sign in."""
import pytest
from werkzeug.security import generate_password_hash

from portal.extensions import db
from portal.models import User
from portal.services import accounts
from tests.factories import make_user
from tests.helpers import csrf_from

WEAK = [
    ("password", "at least 12 characters"),
    ("Password1!", "at least 12 characters"),
    ("password1234", "too easy to guess: This is a very common password"),
    ("qwertyuiopasdf", "too easy to guess"),
    ("aaaaaaaaaaaaaaaa", "too easy to guess"),
    ("depotdepotdepot", "too easy to guess"),
]


def error_message(response) -> str:
    return response.get_json()["error"]["message"]


@pytest.mark.parametrize("password, message", WEAK)
def test_the_api_refuses_a_weak_password_for_a_new_user(api_as, password, message):
    """Is a short or guessable password refused with why, and no user created?"""
    response = api_as("admin").post("/api/v1/users", json={
        "email": "new@example.com", "password": password, "role": "viewer"})
    assert response.status_code == 400
    assert message in error_message(response)
    assert db.session.query(User).filter_by(email="new@example.com").count() == 0


def test_a_password_made_of_the_email_is_refused(api_as):
    """Is a password built from the person's own email (long, but guessable) refused?"""
    response = api_as("admin").post("/api/v1/users", json={
        "email": "margaret.hopper@example.com", "password": "margaret.hopper", "role": "viewer"})
    assert response.status_code == 400
    assert "too easy to guess" in error_message(response)


@pytest.mark.parametrize("password, message", WEAK[:3])
def test_an_admins_reset_refuses_a_weak_password(api_as, password, message):
    """Is an admin's password reset held to the same policy, the old password kept?"""
    user = make_user("viewer")
    before = user.password_hash
    response = api_as("admin").patch(f"/api/v1/users/{user.id}", json={"password": password})
    assert response.status_code == 400
    assert message in error_message(response)
    db.session.expire_all()
    assert db.session.get(User, user.id).password_hash == before


def test_the_console_refuses_a_weak_password_for_a_new_user(login_as):
    """Does Settings > Users say why a weak password will not do, creating nobody?"""
    console = login_as("admin")
    response = console.post("/settings/users", {"email": "w@example.com", "password": "password1234",
                                                "role": "viewer"})
    assert response.status_code == 400
    assert "too easy to guess" in response.get_data(as_text=True)
    assert db.session.query(User).filter_by(email="w@example.com").count() == 0


def test_a_strong_passphrase_is_taken(api_as):
    """Is a passphrase of a few uncommon words accepted?"""
    response = api_as("admin").post("/api/v1/users", json={
        "email": "ok@example.com", "password": "quince harbor velvet", "role": "viewer"})
    assert response.status_code == 201


def test_the_cli_refuses_a_weak_password(runner):
    """Does `flask users create` refuse a weak password with why?"""
    result = runner.invoke(args=["users", "create", "--email", "c@example.com", "--role", "viewer",
                                 "--password", "password1234"])
    assert result.exit_code != 0
    assert "too easy to guess" in result.output
    assert db.session.query(User).filter_by(email="c@example.com").count() == 0


def test_init_refuses_a_weak_first_admin_password(app, runner):
    """Does `init` (and `make run`) stop with a clear message when DEPOT_ADMIN_PASSWORD is weak,
    creating no admin?"""
    app.config.update(DEPOT_ADMIN_EMAIL="it@example.com", DEPOT_ADMIN_PASSWORD="changeme")
    result = runner.invoke(args=["init"])
    assert result.exit_code == 1
    assert "DEPOT_ADMIN_PASSWORD was refused: password must be at least 12 characters" in \
        result.output
    assert db.session.query(User).count() == 0


def test_the_generated_first_admin_password_meets_the_policy(app):
    """Does the password `init` generates pass the policy (every time, not by luck)?"""
    for _ in range(20):
        db.session.query(User).delete()
        db.session.commit()
        _, generated = accounts.ensure_first_admin(None, None)
        assert accounts._clean_password(generated, "admin@depot.local") == generated


def test_a_password_from_before_the_policy_still_signs_in(app, client):
    """Can a person whose password was set before the policy (8 characters, common) still sign
    in, so an upgrade locks nobody out?"""
    db.session.add(User(email="old@example.com", role="admin", sites=[],
                        password_hash=generate_password_hash("password", method="scrypt:1024:8:1")))
    db.session.commit()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"email": "old@example.com", "password": "password",
                                           "csrf_token": token})
    assert response.status_code == 303
