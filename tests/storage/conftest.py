"""The storage contract's fixtures: `place` is a DP of each kind (central's folder, a DP node,
S3 on moto, OneDrive, Google Drive, Dropbox on their protocol servers), `uploading` one of each
kind that takes uploads; each with its servers started and its settings in the app."""
import pytest

from tests.cloud.dropbox_fixtures import *  # noqa: F401,F403
from tests.cloud.gdrive_fixtures import *  # noqa: F401,F403
from tests.cloud.onedrive_fixtures import *  # noqa: F401,F403
from tests.cloud.s3_fixtures import *  # noqa: F401,F403
from tests.storage.places import KINDS, UPLOADING, make_place


@pytest.fixture(params=KINDS)
def place(request):
    return make_place(request.param, request)


@pytest.fixture(params=UPLOADING)
def uploading(request):
    return make_place(request.param, request)


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
