"""The storage contract's fixtures: a DP of each kind with its servers started and its settings
in the app (and in the workers a test starts). `place` is one of every kind (central's folder, a
DP node, S3 on moto, OneDrive, Google Drive, Dropbox on their protocol servers), `uploading` one of
every kind that takes uploads, `cloud` one of each cloud provider, `account` one of each OAuth
provider; `backend` and `receiver` are the backends of `place` and `uploading`."""
import pytest

from tests.cloud.dropbox_fixtures import *  # noqa: F401,F403
from tests.cloud.dropbox_fixtures import dropbox_settings
from tests.cloud.gdrive_fixtures import *  # noqa: F401,F403
from tests.cloud.gdrive_fixtures import gdrive_settings
from tests.cloud.onedrive_fixtures import *  # noqa: F401,F403
from tests.cloud.onedrive_fixtures import onedrive_settings
from tests.cloud.s3_fixtures import *  # noqa: F401,F403
from tests.servers import LoopbackServer
from tests.storage.cloud_places import S3_PART, DrivePlace, DropboxPlace, OneDrivePlace, S3Place
from tests.storage.places import CentralPlace, NodePlace

KINDS = ("central", "node", "s3", "onedrive", "gdrive", "dropbox")


def _configure(request, settings: dict) -> None:
    """Settings for this test's app and for the worker processes it starts."""
    request.getfixturevalue("app").config.update(settings)
    request.getfixturevalue("worker_env").update({k: str(v) for k, v in settings.items()})


def _central(request) -> CentralPlace:
    place = CentralPlace(request.getfixturevalue("app"))  # central's node serves its links
    request.addfinalizer(place.stop)
    return place


def _console(request) -> None:
    """The console served on a port, at DEPOT_PUBLIC_URL: Drive's links lead to its relay."""
    app = request.getfixturevalue("app")
    served = LoopbackServer(app, "central")
    app.config["DEPOT_PUBLIC_URL"] = served.start()
    request.addfinalizer(served.stop)


def _make(kind: str, request):
    """The place of a DP of `kind`, its servers started through the fixtures they need."""
    request.getfixturevalue("app")  # the app (and its context) first: places write DP rows
    if kind == "central":
        return _central(request)
    if kind == "node":
        return NodePlace(request.getfixturevalue("node"))
    if kind == "s3":
        _configure(request, {"DEPOT_S3_PART_SIZE": S3_PART, "DEPOT_S3_PARALLEL": 3})
        return S3Place(request.getfixturevalue("s3"), request.getfixturevalue("s3_client"),
                       request.getfixturevalue("s3_dp"))
    if kind == "onedrive":
        fake = request.getfixturevalue("graph_fake")
        _configure(request, onedrive_settings(fake))
        return OneDrivePlace(fake, request.getfixturevalue("onedrive_dp"), "OneDrive HQ")
    if kind == "gdrive":
        fake = request.getfixturevalue("gdrive")
        _configure(request, gdrive_settings(fake))
        _console(request)  # Drive's links lead to central's relay
        return DrivePlace(fake, request.getfixturevalue("gdrive_dp"), "Home Drive")
    if kind == "dropbox":
        fake = request.getfixturevalue("dropbox_fake")
        _configure(request, dropbox_settings(fake))
        return DropboxPlace(fake, request.getfixturevalue("dropbox_dp"), "Dropbox HQ")
    raise LookupError(kind)


@pytest.fixture(params=KINDS)
def place(request):
    return _make(request.param, request)


@pytest.fixture(params=KINDS[1:])
def uploading(request):
    return _make(request.param, request)


@pytest.fixture(params=["s3", "onedrive", "gdrive", "dropbox"])
def cloud(request):
    return _make(request.param, request)


@pytest.fixture(params=["onedrive", "gdrive", "dropbox"])
def account(request):
    return _make(request.param, request)


@pytest.fixture
def backend(place):
    """The backend of `place`'s DP, closed after the test."""
    with place.open() as backend:
        yield backend


@pytest.fixture
def receiver(uploading):
    """The backend of `uploading`'s DP, closed after the test."""
    with uploading.open() as backend:
        yield backend
