"""The Deployments list: sorted, searched and paged (while it polls), and redeploy of the ticked
failed or cancelled deployments through the deployment service."""
import re

from sqlalchemy import select

from portal.extensions import db
from portal.models import AuditEvent, Deployment
from portal.services import deployments as svc
from tests.factories import make_device
from tests.node_fixtures import IMAGE, PACK


def rows(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'id="deployment-row-(\d+)"', html)]


def _deploy(admin, device, **kw):
    [row] = svc.create_deployments(admin, device_ids=[device.id], image=IMAGE, **kw)
    return row


def _finish(row, state):
    row.state = state
    db.session.commit()


def test_deployments_sort_and_search_and_keep_them_when_polling(login_as, admin, content):
    """Can the list be sorted by device and searched, and does its polling URL keep both?"""
    beta = _deploy(admin, make_device("Beta-pc"))
    alpha = _deploy(admin, make_device("alpha-pc"))
    console = login_as("viewer")
    assert rows(console.get("/deployments/").get_data(as_text=True)) == [alpha.id, beta.id]
    by_device = console.get("/deployments/?sort=device").get_data(as_text=True)
    assert rows(by_device) == [alpha.id, beta.id] and 'aria-sort="ascending"' in by_device
    desc = console.get("/deployments/?sort=device&dir=desc&q=PC", hx=True).get_data(as_text=True)
    assert rows(desc) == [beta.id, alpha.id]
    assert 'hx-get="/deployments/?sort=device&amp;dir=desc&amp;q=PC"' in desc and "every 2s" in desc
    assert rows(console.get("/deployments/?q=beta").get_data(as_text=True)) == [beta.id]
    assert "2 of 2" in by_device
    assert console.get("/deployments/?sort=bogus&page=0").status_code == 200


def test_redeploy_ticked_failed_and_cancelled(login_as, admin, content):
    """Does redeploy create a new deployment of the same image and packs to the same device for
    each failed or cancelled one, and count the rest with why?"""
    failed = _deploy(admin, make_device("pc-1"), platform_pack=PACK)
    cancelled = _deploy(admin, make_device("pc-2"))
    running = _deploy(admin, make_device("pc-3"))
    _finish(failed, "failed")
    svc.cancel_deployment(admin, cancelled.id)
    console = login_as("technician")
    response = console.post("/deployments/redeploy", {
        "deployment_id": [str(failed.id), str(cancelled.id), str(running.id), "999999", "x"],
        "next": "/deployments/?sort=device"})
    assert response.status_code == 303
    assert response.headers["Location"] == "/deployments/?sort=device"
    page = console.get("/deployments/?sort=device").get_data(as_text=True)
    assert "2 deployments started again, 1 was not failed or cancelled, 2 were not found" in page
    new = db.session.scalars(select(Deployment).where(
        Deployment.id.not_in([failed.id, cancelled.id, running.id]))).all()
    assert sorted((d.device_id, d.image, d.platform_pack, d.state) for d in new) == [
        (failed.device_id, IMAGE, PACK, "pending"), (cancelled.device_id, IMAGE, None, "pending")]
    creates = db.session.scalars(select(AuditEvent).where(
        AuditEvent.action == "deployment.create")).all()
    assert len(creates) == 5  # three at first, one per redeploy


def test_redeploy_refusals(login_as, admin, content):
    """Is redeploy a 403 for a viewer, a flash when nothing is ticked, and refused (with the
    service's reason) for a device that already has an unfinished deployment?"""
    device = make_device("pc-1")
    failed = _deploy(admin, device)
    _finish(failed, "failed")
    assert login_as("viewer").post("/deployments/redeploy",
                                   {"deployment_id": failed.id}).status_code == 403
    console = login_as("admin")
    console.post("/deployments/redeploy", {})
    html = console.get("/deployments/").get_data(as_text=True)
    assert "tick the failed or cancelled deployments" in html
    _deploy(admin, device)  # the device is busy again
    console.post("/deployments/redeploy", {"deployment_id": failed.id})
    html = console.get("/deployments/").get_data(as_text=True)
    assert "0 deployments started again, 1 could not start" in html
    assert "unfinished deployment" in html
    assert db.session.query(Deployment).count() == 2


def test_select_all_box_only_for_roles_that_deploy(login_as, admin, content):
    """Do people who may deploy get the select-all box (kept while the list polls), and viewers
    not?"""
    _deploy(admin, make_device("pc-1"))
    html = login_as("technician").get("/deployments/").get_data(as_text=True)
    assert 'data-select-all="deployment_id"' in html and "hx-preserve" in html
    assert "data-select-all" not in login_as("viewer").get("/deployments/").get_data(as_text=True)
