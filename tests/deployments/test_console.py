"""The Deployments pages: list with live progress and cancel, the form and its preview, one
deployment, the Deploy link on the Images page."""
from urllib.parse import quote

from sqlalchemy import select

from portal.extensions import db
from portal.models import Deployment, Job
from portal.services import deployments as svc
from tests.factories import add_dp, make_device, make_group
from tests.node_fixtures import IMAGE, PACK


def _deploy(admin, *devices, **kw):
    return svc.create_deployments(admin, device_ids=[d.id for d in devices], image=IMAGE, **kw)


def test_index_polls_while_a_deployment_is_active_and_not_after(login_as, admin, content):
    """Does the list show progress as page and fragment, polling only while one is active?"""
    console = login_as("technician")
    [row] = _deploy(admin, make_device("pc-1"))
    row.state, row.bytes_done, row.phase = "downloading", row.bytes_total // 2, IMAGE
    db.session.commit()
    page = console.get("/deployments/").get_data(as_text=True)
    assert "<nav" in page and 'id="deployment-list"' in page and "pc-1" in page
    assert "(50%)" in page and 'value="50"' in page and "every 2s" in page
    assert f'/deployments/{row.id}/cancel' in page
    fragment = console.get("/deployments/", hx=True)
    html = fragment.get_data(as_text=True)
    assert html.startswith('<div id="deployment-list"') and "every 2s" in html
    assert "HX-Request" in fragment.headers["Vary"]
    row.state = "succeeded"
    db.session.commit()
    html = console.get("/deployments/", hx=True).get_data(as_text=True)
    assert "every 2s" not in html and "deployments-changed from:body" in html
    assert "/cancel" not in html and 'data-state="succeeded"' in html


def test_index_filters_by_state_and_batch(login_as, admin, content):
    """Do the state filter and a batch link show only their deployments?"""
    console = login_as("admin")
    [first] = _deploy(admin, make_device("alpha"))
    [second] = _deploy(admin, make_device("beta"))
    svc.cancel_deployment(admin, first.id)
    cancelled = console.get("/deployments/?state=cancelled").get_data(as_text=True)
    assert "alpha" in cancelled and "beta" not in cancelled
    batch = console.get(f"/deployments/?batch={second.batch_id}").get_data(as_text=True)
    assert "beta" in batch and "alpha" not in batch


