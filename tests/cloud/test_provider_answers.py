"""What OneDrive, Google Drive and Dropbox list is read typed (issue 13, item 4): a size that is
no whole number, a quota of the wrong type or a time that is no date is refused with Depot's
reason naming the provider, never a crash in a job or a wrong type in the inventory."""
import pytest

from portal.core.files import FileEntry
from portal.extensions import db
from portal.models import DistributionPoint, InventoryFile, Job
from portal.services import distribution_points as dps
from portal.storage import answers
from portal.storage.answers import UnreadableAnswer
from portal.storage.dropbox import DropboxStorage
from portal.storage.kit import mtime_ns
from tests.cloud.dropbox_fixtures import dropbox_backend
from tests.cloud.gdrive_fixtures import gdrive_settings
from tests.cloud.onedrive_fixtures import onedrive_backend


@pytest.fixture
def config_overrides(onedrive_config, dropbox_config, gdrive):
    return {**onedrive_config, **dropbox_config, **gdrive_settings(gdrive)}


@pytest.mark.parametrize("size", ["leak", [5], {"a": 1}, -1, 2**64, True, 1.5, "9" * 30])
def test_a_onedrive_listing_with_a_bad_size_is_refused(onedrive_dp, monkeypatch, size):
    """Does a driveItem whose size is no whole number fail the listing with the reason?"""
    dp = onedrive_dp("OneDrive")
    backend = onedrive_backend(dp)
    monkeypatch.setattr(backend, "_children", lambda url: iter([
        {"name": "a.wim", "id": "1", "file": {}, "size": size,
         "lastModifiedDateTime": "2024-05-01T10:00:00Z"}]))
    with backend, pytest.raises(UnreadableAnswer) as caught:
        list(backend.walk([]))
    assert caught.value.message.startswith("OneDrive answered a listing Depot cannot read (size ")


def test_a_onedrive_quota_of_the_wrong_type_is_refused(onedrive_dp, monkeypatch):
    """Is Graph's quota read typed, an account over its quota showing 0 free?"""
    backend = onedrive_backend(onedrive_dp("OneDrive"))
    with backend:
        monkeypatch.setattr(backend, "_json", lambda *a, **kw: (200, {"quota": {
            "remaining": -10, "total": 100}}))
        assert backend.space() == (0, 100)
        monkeypatch.setattr(backend, "_json", lambda *a, **kw: (200, {"quota": {
            "remaining": "leak", "total": 100}}))
        with pytest.raises(UnreadableAnswer, match=r"OneDrive answered a quota Depot cannot "
                                                   r"read \(free space is not a whole number\)"):
            backend.space()
        monkeypatch.setattr(backend, "_json", lambda *a, **kw: (200, {"quota": "big"}))
        assert backend.space() == (None, None)


def test_a_drive_listing_and_quota_are_read_typed(gdrive_dp, monkeypatch):
    """Does Drive's size in a string pass, and junk in it or in the quota fail with the reason?"""
    from portal.services.backends import open_storage

    dp = gdrive_dp()
    with open_storage(dp) as backend:
        monkeypatch.setattr(backend, "_about", lambda: {"storageQuota": {"limit": "100",
                                                                         "usage": "40"}})
        assert backend.space() == (60, 100)
        monkeypatch.setattr(backend, "_about", lambda: {"storageQuota": {"limit": "1e99"}})
        with pytest.raises(UnreadableAnswer, match=r"Google Drive answered a quota Depot cannot "
                                                   r"read \(limit is not a whole number\)"):
            backend.space()
        monkeypatch.setattr(backend, "_children", lambda folder_id, **kw: iter([
            {"name": "a.wim", "id": "1", "mimeType": "application/octet-stream",
             "size": "12", "modifiedTime": "2024-05-01T10:00:00.000Z"},
            {"name": "b.wim", "id": "2", "mimeType": "application/octet-stream",
             "size": "twelve", "modifiedTime": "2024-05-01T10:00:00.000Z"}]))
        listed = backend._walk_folder("root", "Images", [])
        assert next(listed).size == 12
        with pytest.raises(UnreadableAnswer, match=r"Google Drive answered a listing Depot "
                                                   r"cannot read \(size is not a whole number\)"):
            next(listed)


