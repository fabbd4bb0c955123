"""Tokens of OAuth DPs (OneDrive, whose refresh tokens die on use): renewed once per DP even when
two workers find the access token expired at the same moment, and stored encrypted."""
import json
import threading

import pytest

from portal.core.errors import NeedsAuth
from portal.extensions import db
from portal.models import DistributionPoint
from portal.services import secrets
from portal.services.backends import open_storage


@pytest.fixture
def config_overrides(onedrive_config):
    return onedrive_config


def at_once(*calls):
    """Run the calls on threads released together; their results (or exceptions)."""
    barrier, results = threading.Barrier(len(calls)), [None] * len(calls)

    def run(i, call):
        barrier.wait()
        try:
            results[i] = call()
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def stored_token(dp_id):
    db.session.expire_all()
    return json.loads(secrets.decrypt(db.session.get(DistributionPoint, dp_id).secret))


def test_two_workers_renew_an_expired_token_once(onedrive_dp, graph_fake):
    """When two workers of one DP meet an expired access token together, does only one renew it
    (Microsoft rotates the refresh token, so a second renewal would fail) and both go on?"""
    dp = onedrive_dp("Remote workers")
    first = stored_token(dp.id)
    with open_storage(dp) as one, open_storage(dp) as two:
        graph_fake.expire_access_tokens()
        before = graph_fake.refreshes
        results = at_once(one.account, two.account)
    assert results == [{"id": "alice", "name": "alice@example.com"}] * 2
    assert graph_fake.refreshes - before == 1
    renewed = stored_token(dp.id)
    assert renewed["refresh_token"] != first["refresh_token"]  # rotated, and kept
    assert first["refresh_token"] not in graph_fake.refresh_tokens  # the old one is dead
    with open_storage(db.session.get(DistributionPoint, dp.id)) as later:
        assert later.account()["id"] == "alice"  # a later worker uses what was stored
    assert graph_fake.refreshes - before == 1


def test_a_refused_renewal_is_needs_auth_for_every_worker(onedrive_dp, graph_fake):
    """Does a revoked consent give each waiting worker NeedsAuth with advice, and no token?"""
    dp = onedrive_dp("Remote workers")
    with open_storage(dp) as one, open_storage(dp) as two:
        graph_fake.revoke("alice")
        results = at_once(one.account, two.account)
    for result in results:
        assert isinstance(result, NeedsAuth) and "reconnect it" in result.message
        assert stored_token(dp.id)["access_token"] not in result.message
