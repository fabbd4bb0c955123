"""The branch view: one site's DPs and deployments, read only, only the viewer's own site."""
from sqlalchemy import select

from portal.extensions import db
from portal.models import Deployment, Job
from portal.services import deployments as svc
from tests.factories import make_device, make_group
from tests.node_fixtures import IMAGE, PACK


def _two_deployments(admin, central, seattle):
    """One deployment from Seattle (pc-sea) and one from central (pc-hq)."""
    group = make_group("Seattle office", preferred=seattle)
    [sea] = svc.create_deployments(admin, device_ids=[make_device("pc-sea", group=group).id],
                                   image=IMAGE)
    [hq] = svc.create_deployments(admin, device_ids=[make_device("pc-hq").id], image=IMAGE)
    assert (sea.dp_name, hq.dp_name) == ("Seattle", "Central")
    return sea, hq


def test_a_site_viewer_sees_only_their_site(login_as, admin, central, seattle_image):
    """Does a viewer of Seattle office see Seattle's health, space, counts, what is behind central
    and Seattle's deployments, and nothing of HQ?"""
    sea, hq = _two_deployments(admin, central, seattle_image)
    seattle_image.free_bytes = 5 * 1024 ** 3
    db.session.commit()
    viewer = login_as("viewer", sites=["Seattle office"])
    page = viewer.get("/branch/")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "<h1>Seattle office</h1>" in html
    assert 'id="branch-dp-%d"' % seattle_image.id in html and "5.0 GiB" in html
    assert "dp-online" in html and "1 current" in html and "1 missing" in html
    assert "Platform Packs/Dell" in html and "1 not current with central" in html
    assert "pc-sea" in html and "pc-hq" not in html
    assert 'id="branch-dp-%d"' % central.id not in html
    assert viewer.get("/branch/?site=HQ").status_code == 404


def test_the_branch_view_renders_no_write_action(login_as, admin, central, seattle_image):
    """Is there no Cancel, Copy, Rescan or Deploy on the branch view, even with work running?"""
    _two_deployments(admin, central, seattle_image)
    viewer = login_as("viewer", sites=["Seattle office"])
    fragment = viewer.get("/branch/", hx=True).get_data(as_text=True)
    assert fragment.startswith('<div id="branch-site"')
    for word in ("hx-post", 'method="post"', "Cancel", "Copy", "Rescan", "Deploy…", "/deployments/new"):
        assert word not in fragment, word


def test_progress_polls_while_a_deployment_runs_and_not_after(login_as, admin, central, seattle_image):
    """Does the site's fragment poll while one of its deployments is active, and stop after?"""
    sea, _ = _two_deployments(admin, central, seattle_image)
    viewer = login_as("viewer", sites=["Seattle office"])
    sea.state, sea.bytes_done = "downloading", sea.bytes_total // 4
    db.session.commit()
    html = viewer.get("/branch/", hx=True).get_data(as_text=True)
    assert "every 2s" in html and "(25%)" in html
    sea.state = "failed"
    sea.error = "hash mismatch in Images/Win11.wim"
    db.session.commit()
    html = viewer.get("/branch/", hx=True).get_data(as_text=True)
    assert "every 2s" not in html and "hash mismatch in Images/Win11.wim" in html


def test_others_choose_a_site(login_as, central, seattle_image):
    """May an admin (or a viewer without sites) look at any site, choosing it?"""
    admin = login_as("admin")
    html = admin.get("/branch/?site=HQ").get_data(as_text=True)
    assert "<h1>HQ</h1>" in html and 'id="branch-dp-%d"' % central.id in html
    assert '<option selected>HQ</option>' in html and "<option >Seattle office</option>" in html
    unscoped = login_as("viewer").get("/branch/?site=Seattle%20office").get_data(as_text=True)
    assert "<h1>Seattle office</h1>" in unscoped
    assert admin.get("/branch/?site=Atlantis").status_code == 404


def test_a_viewer_cannot_write_through_the_routes(login_as, admin, central, seattle_image):
    """Are a viewer's posts to deploy, cancel and copy refused with 403, changing nothing?"""
    sea, _ = _two_deployments(admin, central, seattle_image)
    viewer = login_as("viewer", sites=["Seattle office"])
    device = make_device("pc-new")
    assert viewer.post("/deployments/", {"target": "devices", "device_id": [str(device.id)],
                                         "image": IMAGE}).status_code == 403
    assert viewer.post(f"/deployments/{sea.id}/cancel", hx=True).status_code == 403
    assert viewer.post("/copies/", {"asset_keys": [PACK],
                                    "dp_ids": [str(seattle_image.id)]}).status_code == 403
    assert viewer.post(f"/copies/missing/{seattle_image.id}").status_code == 403
    db.session.expire_all()
    assert db.session.get(Deployment, sea.id).state == "pending"
    assert db.session.scalar(select(db.func.count()).select_from(Deployment)) == 2
    assert db.session.scalars(select(Job).where(Job.kind == "copy", Job.asset_key == PACK)).all() == []
