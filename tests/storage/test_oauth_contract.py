"""What the OAuth drivers share (portal.storage.oauth, portal.storage.kit), run against OneDrive,
Google Drive and Dropbox on their protocol servers: access tokens renewed mid-copy, a withdrawn
consent, two accounts side by side, the account a DP is connected to, upload sessions that
expire, and tokens and session secrets kept out of what people see."""
import json
import logging
import os

import pytest
from sqlalchemy import select

from portal.core.errors import NeedsAuth, StorageRefused
from portal.extensions import db
from portal.models import DistributionPoint, Notification, UploadSession
from portal.services import secrets
from portal.storage.base import UploadState
from tests.factories import write_file
from tests.helpers import copy_one, status_at
from tests.storage.places import source_of

IMAGE = "Images/Win11.wim"


@pytest.fixture
def config_overrides():
    """A copy that failed for a passing reason is tried again at once."""
    return {"DEPOT_RETRY_BASE_SECONDS": 0}


@pytest.fixture
def image(central, rescan, account):
    """An image at central of five upload pieces and a bit, scanned."""
    data = os.urandom(5 * account.piece + 1000)
    write_file(central.root, IMAGE, data)
    rescan(central)
    return data


def test_an_access_token_that_expires_mid_copy_is_renewed_once(account, image, admin, work):
    """When the provider stops taking the access token after the first piece, is it renewed once,
    no piece sent twice, the copy carried to the end, and the renewed token stored for the next
    run (Microsoft rotates the refresh token, the others keep it)?"""
    before = account.token()
    account.after_pieces(1, account.fake.expire_access_tokens)
    job = copy_one(admin, work, IMAGE, account.dp)
    assert job.state == "succeeded", job.error
    assert account.fake.refreshes == 1
    assert account.read(IMAGE) == image
    starts = account.accepted_starts()
    assert starts == sorted(set(starts)) and len(starts) == 6
    assert status_at(account.dp, IMAGE) == "current"
    after = account.token()
    assert after["access_token"] != before["access_token"]
    rotated = after["refresh_token"] != before["refresh_token"]
    assert rotated == account.fake.rotate_refresh_tokens
    account.fake.expire_access_tokens()
    with account.open() as backend:
        assert backend.account()["id"] == account.account_id  # the stored refresh token works
    assert account.fake.refreshes == 2


def test_a_withdrawn_consent_fails_the_copy_asking_to_reconnect(account, image, admin, work):
    """When the account withdrew Depot's access, does the copy fail at once with a reason that
    names the DP and says to reconnect (and no token), the DP turn needs-auth, and nothing go
    up?"""
    tokens = account.secrets()
    account.fake.revoke(account.user)
    account.fake.expire_access_tokens()
    job = copy_one(admin, work, IMAGE, account.dp)
    assert job.state == "failed"
    assert "reconnect" in job.error and account.title in job.error and account.dp.name in job.error
    assert not any(token in job.error for token in tokens)
    assert account.sessions_started() == account.sent_bytes() == 0
    assert account.read(IMAGE) is None
    db.session.expire_all()
    assert db.session.get(DistributionPoint, account.dp.id).status == "needs-auth"
    assert status_at(account.dp, IMAGE) == "failed"
    with account.open() as backend:
        assert not any(token in repr(backend) for token in tokens)
        with pytest.raises(NeedsAuth, match="reconnect"):
            backend.check()


