"""Uploading an image from the browser: chosen on the Images page, sent in tiny chunks, one
chunk's connection dropped on the way, resumed, checked and listed with its digest."""
import hashlib
import os

import pytest
from playwright.sync_api import expect

from tests import factories
from tests.helpers import sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DATA = os.urandom(6 * 1024 + 100)  # seven chunks of 1 KiB


@pytest.fixture
def worker_env(worker_env):
    """The server and worker with chunks of 1 KiB and no free-space reserve."""
    return dict(worker_env, DEPOT_UPLOAD_CHUNK_BYTES="1024", DEPOT_UPLOAD_RESERVE_BYTES="0")


def test_upload_survives_a_dropped_chunk_and_is_listed(app, central, live_server, start_worker,
                                                       page, screenshot):
    """Does a file chosen on the Images page upload in chunks, resume after one chunk's
    connection drops, show its SHA-256 and then appear as an asset after central's rescan?"""
    factories.make_user(role="admin", email="admin@example.com")
    start_worker()
    dropped = []

    def drop_one(route):
        request = route.request
        if request.method == "PATCH" and request.headers.get("upload-offset") == "2048" \
                and not dropped:
            dropped.append(route.request.url)
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/libraries/images/uploads/**", drop_one)
    sign_in(page, live_server, "admin@example.com")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Images").click()
    panel = page.get_by_role("region", name="Upload to Central")
    expect(panel).to_be_visible()
    panel.get_by_label("Files").set_input_files(
        {"name": "Tiny.wim", "mimeType": "application/octet-stream", "buffer": DATA})
    panel.get_by_role("button", name="Upload").click()

    row = panel.locator(".upload-item")
    expect(row).to_have_attribute("data-state", "done")
    sha = hashlib.sha256(DATA).hexdigest()
    expect(row).to_contain_text(f"SHA-256 {sha}")
    expect(row.get_by_role("progressbar", name="Upload of Tiny.wim")).to_have_attribute(
        "value", "100")
    assert len(dropped) == 1, "no chunk was dropped: the resume was not exercised"
    with open(os.path.join(central.root, "Images", "Tiny.wim"), "rb") as fh:
        assert fh.read() == DATA
    assert page.evaluate("window.localStorage.length") == 0  # nothing left to resume

    asset = page.locator('tr.asset[data-key="Images/Tiny.wim"]')
    expect(asset).to_be_visible()  # the rescan's widget finished and the table refreshed
    expect(asset.locator("code")).to_have_text(central_digest("Images/Tiny.wim")[:12])
    screenshot("library-upload")


def central_digest(key):
    from sqlalchemy import select

    from portal.extensions import db
    from portal.models import Asset

    db.session.expire_all()
    return db.session.scalars(select(Asset.digest).where(Asset.key == key)).one()
