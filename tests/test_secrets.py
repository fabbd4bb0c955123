"""Secrets at rest: MultiFernet keys from DEPOT_ENCRYPTION_KEY and `flask secrets rotate`."""
import io
import json
import zipfile

import pytest
from sqlalchemy import select

from portal.core.errors import DepotError
from portal.extensions import db
from portal.models import DistributionPoint, EnrollmentToken, UploadSession
from portal.services import enrollment, secrets, two_factor
from portal.services.actors import Actor


@pytest.fixture
def config_overrides():
    return {"DEPOT_ENCRYPTION_KEY": "old-key-0123456789"}


def _cloud_dp(token: dict) -> DistributionPoint:
    dp = DistributionPoint(name="Remote workers", kind="cloud", provider="onedrive",
                           secret=secrets.encrypt(json.dumps(token)))
    db.session.add(dp)
    db.session.flush()
    db.session.add(UploadSession(dp_id=dp.id, path="Images/a.wim", size=1, sha256="0" * 64,
                                 data=secrets.encrypt('{"url": "https://upload/abc"}')))
    db.session.commit()
    return dp


def test_rotation_encrypts_everything_again_with_the_new_key(app, runner):
    """After `secrets rotate` with the new key first, does the new key alone open every secret?"""
    token = {"access_token": "a", "refresh_token": "r"}
    dp = _cloud_dp(token)
    stored = dp.secret
    app.config["DEPOT_ENCRYPTION_KEY"] = "new-key-9876543210,old-key-0123456789"
    assert json.loads(secrets.decrypt(stored)) == token  # the old key still opens it
    result = runner.invoke(args=["secrets", "rotate"])
    assert result.exit_code == 0, result.output
    assert "1 distribution points, 1 upload sessions" in result.output
    app.config["DEPOT_ENCRYPTION_KEY"] = "new-key-9876543210"
    db.session.expire_all()
    dp = db.session.get(DistributionPoint, dp.id)
    assert dp.secret != stored
    assert json.loads(secrets.decrypt(dp.secret)) == token
    assert secrets.decrypt(db.session.query(UploadSession).one().data) == '{"url": "https://upload/abc"}'


def test_rotation_without_the_old_key_says_how_to_fix_it(app, runner):
    """Does a rotation whose key list lost the old key stop with advice, changing nothing?"""
    dp = _cloud_dp({"access_token": "a"})
    stored = dp.secret
    app.config["DEPOT_ENCRYPTION_KEY"] = "new-key-9876543210"
    result = runner.invoke(args=["secrets", "rotate"])
    assert result.exit_code == 1
    assert "keep the old key in the list" in result.output
    with pytest.raises(DepotError, match="cannot be decrypted"):
        secrets.decrypt(stored)
    db.session.expire_all()
    assert db.session.get(DistributionPoint, dp.id).secret == stored


def _enrollment_token(console) -> tuple[EnrollmentToken, str]:
    """An enrollment token made through Settings > Enrollment, and the token itself."""
    created = console.post("/settings/enrollment", {"name": "Laptops", "days": "30",
                                                    "group_id": ""})
    assert created.status_code == 303
    token = db.session.query(EnrollmentToken).one()
    return token, secrets.decrypt(token.secret)


def test_rotation_takes_enrollment_tokens_along(app, runner, login_as):
    """After a rotation through the CLI and dropping the old key, do the installer download and
    the created-token page still give the same token?"""
    console = login_as("admin")
    token, plain = _enrollment_token(console)
    stored = token.secret
    app.config["DEPOT_ENCRYPTION_KEY"] = "new-key-9876543210,old-key-0123456789"
    result = runner.invoke(args=["secrets", "rotate"])
    assert result.exit_code == 0, result.output
    assert "1 enrollment tokens" in result.output
    app.config["DEPOT_ENCRYPTION_KEY"] = "new-key-9876543210"
    db.session.expire_all()
    assert db.session.get(EnrollmentToken, token.id).secret != stored
    installer = console.get(f"/settings/enrollment/{token.id}/installer")
    assert installer.status_code == 200, installer.get_data(as_text=True)
    config = json.loads(zipfile.ZipFile(io.BytesIO(installer.get_data())).read("depot-agent.json"))
    assert config["enroll_token"] == plain
    page = console.get(f"/settings/enrollment?created={token.id}")
    assert page.status_code == 200 and f'<code id="new-enroll-token">{plain}</code>' in \
        page.get_data(as_text=True)


def test_every_encrypted_column_is_rotated(app, runner, login_as):
    """Does one rotation take a DP key, an upload session, an enrollment token and an
    authenticator key along, so that the new key alone opens each of them?"""
    _cloud_dp({"access_token": "a"})
    console = login_as("admin")
    _enrollment_token(console)
    two_factor.begin(Actor(console.user, via="console"))
    app.config["DEPOT_ENCRYPTION_KEY"] = "new-key-9876543210,old-key-0123456789"
    result = runner.invoke(args=["secrets", "rotate"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == ("1 distribution points, 1 upload sessions, "
                                     "1 enrollment tokens, 1 authenticator keys encrypted again")
    app.config["DEPOT_ENCRYPTION_KEY"] = "new-key-9876543210"
    db.session.expire_all()
    for what, column in secrets.encrypted_columns():
        values = db.session.scalars(select(column).where(column.is_not(None))).all()
        assert values, what
        for value in values:
            secrets.decrypt(value)  # raises if the old key were still needed


def test_an_unreadable_enrollment_token_says_so(app, login_as):
    """Without a rotation, does the installer's error name the enrollment token and what to do
    (not a DP's key)?"""
    console = login_as("admin")
    token, _ = _enrollment_token(console)
    app.config["DEPOT_ENCRYPTION_KEY"] = "new-key-9876543210"
    with pytest.raises(DepotError) as raised:
        enrollment.token_secret(db.session.get(EnrollmentToken, token.id))
    message = raised.value.message
    assert "the enrollment token Laptops cannot be decrypted" in message
    assert "create a new enrollment token" in message and "DP" not in message
    assert "secrets rotate" in message and "Put the old key back" in message
    page = console.get(f"/settings/enrollment/{token.id}/installer")
    assert page.status_code == 500
    assert "the enrollment token Laptops cannot be decrypted" in page.get_data(as_text=True)


@pytest.mark.parametrize("kind, provider, advice", [
    ("local", None, "enter Branch's node key again"),
    ("cloud", "s3", "enter Branch's access keys again"),
    ("cloud", "onedrive", "reconnect Branch"),
])
def test_an_unreadable_dp_secret_names_the_dp_and_what_to_enter(app, kind, provider, advice):
    """Does a DP's unreadable secret name that DP and what to enter again for its kind?"""
    dp = DistributionPoint(name="Branch", kind=kind, provider=provider,
                           secret=secrets.encrypt("k"))
    app.config["DEPOT_ENCRYPTION_KEY"] = "new-key-9876543210"
    with pytest.raises(DepotError, match="the credentials of Branch cannot be decrypted") as raised:
        secrets.dp_secret(dp)
    assert advice in raised.value.message