def test_new_form_preselects_and_previews(login_as, central, seattle_image):
    """Does the form, opened for a group and an image, show the DP each device gets and why,
    the ineligible DPs with reasons and a Copy now button?"""
    console = login_as("admin")
    group = make_group("Seattle office", preferred=seattle_image)
    make_device("pc-1", group=group)
    page = console.get(f"/deployments/new?group_id={group.id}&image={quote(IMAGE)}"
                       f"&platform_pack={quote(PACK)}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'id="deploy-form"' in html
    assert f'<option value="{IMAGE}" selected>' in html and "Automatic (selection rules)" in html
    assert "central: Seattle lacks Platform Packs/Dell" in html
    assert "Platform Packs/Dell is missing at Seattle" in html and "Copy now" in html
    fragment = console.get(f"/deployments/preview?target=group&group_id={group.id}&image={quote(IMAGE)}",
                           hx=True).get_data(as_text=True)
    assert fragment.startswith('<section id="deploy-preview"')
    assert "preferred DP of group Seattle office" in fragment and "Copy now" not in fragment


def test_copy_now_starts_the_copy_and_the_preview_follows_it(login_as, central, seattle_image, work):
    """Does Copy now queue the missing asset's copy, the preview poll while it runs, and Seattle
    become eligible once it is done?"""
    console = login_as("admin")
    device = make_device("pc-1")
    preview_url = (f"/deployments/preview?device_id={device.id}&image={quote(IMAGE)}"
                   f"&platform_pack={quote(PACK)}&dp_id={seattle_image.id}")
    started = console.post("/copies/", {"asset_keys": [PACK], "dp_ids": [str(seattle_image.id)]},
                           hx=True)
    assert started.status_code == 200 and started.headers["HX-Trigger"] == "jobs-changed"
    html = console.get(preview_url, hx=True).get_data(as_text=True)
    assert "copying to Seattle (0%)" in html and "every 2s" in html
    work()
    html = console.get(preview_url, hx=True).get_data(as_text=True)
    assert "every 2s" not in html and 'data-dp="Seattle" data-eligible="yes"' in html
    assert "chosen by hand" in html
    assert db.session.scalars(select(Job.state).where(Job.kind == "copy", Job.asset_key == PACK)).all() \
        == ["succeeded"]


def test_submit_creates_and_goes_to_the_batch(login_as, central, seattle_all):
    """Does submitting the form create the deployments and go to their batch?"""
    console = login_as("technician")
    group = make_group("Seattle office", preferred=seattle_all)
    make_device("pc-1", group=group)
    make_device("pc-2", group=group)
    response = console.post("/deployments/", {"target": "group", "group_id": str(group.id),
                                              "image": IMAGE, "platform_pack": PACK, "dp_id": ""})
    assert response.status_code == 303
    rows = db.session.scalars(select(Deployment)).all()
    assert len(rows) == 2 and {r.dp_name for r in rows} == {"Seattle"}
    assert response.headers["Location"].endswith(f"/deployments/?batch={rows[0].batch_id}")


def test_a_refused_submit_shows_the_form_again_with_the_reasons(login_as, central, seattle_image):
    """Is an explicit ineligible DP answered with the form, its choices kept, and the reasons?"""
    console = login_as("admin")
    device = make_device("pc-1")
    response = console.post("/deployments/", {"target": "devices", "device_id": [str(device.id)],
                                              "image": IMAGE, "platform_pack": PACK,
                                              "dp_id": str(seattle_image.id)})
    html = response.get_data(as_text=True)
    assert response.status_code == 409 and 'id="deploy-error"' in html
    assert "<li>Platform Packs/Dell is missing at Seattle</li>" in html
    assert f'<option value="{device.id}" selected>' in html
    assert db.session.scalars(select(Deployment)).all() == []
    nothing = console.post("/deployments/", {"target": "devices", "image": IMAGE})
    assert nothing.status_code == 400 and "choose the devices" in nothing.get_data(as_text=True)


def test_show_polls_while_active_and_cancel_from_it(login_as, admin, central, seattle_image):
    """Does one deployment show its DP, reason, pinned short digests and progress, poll while
    active, and stop polling once cancelled from its own Cancel button?"""
    console = login_as("technician")
    [row] = _deploy(admin, make_device("pc-1"), dp_id=seattle_image.id)
    page = console.get(f"/deployments/{row.id}").get_data(as_text=True)
    assert "Seattle" in page and f"chosen by {admin.label}" in page
    assert row.assets[0]["digest"][:12] in page and "every 2s" in page
    fragment = console.get(f"/deployments/{row.id}", hx=True).get_data(as_text=True)
    assert fragment.startswith(f'<section id="deployment-{row.id}"')
    cancelled = console.post(f"/deployments/{row.id}/cancel", hx=True)
    html = cancelled.get_data(as_text=True)
    assert cancelled.headers["HX-Trigger"] == "deployments-changed"
    assert 'data-state="cancelled"' in html and "every 2s" not in html
    again = console.post(f"/deployments/{row.id}/cancel", hx=True)
    assert again.status_code == 409 and "already cancelled" in again.get_data(as_text=True)
    assert console.get("/deployments/999").status_code == 404


def test_plain_cancel_redirects_to_the_deployment(login_as, admin, content):
    """Does a cancel posted without htmx go back to the deployment's page?"""
    console = login_as("admin")
    [row] = _deploy(admin, make_device("pc-1"))
    response = console.post(f"/deployments/{row.id}/cancel")
    assert response.status_code == 303 and response.headers["Location"].endswith(f"/deployments/{row.id}")


def test_viewers_see_deployments_but_no_deploy_or_cancel(login_as, admin, content):
    """Can a viewer open the form, deploy, or cancel from the console? (No.) Do they see the list
    without buttons?"""
    viewer = login_as("viewer")
    device = make_device("pc-1")
    [row] = _deploy(admin, device)
    html = viewer.get("/deployments/").get_data(as_text=True)
    assert "pc-1" in html and "/cancel" not in html and "Deploy…" not in html
    assert viewer.get("/deployments/new").status_code == 403
    assert viewer.get(f"/deployments/preview?image={quote(IMAGE)}", hx=True).status_code == 403
    assert viewer.post("/deployments/", {"target": "devices", "device_id": [str(device.id)],
                                         "image": IMAGE}).status_code == 403
    assert viewer.post(f"/deployments/{row.id}/cancel").status_code == 403
    db.session.expire_all()
    assert db.session.get(Deployment, row.id).state == "pending"
    assert db.session.scalar(select(db.func.count()).select_from(Deployment)) == 1


def test_images_page_offers_deploy_to_those_who_may(login_as, content):
    """Is there a Deploy link for images (not other libraries) for technicians, none for viewers?"""
    technician = login_as("technician")
    html = technician.get("/libraries/images").get_data(as_text=True)
    assert 'class="deploy-link" href="/deployments/new?image=Images/Win11.wim"' in html
    assert "deploy-link" not in technician.get("/libraries/platform-packs").get_data(as_text=True)
    assert "deploy-link" not in login_as("viewer").get("/libraries/images").get_data(as_text=True)


def test_a_site_viewer_sees_no_other_sites_deployments_in_a_devices_history(login_as, api_as,
                                                                             admin, content):
    """Does a device's history (page and API) show a viewer scoped to Seattle the deployments
    served from central? (No: the Deployments list and page hide them from that viewer too.)
    The device is at Seattle (its group prefers Seattle's DP, offline, so central serves it)."""
    seattle = make_group("Seattle", preferred=add_dp("Seattle DP", site="Seattle office"))
    device = make_device("pc-1", group=seattle)
    [row] = _deploy(admin, device)
    viewer = login_as("viewer", sites=["Seattle office"])
    assert viewer.get(f"/deployments/{row.id}").status_code == 404
    html = viewer.get(f"/computers/{device.id}").get_data(as_text=True)
    assert f"/deployments/{row.id}" not in html and IMAGE not in html
    api = api_as("viewer", sites=["Seattle office"])
    assert api.get(f"/api/v1/devices/{device.id}").get_json()["deployments"] == []
    # Everyone else still sees it.
    html = login_as("viewer").get(f"/computers/{device.id}").get_data(as_text=True)
    assert f"/deployments/{row.id}" in html
    answer = api_as("admin").get(f"/api/v1/devices/{device.id}").get_json()
    assert [d["id"] for d in answer["deployments"]] == [row.id]
