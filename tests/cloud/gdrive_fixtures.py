"""Google Drive DPs on a local fake Drive (tests.fakes.gdrive): the fake, the settings that point
Depot at it, and DPs connected through the real consent round trip (authorize with PKCE, then
the code exchanged for tokens with Authlib)."""
import json

import pytest

from portal.extensions import db
from portal.models import DistributionPoint
from portal.services import secrets
from portal.services.backends import probe_storage
from tests.fakes.gdrive import FakeDrive
from tests.fakes.oauth_server import CLIENT_ID, CLIENT_SECRET, consent_token

# Only the fixtures go into tests/cloud/conftest.py.
__all__ = ["gdrive", "gdrive_dp", "gdrive_worker_env"]

GDRIVE_CHUNK = 256 * 1024  # Drive's smallest chunk: multi-chunk uploads of small files


@pytest.fixture
def gdrive():
    """A running fake Drive with two accounts, alice (the default consent) and bob."""
    fake = FakeDrive().start()
    fake.add_user("alice", "alice@example.com")
    fake.add_user("bob", "bob@example.com")
    yield fake
    fake.stop()


def gdrive_settings(fake: FakeDrive, **extra) -> dict:
    """Settings that send Depot's Google calls to the fake (for `config_overrides`)."""
    return {"DEPOT_GDRIVE_CLIENT_ID": CLIENT_ID, "DEPOT_GDRIVE_CLIENT_SECRET": CLIENT_SECRET,
            "DEPOT_GDRIVE_AUTH_URL": fake.url + fake.authorize_path,
            "DEPOT_GDRIVE_TOKEN_URL": fake.url + fake.token_path,
            "DEPOT_GDRIVE_API_URL": fake.url, "DEPOT_GDRIVE_CHUNK": GDRIVE_CHUNK, **extra}


@pytest.fixture
def gdrive_worker_env(app, worker_env):
    """worker_env plus the Google Drive settings, for `start_worker` (call before starting)."""
    for key in ("DEPOT_GDRIVE_CLIENT_ID", "DEPOT_GDRIVE_CLIENT_SECRET", "DEPOT_GDRIVE_AUTH_URL",
                "DEPOT_GDRIVE_TOKEN_URL", "DEPOT_GDRIVE_API_URL", "DEPOT_GDRIVE_CHUNK",
                "DEPOT_COPY_STREAMS"):
        worker_env[key] = str(app.config[key])
    return worker_env


def consent(fake: FakeDrive, user_id: str) -> dict:
    """The token response of a consent given by `user_id` (tests/fakes/oauth_server.py)."""
    return consent_token(fake, "gdrive", user_id)


@pytest.fixture
def gdrive_dp(app, gdrive):
    """gdrive_dp(name, user, folder) -> a connected Google Drive DP, its folders made."""

    def _make(name="Home Drive", user="alice", folder="Depot"):
        token = consent(gdrive, user)
        with probe_storage("cloud", "gdrive", token=token, settings={"folder": folder},
                           name=name) as backend:
            account = backend.account()
            backend.ensure_layout()
        dp = DistributionPoint(name=name, kind="cloud", provider="gdrive", site="",
                               settings={"folder": folder, "account": account["name"],
                                         "account_id": account["id"]},
                               secret=secrets.encrypt(json.dumps(token)), status="online")
        db.session.add(dp)
        db.session.commit()
        return dp
    return _make
