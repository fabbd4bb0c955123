"""Secrets at rest: MultiFernet keys from DEPOT_ENCRYPTION_KEY and `flask secrets rotate`."""
import json

import pytest

from portal.core.errors import DepotError
from portal.extensions import db
from portal.models import DistributionPoint, UploadSession
from portal.services import secrets


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
    assert "1 distribution points, 1 upload sessions encrypted again" in result.output
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