def test_a_dropbox_entry_and_space_are_read_typed(dropbox_dp, monkeypatch):
    """Is a Dropbox entry's size, and its space usage, read typed?"""
    backend: DropboxStorage = dropbox_backend(dropbox_dp("Dropbox"))
    with backend:
        prefix = f"{backend.root.lower()}/images/"
        item = {".tag": "file", "path_lower": prefix + "a.wim",
                "path_display": f"{backend.root}/Images/a.wim", "id": "id:1",
                "server_modified": "2024-05-01T10:00:00Z", "size": 7}
        assert backend._entry(item, "Images", prefix, []).size == 7
        with pytest.raises(UnreadableAnswer, match=r"Dropbox answered a listing Depot cannot "
                                                   r"read \(size is not a whole number\)"):
            backend._entry(dict(item, size="7;DROP"), "Images", prefix, [])
        monkeypatch.setattr(backend, "rpc", lambda *a, **kw: {"used": "x",
                                                               "allocation": {"allocated": 9}})
        with pytest.raises(UnreadableAnswer, match=r"Dropbox answered a space usage Depot "
                                                   r"cannot read \(used is not a whole number\)"):
            backend.space()


def test_a_provider_time_that_is_no_date_is_none():
    """Is a modification time with a month 13 or day 99 taken as no time, not a crash?"""
    assert mtime_ns("2024-13-01T00:00:00Z") is None
    assert mtime_ns("2024-02-99T00:00:00Z") is None
    assert mtime_ns("2024-05-01T10:00:00Z") == 1714557600 * 10**9


def test_a_rescan_never_stores_a_listed_file_of_the_wrong_type(onedrive_dp, monkeypatch, admin,
                                                               work):
    """Whatever a backend lists, does the rescan refuse a file whose time is out of the column
    before it reaches the inventory, the DP offline with the reason?"""
    from portal.storage.onedrive import OneDriveStorage

    dp = onedrive_dp("OneDrive")
    monkeypatch.setattr(OneDriveStorage, "walk", lambda self, problems, verify=False: iter([
        FileEntry("Images/a.wim", 5, 2**70)]))
    dps.request_rescan(dp, admin)
    work()
    db.session.expire_all()
    job = db.session.query(Job).filter_by(dp_id=dp.id, kind="rescan").one()
    assert job.state == "failed" and "OneDrive's listing Depot cannot read (a file's time is " \
        "out of range)" in job.error
    assert db.session.get(DistributionPoint, dp.id).status == "offline"
    assert db.session.query(InventoryFile).filter_by(dp_id=dp.id).count() == 0
    assert answers.entry(FileEntry("Images/a.wim", 5, 0), "x").size == 5


def test_a_provider_that_does_not_answer_is_told_in_depots_words(onedrive_dp, monkeypatch):
    """Does a provider call that fails say why in Depot's words, not the exception's class?"""
    import requests

    from portal.core.errors import StorageUnavailable

    backend = onedrive_backend(onedrive_dp("OneDrive"))

    def refuse(*args, **kw):
        raise requests.ConnectionError("HTTPSConnectionPool: [Errno 111] Connection refused")

    with backend:
        monkeypatch.setattr(backend.http, "request", refuse)
        with pytest.raises(StorageUnavailable) as caught:
            backend.space()
    assert caught.value.message.startswith("OneDrive: Depot could not connect to OneDrive at ")
    assert caught.value.message.endswith(" (connection refused)")


@pytest.mark.parametrize("endpoint, words", [
    ("http://169.254.169.254", "leads to 169.254.169.254, a link-local or cloud metadata"),
    ("http://[fe80::1]:9000", "leads to fe80::1"),
    ("https://key:secret@s3.example.com", "must not carry a user name or password"),
])
def test_an_s3_endpoint_at_a_metadata_address_or_with_credentials_is_refused(app, endpoint,
                                                                              words):
    """Is an S3 endpoint refused like a DP node's URL: credentials in it, or link-local?"""
    from portal.core.errors import DepotError
    from portal.services import cloud_dps

    values = {"endpoint_url": endpoint, "bucket": "depot-test", "access_key_id": "AKIA",
              "secret_access_key": "s" * 20}
    with pytest.raises(DepotError, match=words.replace("(", r"\(")) as caught:
        cloud_dps.clean_s3(values)
    assert "secret" not in caught.value.message.replace("secret access key", "")
    app.config["DEPOT_ALLOW_LINK_LOCAL_DPS"] = True
    if "@" not in endpoint:
        assert cloud_dps.clean_s3(values)[0]["endpoint_url"] == endpoint
