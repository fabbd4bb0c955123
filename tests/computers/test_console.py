"""Computer Management in the console: pages and fragments, bulk moves, groups, boundaries,
a device's page; admins change things, technicians and viewers only look."""
import re

import pytest

from portal.extensions import db
from portal.models import Boundary, Deployment, Device, DeviceGroup
from portal.services import boundaries, device_groups
from portal.services.actors import Actor
from tests.factories import add_device

SYSTEM = Actor(None)


def html_of(response) -> str:
    return response.get_data(as_text=True)


def test_devices_page_and_fragment(login_as):
    """Is /computers/ a full page with the columns, and only the table for htmx (Vary: HX-Request)?"""
    group = device_groups.create_group(SYSTEM, "Seattle office")
    add_device("SEA-LT-1", serial="5CG1", macs=["3c:52:82:aa:bb:cc"], ips=["10.2.0.5"],
               group=group, seen_ago=10, os_name="Windows 11 Pro", agent_version="1.2.3")
    console = login_as("viewer")
    page = console.get("/computers/")
    html = html_of(page)
    assert page.status_code == 200 and html.startswith("<!doctype html>")
    assert 'id="device-filters"' in html and 'hx-push-url="true"' in html
    for column in ("Name", "Serial", "MAC", "IP", "OS", "Last seen", "Agent", "Group", "Status"):
        assert re.search(rf"<th[^>]*>(<a [^>]*>)?{column}(</a>)?</th>", html), column
    for value in ("SEA-LT-1", "5CG1", "3c:52:82:aa:bb:cc", "10.2.0.5", "Windows 11 Pro", "1.2.3",
                  "Seattle office", 'class="badge device-online"'):
        assert value in html
    assert "HX-Request" in page.headers["Vary"]
    fragment = console.get("/computers/", hx=True)
    body = html_of(fragment)
    assert body.lstrip().startswith('<div id="devices">') and "<!doctype" not in body
    assert "SEA-LT-1" in body and "HX-Request" in fragment.headers["Vary"]


@pytest.mark.parametrize("hx", [False, True])
def test_search_and_filters_as_plain_get_and_htmx(login_as, hx):
    """Do search, group and status filters work both as a plain GET and as an htmx request?"""
    group = device_groups.create_group(SYSTEM, "SLC office")
    add_device("SLC-1", group=group, seen_ago=5, serial="AAA111")
    add_device("SLC-2", group=group, seen_ago=None)
    add_device("HOME-1", seen_ago=99999, macs=["de:ad:be:ef:00:01"])
    console = login_as("technician")
    found = lambda url: [n for n in ("SLC-1", "SLC-2", "HOME-1") if f">{n}</a>" in html_of(console.get(url, hx=hx))]  # noqa: E731
    assert found("/computers/?q=aaa111") == ["SLC-1"]
    assert found("/computers/?q=DE-AD-BE-EF") == ["HOME-1"]
    assert found(f"/computers/?group_id={group.id}") == ["SLC-1", "SLC-2"]
    assert found(f"/computers/?group_id={group.id}&status=never") == ["SLC-2"]
    assert found("/computers/?group_id=none") == ["HOME-1"]
    assert found("/computers/?status=offline") == ["HOME-1"]
    assert "No devices match." in html_of(console.get("/computers/?q=zzz", hx=hx))
    assert console.get("/computers/?status=asleep", hx=hx).status_code == 400


def test_bulk_move_as_htmx_and_plain_form(login_as):
    """Can an admin move ticked devices to a group in bulk (htmx: the table again; a plain form: 303)?"""
    group = device_groups.create_group(SYSTEM, "Remote workers")
    a, b, c = add_device("A-1"), add_device("B-1"), add_device("C-1")
    console = login_as("admin")
    html = html_of(console.get("/computers/"))
    assert 'action="/computers/move"' in html and 'name="to_group_id"' in html
    assert f'name="device_id" value="{a.id}"' in html and "Move to group" in html
    response = console.post("/computers/move", {"device_id": [a.id, b.id], "to_group_id": group.id,
                                                "q": "", "group_id": "", "status": ""}, hx=True)
    body = html_of(response)
    assert response.status_code == 200 and body.lstrip().startswith('<div id="devices">')
    assert "Moved 2 devices to Remote workers: A-1, B-1." in body
    db.session.expire_all()
    assert (a.group_id, b.group_id, c.group_id) == (group.id, group.id, None)
    plain = console.post("/computers/move", {"device_id": [a.id], "to_group_id": "",
                                             "q": "A-", "group_id": "", "status": ""})
    assert plain.status_code == 303 and plain.headers["Location"] == "/computers/?q=A-"
    db.session.expire_all()
    assert a.group_id is None


