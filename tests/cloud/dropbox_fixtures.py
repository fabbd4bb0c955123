"""Dropbox DPs against the local FakeDropbox: the fake on a loopback port, the settings that point
Depot at it, and connected DP rows whose tokens come from the real consent round trip (the fake's
/authorize with PKCE, then Authlib's token exchange)."""
import json

import pytest

from portal.extensions import db
from portal.models import DistributionPoint
from portal.services import secrets
from portal.services.backends import open_storage, probe_storage
from portal.storage.dropbox import DropboxStorage
from tests.fakes.dropbox import FakeDropbox
from tests.fakes.oauth_server import CLIENT_ID, CLIENT_SECRET, consent_token

DROPBOX_CHUNK = 256 * 1024  # small pieces: multi-request uploads in a blink


@pytest.fixture
def dropbox_fake():
    """A FakeDropbox with two accounts, "alice" (signed in by default) and "bob"."""
    fake = FakeDropbox()
    fake.add_user("alice", "Alice Admin")
    fake.add_user("bob", "Bob Branch")
    fake.start()
    yield fake
    fake.stop()


def dropbox_settings(fake: FakeDropbox) -> dict:
    """The DEPOT_DROPBOX_* settings that point Depot at the fake."""
    return {"DEPOT_DROPBOX_CLIENT_ID": CLIENT_ID, "DEPOT_DROPBOX_CLIENT_SECRET": CLIENT_SECRET,
            "DEPOT_DROPBOX_AUTH_URL": f"{fake.url}/oauth2/authorize",
            "DEPOT_DROPBOX_TOKEN_URL": f"{fake.url}/oauth2/token",
            "DEPOT_DROPBOX_API_URL": f"{fake.url}/api/2",
            "DEPOT_DROPBOX_CONTENT_URL": f"{fake.url}/content/2",
            "DEPOT_DROPBOX_CHUNK": DROPBOX_CHUNK}


@pytest.fixture
def dropbox_config(dropbox_fake):
    """config_overrides for a test module of Dropbox DPs (quick retries, small copy chunks)."""
    return {**dropbox_settings(dropbox_fake), "DEPOT_COPY_CHUNK": DROPBOX_CHUNK,
            "DEPOT_RETRY_BASE_SECONDS": 0}


def dropbox_consent(fake: FakeDropbox, app, user_id: str) -> dict:
    """The token a real consent round trip gives for `user_id` (tests/fakes/oauth_server.py)."""
    return consent_token(fake, "dropbox", user_id)


@pytest.fixture
def dropbox_dp(app, dropbox_fake, worker_env):
    """dropbox_dp(name, user_id="alice", folder="Depot") -> a connected, online Dropbox DP whose
    folder and library folders exist. Worker processes started by the test get the settings."""
    worker_env.update({k: str(v) for k, v in dropbox_settings(dropbox_fake).items()})
    worker_env["DEPOT_DROPBOX_CHUNK"] = str(app.config["DEPOT_DROPBOX_CHUNK"])

    def _make(name: str, user_id: str = "alice", folder: str = "Depot") -> DistributionPoint:
        token = dropbox_consent(dropbox_fake, app, user_id)
        with probe_storage("cloud", "dropbox", token=token, settings={"folder": folder},
                           name=name) as fresh:
            account = fresh.account()
            fresh.ensure_layout()
        dp = DistributionPoint(name=name, kind="cloud", provider="dropbox", site="Cloud",
                               secret=secrets.encrypt(json.dumps(token)), status="online")
        dp.settings = {"folder": folder, "account": account["name"], "account_id": account["id"]}
        db.session.add(dp)
        db.session.commit()
        return dp
    return _make


def dropbox_backend(dp) -> DropboxStorage:
    """The backend of a DP as jobs build it (a context manager that closes its connections)."""
    db.session.refresh(dp)
    return open_storage(dp)


__all__ = ["dropbox_fake", "dropbox_config", "dropbox_dp", "dropbox_settings", "dropbox_consent",
           "dropbox_backend", "DROPBOX_CHUNK"]
