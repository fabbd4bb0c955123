"""POST /api/v1/tokens, bearer authentication, sign-in slow-down, JSON errors."""
import pytest

from portal.extensions import db
from portal.models import ApiToken, AuditEvent
from tests.factories import PASSWORD, make_user


def error_of(response):
    body = response.get_json()
    assert set(body) == {"error"}, body
    return body["error"]["code"], body["error"]["message"]


def test_token_for_email_and_password(app, client):
    """Does POST /api/v1/tokens give a working token, stored only as a hash, and audited?"""
    user = make_user("technician")
    response = client.post("/api/v1/tokens", json={"email": user.email.upper(),
                                                  "password": PASSWORD, "name": "backup script"})
    assert response.status_code == 201
    token = response.get_json()["token"]
    assert token.startswith("dpt_")
    stored = db.session.query(ApiToken).one()
    assert stored.token_hash != token and token not in stored.token_hash
    assert stored.name == "backup script"
    listing = client.get("/api/v1/distribution-points", headers={"Authorization": f"Bearer {token}"})
    assert listing.status_code == 200
    assert db.session.query(AuditEvent).filter_by(action="token.create").one().via == "api"


@pytest.mark.parametrize("email, password", [("nobody@example.com", PASSWORD),
                                             ("USER", "wrong password")])
def test_wrong_credentials_give_no_hint(app, client, email, password):
    """Is the answer the same whether the email or the password was wrong?"""
    user = make_user("admin")
    email = user.email if email == "USER" else email
    response = client.post("/api/v1/tokens", json={"email": email, "password": password, "name": "x"})
    assert response.status_code == 401
    assert error_of(response) == ("invalid_credentials", "Invalid email or password.")
    assert db.session.query(ApiToken).count() == 0


def test_repeated_failures_are_slowed_down(app, client):
    """After a few failures, is even the right password refused until the delay has passed?"""
    user = make_user("admin")
    for _ in range(3):
        assert client.post("/api/v1/tokens", json={"email": user.email, "password": "nope-nope",
                                                   "name": "x"}).status_code == 401
    response = client.post("/api/v1/tokens", json={"email": user.email, "password": PASSWORD,
                                                   "name": "x"})
    assert response.status_code == 429
    code, message = error_of(response)
    assert code == "too_many_attempts" and "Try again in" in message
    assert int(response.headers["Retry-After"]) >= 1
    assert db.session.query(ApiToken).count() == 0


@pytest.mark.parametrize("body, message", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b"", "send a JSON object"),
])
def test_malformed_token_requests_are_a_json_400(app, client, body, message):
    """Is malformed JSON a 400 with a JSON error?"""
    response = client.post("/api/v1/tokens", data=body, content_type="application/json")
    assert response.status_code == 400
    assert message in error_of(response)[1]


@pytest.mark.parametrize("name, message", [
    ("x" * 101, "at most 100 characters"), ("bad\x07name", "control characters"),
    (42, "must be a string"), ("", "must not be empty"),
])
def test_bad_token_names_change_nothing(app, client, name, message):
    """Are over-long, control-character and wrongly typed token names refused, nothing created?"""
    user = make_user("admin")
    response = client.post("/api/v1/tokens", json={"email": user.email, "password": PASSWORD,
                                                   "name": name})
    assert response.status_code == 400
    assert message in error_of(response)[1]
    assert db.session.query(ApiToken).count() == 0


@pytest.mark.parametrize("header", [None, "Bearer", "Basic abc", "Bearer dpt_unknown"])
def test_api_needs_a_valid_bearer_token(app, client, header):
    """Is every API call without a valid token a 401 JSON error?"""
    headers = {"Authorization": header} if header else {}
    response = client.get("/api/v1/distribution-points", headers=headers)
    assert response.status_code == 401
    assert error_of(response)[0] == "unauthorized"


def test_revoked_token_and_disabled_user_are_refused(app, api_as):
    """Does a revoked token, or a disabled user's token, stop working at once?"""
    from portal.services import accounts
    from portal.services.actors import Actor

    api = api_as("admin")
    assert api.get("/api/v1/jobs").status_code == 200
    token = db.session.query(ApiToken).one()
    accounts.revoke_token(Actor(api.user, via="api"), token.id)
    assert api.get("/api/v1/jobs").status_code == 401
    other = api_as("technician")
    other.user.active = False
    db.session.commit()
    assert other.get("/api/v1/jobs").status_code == 401


def test_unknown_api_route_is_a_json_404(app, api_as):
    """Are unknown routes and wrong methods JSON errors too?"""
    api = api_as("admin")
    response = api.get("/api/v1/nope")
    assert response.status_code == 404 and error_of(response)[0] == "not_found"
    response = api.delete("/api/v1/distribution-points")
    assert response.status_code == 405 and error_of(response)[0] == "method_not_allowed"