def test_bulk_move_with_an_unknown_device_moves_none(login_as):
    """Does a bulk move naming a device that is gone say so and move nothing?"""
    group = device_groups.create_group(SYSTEM, "G")
    a = add_device("A-1")
    console = login_as("admin")
    response = console.post("/computers/move", {"device_id": [a.id, 4040], "to_group_id": group.id}, hx=True)
    assert response.status_code == 400
    assert "no device 4040; nothing was moved" in html_of(response)
    nothing = console.post("/computers/move", {"to_group_id": group.id}, hx=True)
    assert nothing.status_code == 400 and "choose at least one device" in html_of(nothing)
    db.session.expire_all()
    assert a.group_id is None


def test_deploy_goes_to_the_deployment_form(login_as):
    """Does Deploy send the ticked devices on to the deployment form, and a group's Deploy its group?"""
    group = device_groups.create_group(SYSTEM, "SLC office")
    a, b = add_device("A-1", group=group), add_device("B-1")
    console = login_as("technician")
    html = html_of(console.get(f"/computers/?group_id={group.id}"))
    assert 'formaction="/computers/deploy"' in html
    assert f'href="/deployments/new?group_id={group.id}"' in html and "Deploy to SLC office" in html
    response = console.post("/computers/deploy", {"device_id": [a.id, b.id]})
    assert response.status_code == 303
    assert response.headers["Location"] == f"/deployments/new?device_id={a.id}&device_id={b.id}"
    assert console.post("/computers/deploy", {}).status_code == 400
    groups_html = html_of(console.get("/computers/groups"))
    assert f'href="/deployments/new?group_id={group.id}"' in groups_html


@pytest.mark.parametrize("role", ["technician", "viewer"])
def test_others_may_look_but_not_change(login_as, dps, role):
    """Do technicians and viewers see the pages without any write form, and get 403 on every write?"""
    group = device_groups.create_group(SYSTEM, "G")
    device = add_device("D-1")
    boundary = boundaries.create_boundary(SYSTEM, "LAN", "10.0.0.0/8", dps["central"].id)
    console = login_as(role)
    pages = "".join(html_of(console.get(url)) for url in (
        "/computers/", f"/computers/{device.id}", "/computers/groups", "/computers/boundaries"))
    for write in ("/computers/move", f"/computers/{device.id}/forget", 'id="new-group"',
                  'method="post" action="/computers/groups"', "/delete", 'id="device-form"',
                  'id="new-boundary"', "/edit"):
        assert write not in pages
    assert ("Deploy to ticked" in pages) == (role == "technician")
    refused = [
        console.post("/computers/move", {"device_id": [device.id], "to_group_id": group.id}),
        console.post(f"/computers/{device.id}", {"name": "X"}),
        console.post(f"/computers/{device.id}/forget"),
        console.post("/computers/groups", {"name": "H"}),
        console.get(f"/computers/groups/{group.id}/edit"),
        console.post(f"/computers/groups/{group.id}", {"name": "H"}),
        console.post(f"/computers/groups/{group.id}/delete"),
        console.post("/computers/boundaries", {"name": "b", "cidr": "10.9.0.0/16", "dp_id": dps["central"].id}),
        console.post(f"/computers/boundaries/{boundary.id}/delete"),
    ]
    assert [r.status_code for r in refused] == [403] * len(refused)
    db.session.expire_all()
    assert device.name == "D-1" and device.group_id is None and group.name == "G"
    assert db.session.query(DeviceGroup).count() == 1 and db.session.query(Boundary).count() == 1
    if role == "viewer":
        assert console.post("/computers/deploy", {"device_id": [device.id]}).status_code == 403


def test_writes_need_the_csrf_token(login_as):
    """Is a bulk move without the CSRF token refused and nothing moved?"""
    group = device_groups.create_group(SYSTEM, "G")
    device = add_device("D-1")
    console = login_as("admin")
    response = console.client.post("/computers/move", data={"device_id": device.id, "to_group_id": group.id})
    assert response.status_code == 400 and "security token" in html_of(response)
    db.session.expire_all()
    assert device.group_id is None


def test_device_page_history_move_and_forget(login_as):
    """Does a device's page show its facts and history linking to each deployment, and let an admin
    rename, move and forget it?"""
    group = device_groups.create_group(SYSTEM, "Seattle office")
    device = add_device("LT-9", serial="SER9", ips=["10.2.0.9"], seen_ago=None)
    device_id = device.id
    dep = Deployment(batch_id="b", device_id=device.id, device_name="LT-9", dp_name="Central",
                     image="Images/Win11.wim", state="failed", error="hash mismatch")
    db.session.add(dep)
    db.session.commit()
    console = login_as("admin")
    page = console.get(f"/computers/{device.id}")
    html = html_of(page)
    assert page.status_code == 200 and "SER9" in html and "never seen" in html
    assert f'href="/deployments/{dep.id}"' in html and "hash mismatch" in html
    assert f'href="/deployments/new?device_id={device.id}"' in html
    fragment = console.get(f"/computers/{device.id}", hx=True)
    assert html_of(fragment).lstrip().startswith(f'<section id="device-{device.id}"')
    saved = console.post(f"/computers/{device.id}", {"name": "LT-09", "group_id": group.id}, hx=True)
    assert saved.status_code == 200 and 'value="LT-09"' in html_of(saved)
    bad = console.post(f"/computers/{device.id}", {"name": "", "group_id": ""}, hx=True)
    assert bad.status_code == 400 and "name must not be empty" in html_of(bad)
    plain = console.post(f"/computers/{device.id}", {"name": "LT-09", "group_id": ""})
    assert plain.status_code == 303 and plain.headers["Location"] == f"/computers/{device.id}"
    db.session.expire_all()
    assert device.name == "LT-09" and device.group_id is None
    forgot = console.post(f"/computers/{device.id}/forget", hx=True)
    assert forgot.headers["HX-Redirect"] == "/computers/"
    db.session.expire_all()
    assert db.session.query(Device).count() == 0 and dep.device_name == "LT-9"
    assert console.get(f"/computers/{device_id}").status_code == 404


