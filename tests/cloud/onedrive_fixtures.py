"""OneDrive DPs against the local FakeGraph: the fake on a loopback port, the settings that point
Depot at it, and connected DP rows whose tokens come from the real consent round trip (the fake's
/authorize with PKCE, then Authlib's token exchange at the Microsoft-shaped token endpoint)."""
import json

import pytest

from portal.extensions import db
from portal.models import DistributionPoint
from portal.services import secrets
from portal.services.backends import open_storage, probe_storage
from portal.storage.onedrive import OneDriveStorage
from tests.fakes.graph import FakeGraph
from tests.fakes.oauth_server import CLIENT_ID, CLIENT_SECRET, consent_token

ONEDRIVE_CHUNK = 2 * 320 * 1024  # 640 KiB fragments: multi-fragment uploads in a blink


@pytest.fixture
def graph_fake():
    """A FakeGraph with two accounts, "alice" (signed in by default) and "bob"."""
    fake = FakeGraph()
    fake.add_user("alice", "Alice Admin")
    fake.add_user("bob", "Bob Branch")
    fake.start()
    yield fake
    fake.stop()


def onedrive_settings(fake: FakeGraph) -> dict:
    """The DEPOT_ONEDRIVE_* settings that point Depot at the fake."""
    return {"DEPOT_ONEDRIVE_CLIENT_ID": CLIENT_ID, "DEPOT_ONEDRIVE_CLIENT_SECRET": CLIENT_SECRET,
            "DEPOT_ONEDRIVE_AUTH_URL": f"{fake.url}/common/oauth2/v2.0",
            "DEPOT_ONEDRIVE_API_URL": f"{fake.url}/v1.0",
            "DEPOT_ONEDRIVE_CHUNK": ONEDRIVE_CHUNK}


@pytest.fixture
def onedrive_config(graph_fake):
    """config_overrides for a test module of OneDrive DPs (quick retries)."""
    return {**onedrive_settings(graph_fake), "DEPOT_RETRY_BASE_SECONDS": 0}


def onedrive_consent(fake: FakeGraph, app, user_id: str) -> dict:
    """The token a real consent round trip gives for `user_id` (tests/fakes/oauth_server.py)."""
    return consent_token(fake, "onedrive", user_id)


@pytest.fixture
def onedrive_dp(app, graph_fake, worker_env):
    """onedrive_dp(name, user_id="alice", folder="Depot") -> a connected, online OneDrive DP whose
    folder and library folders exist. Worker processes started by the test get the settings."""
    worker_env.update({k: str(v) for k, v in onedrive_settings(graph_fake).items()})
    worker_env["DEPOT_ONEDRIVE_CHUNK"] = str(app.config["DEPOT_ONEDRIVE_CHUNK"])

    def _make(name: str, user_id: str = "alice", folder: str = "Depot") -> DistributionPoint:
        token = onedrive_consent(graph_fake, app, user_id)
        with probe_storage("cloud", "onedrive", token=token, settings={"folder": folder},
                           name=name) as fresh:
            account = fresh.account()
            fresh.ensure_layout()
        dp = DistributionPoint(name=name, kind="cloud", provider="onedrive", site="Cloud",
                               secret=secrets.encrypt(json.dumps(token)), status="online")
        dp.settings = {"folder": folder, "account": account["name"], "account_id": account["id"]}
        db.session.add(dp)
        db.session.commit()
        return dp
    return _make


def onedrive_backend(dp) -> OneDriveStorage:
    """The backend of a DP as jobs build it (close its `http` when done)."""
    db.session.refresh(dp)
    return open_storage(dp)


__all__ = ["graph_fake", "onedrive_config", "onedrive_dp", "onedrive_settings",
           "onedrive_consent", "onedrive_backend", "ONEDRIVE_CHUNK"]
