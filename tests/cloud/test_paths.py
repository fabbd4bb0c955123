"""Every cloud backend checks a path like a DP node does before it touches the account: inside a
library folder, no '..' or '/' even when written as escapes, never a whole library deleted."""
import pytest

from portal.core.errors import BadPath, DepotError
from portal.core.paths import library_parts
from portal.services.backends import probe_storage

TOKEN = {"access_token": "a", "refresh_token": "r", "expires_in": 3600}
BAD = ["Images", "Images/\\x2e\\x2e", "Images/a\\x2fb", "Images/../x", "/Images/a", "Other/a",
       "Images//a", "Images/\\x00", ""]


@pytest.mark.parametrize("path", BAD)
def test_library_parts_refuses_what_leaves_an_asset(path):
    """Is every path that is not inside a library refused, escapes included?"""
    with pytest.raises(BadPath):
        library_parts(path)


def test_library_parts_unescapes_what_is_inside():
    assert library_parts("Images/bad\\xffname.wim") == [b"Images", b"bad\xffname.wim"]
    assert library_parts("Images", inside=False) == [b"Images"]


@pytest.fixture(params=["s3", "onedrive", "gdrive", "dropbox"])
def backend(request, app):
    if request.param == "s3":
        made = probe_storage("cloud", "s3", settings={"endpoint_url": "http://127.0.0.1:9",
                                                      "region": "us-east-1", "bucket": "b",
                                                      "prefix": "p"},
                             credentials={"access_key_id": "k", "secret_access_key": "s"},
                             name="S3")
    else:
        app.config.update({f"DEPOT_{request.param.upper()}_{k}": "x"
                           for k in ("CLIENT_ID", "CLIENT_SECRET")})
        made = probe_storage("cloud", request.param, token=TOKEN, settings={"folder": "Depot"},
                             name=request.param)
    yield made
    made.close()


@pytest.mark.parametrize("path", BAD)
def test_no_backend_deletes_outside_an_asset(backend, path):
    """Does delete() refuse before any request (nothing listens on these addresses)?"""
    with pytest.raises(DepotError) as refused:
        backend.delete(path)
    assert refused.value.code in ("bad_path", "dp_error")