def test_two_accounts_side_by_side(account, central, rescan, admin, work):
    """With two DPs of two accounts (and folders), does each copy land in its own account only,
    and does each DP's rescan see only its own?"""
    branch = account.another("Branch", "bob", "IT/Depot")
    assert account.dp.settings["account_id"] == account.account_id
    assert branch.dp.settings["account_id"] == branch.account_id != account.account_id
    assert branch.dp.settings["account"] == branch.account_name
    data = os.urandom(account.piece + 1)
    write_file(central.root, "Images/a.wim", data)
    write_file(central.root, "Media/b.iso", b"media")
    rescan(central)
    assert copy_one(admin, work, "Images/a.wim", account.dp).state == "succeeded"
    assert copy_one(admin, work, "Media/b.iso", branch.dp).state == "succeeded"
    assert account.read("Images/a.wim") == data and branch.read("Media/b.iso") == b"media"
    assert not any("b.iso" in path for path in account.files())
    assert not any("a.wim" in path for path in branch.files())
    for dp in (account.dp, branch.dp):
        rescan(dp)
    assert status_at(account.dp, "Images/a.wim") == "current"
    assert status_at(account.dp, "Media/b.iso") == "missing"
    assert status_at(branch.dp, "Media/b.iso") == "current"
    assert status_at(branch.dp, "Images/a.wim") == "missing"


def test_check_names_the_account_and_what_is_wrong(account):
    """Does the backend name the account it is connected to, and say which folder is gone, or
    (where the provider's check looks) that the token is another account's?"""
    with account.open() as backend:
        assert backend.account() == {"id": account.account_id, "name": account.account_name}
        backend.check()
    settings = dict(account.dp.settings)
    account.dp.settings = {**settings, "folder": "Elsewhere"}
    db.session.commit()
    with account.open() as backend, pytest.raises(StorageRefused) as gone:
        backend.check()
    assert "Elsewhere" in gone.value.message and account.account_name in gone.value.message
    account.dp.settings = {**settings, "account_id": "someone-else"}
    db.session.commit()
    if account.checks_account:
        with account.open() as backend, pytest.raises(StorageRefused, match="reconnect it with"):
            backend.check()


def test_an_expired_upload_session_is_started_afresh(account, image, admin, work):
    """When the provider forgot the upload session half way (sessions expire), does the next try
    start a new one and end with the whole file?"""
    account.after_pieces(2, account.expire_sessions)
    job = copy_one(admin, work, IMAGE, account.dp)
    assert job.state == "succeeded", job.error
    assert job.warnings, "the try that found the session gone says so"
    assert account.read(IMAGE) == image
    assert account.sessions_started() == 2
    assert status_at(account.dp, IMAGE) == "current"


def test_tokens_and_session_secrets_stay_out_of_what_people_see(account, image, admin, work,
                                                                app):
    """After a copy that fails mid-upload, are the tokens and the upload session's secret in no
    repr, job error or warning, notification or log line, and the saved session kept encrypted?"""
    app.config["DEPOT_JOB_RETRIES"] = 0
    records = []
    handler = _Collect(records)
    root, portal_log = logging.getLogger(), logging.getLogger("portal")
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    portal_log.setLevel(logging.DEBUG)
    try:
        account.after_pieces(1, account.fail_next_piece)
        job = copy_one(admin, work, IMAGE, account.dp)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        portal_log.setLevel(logging.NOTSET)
    assert job.state == "failed" and "busy or failing" in job.error
    saved = db.session.scalar(select(UploadSession).where(UploadSession.dp_id == account.dp.id))
    assert saved is not None, "the failed copy keeps its session to resume"
    session = secrets.decrypt(saved.data)
    secret_values = account.secrets()
    assert any(value in session for value in secret_values)  # the session's own secret, kept
    with account.open() as backend:
        upload = backend.upload(source_of(IMAGE, image), UploadState(json.loads(session)))
        seen = [repr(backend), repr(upload), str(backend.name)]
        upload.abort()
    seen += [job.error, *job.warnings, *records, saved.data,
             db.session.get(DistributionPoint, account.dp.id).config or ""]
    seen += [n.message for n in db.session.scalars(select(Notification))]
    assert records, "nothing was logged: the check would be empty"
    for text in seen:
        assert not any(value in text for value in secret_values)


class _Collect(logging.Handler):
    """Depot's and the workers' log lines (not the fake provider's own access log, werkzeug's)."""

    def __init__(self, records):
        super().__init__(logging.DEBUG)
        self.records = records

    def emit(self, record):
        if record.name != "werkzeug":
            self.records.append(self.format(record))