def test_groups_create_edit_delete(login_as, dps):
    """Can an admin add a group with a preferred DP and ordered fallbacks, edit it, and delete it
    (its devices stay, in no group)?"""
    sea, slc, central = dps["seattle"], dps["slc"], dps["central"]
    console = login_as("admin")
    page = html_of(console.get("/computers/groups"))
    for field in ('name="preferred_dp_id"', 'name="fallback_1"', 'name="fallback_2"', 'name="fallback_3"'):
        assert field in page
    created = console.post("/computers/groups", {
        "name": "Seattle office", "description": "3rd floor", "preferred_dp_id": sea.id,
        "fallback_1": central.id, "fallback_2": "", "fallback_3": slc.id}, hx=True)
    body = html_of(created)
    assert created.status_code == 200 and body.lstrip().startswith('<section id="groups">')
    group = db.session.query(DeviceGroup).one()
    assert (group.preferred_dp_id, group.fallback_dp_ids) == (sea.id, [central.id, slc.id])
    assert "<li>Central</li><li>SLC</li>" in body
    add_device(group=group)
    dup = console.post("/computers/groups", {"name": "seattle OFFICE"}, hx=True)
    assert dup.status_code == 409 and "a group named Seattle office already exists" in html_of(dup)
    same = console.post("/computers/groups", {"name": "X", "preferred_dp_id": sea.id, "fallback_1": sea.id}, hx=True)
    assert same.status_code == 400 and "Seattle is the preferred DP" in html_of(same)
    edit = html_of(console.get(f"/computers/groups/{group.id}/edit"))
    assert f'<option value="{sea.id}" selected>' in edit and 'name="fallback_3"' in edit
    saved = console.post(f"/computers/groups/{group.id}", {"name": "Seattle office",
                                                           "preferred_dp_id": slc.id, "fallback_1": sea.id}, hx=True)
    assert saved.headers["HX-Redirect"] == "/computers/groups"
    db.session.expire_all()
    assert (group.preferred_dp_id, group.fallback_dp_ids) == (slc.id, [sea.id])
    unknown = console.post(f"/computers/groups/{group.id}", {"name": "Seattle office", "fallback_1": 999}, hx=True)
    assert unknown.status_code == 400 and "no distribution point 999" in html_of(unknown)
    deleted = console.post(f"/computers/groups/{group.id}/delete")
    assert deleted.status_code == 303 and deleted.headers["Location"] == "/computers/groups"
    assert db.session.query(DeviceGroup).count() == 0
    assert db.session.query(Device).filter(Device.group_id.is_(None)).count() == 1


def test_boundaries_page_adds_and_deletes_boundaries(login_as, dps):
    """Can an admin add and delete boundaries, with a bad subnet explained in the fragment?"""
    console = login_as("admin")
    page = console.get("/computers/boundaries")
    assert page.status_code == 200 and 'id="new-boundary"' in html_of(page)
    bad = console.post("/computers/boundaries", {"name": "Seattle LAN", "cidr": "10.2.7.1/16",
                                                 "dp_id": dps["seattle"].id}, hx=True)
    assert bad.status_code == 400 and "did you mean 10.2.0.0/16?" in html_of(bad)
    assert 'value="10.2.7.1/16"' in html_of(bad)  # the form keeps what was typed
    good = console.post("/computers/boundaries", {"name": "Seattle LAN", "cidr": "10.2.0.0/16",
                                                  "dp_id": dps["seattle"].id}, hx=True)
    assert good.status_code == 200 and "<code>10.2.0.0/16</code>" in html_of(good)
    boundary = db.session.query(Boundary).one()
    assert console.post(f"/computers/boundaries/{boundary.id}/delete").status_code == 303
    assert db.session.query(Boundary).count() == 0


def test_digits_that_are_not_decimal_are_no_500(login_as):
    """Are a page number and a group id written with a superscript digit ('²', a digit to
    str.isdigit that int() refuses) taken as no number rather than a 500?"""
    add_device("A-1")
    console = login_as("admin")
    assert "A-1" in html_of(console.get("/computers/?page=²"))
    response = console.post("/settings/enrollment", {"name": "lab", "days": "7", "group_id": "²"})
    assert response.status_code in (303, 400), html_of(response)
