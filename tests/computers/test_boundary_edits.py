"""Computer Management, Boundaries, Edit: name, subnet and DP, checked as when adding."""
import pytest

from portal.extensions import db
from portal.models import AuditEvent, Boundary
from tests.factories import make_boundary


def html_of(response) -> str:
    return response.get_data(as_text=True)


def test_edit_page_and_fragment(login_as, dps):
    """Is the Edit page filled from the boundary (its DP selected), a fragment for htmx, and
    linked from the list?"""
    boundary = make_boundary("10.2.0.0/16", dps["seattle"], name="Seattle LAN")
    console = login_as("admin")
    html = html_of(console.get(f"/computers/boundaries/{boundary.id}/edit"))
    assert "<!doctype html>" in html and "Edit boundary Seattle LAN" in html
    assert 'value="10.2.0.0/16"' in html and f'<option value="{dps["seattle"].id}" selected>' in html
    fragment = html_of(console.get(f"/computers/boundaries/{boundary.id}/edit", hx=True))
    assert fragment.lstrip().startswith('<section id="boundary-form">')
    listed = html_of(console.get("/computers/boundaries"))
    assert f'href="/computers/boundaries/{boundary.id}/edit"' in listed


def test_admin_changes_name_subnet_and_dp(login_as, dps):
    """Are a new name, subnet and DP saved (audited), and the list loaded again?"""
    boundary = make_boundary("10.2.0.0/16", dps["seattle"], name="Seattle LAN")
    console = login_as("admin")
    response = console.post(f"/computers/boundaries/{boundary.id}", {
        "name": "SLC LAN", "cidr": " 10.3.0.0/16 ", "dp_id": dps["slc"].id}, hx=True)
    assert response.headers["HX-Redirect"] == "/computers/boundaries"
    saved = db.session.get(Boundary, boundary.id)
    assert (saved.name, saved.cidr, saved.dp_id) == ("SLC LAN", "10.3.0.0/16", dps["slc"].id)
    event = db.session.query(AuditEvent).filter_by(action="boundary.update").one()
    assert event.details["cidr"] == "10.3.0.0/16" and event.details["dp_id"] == dps["slc"].id
    response = console.post(f"/computers/boundaries/{boundary.id}", {
        "name": "SLC LAN", "cidr": "2001:db8:1::/48", "dp_id": dps["slc"].id})
    assert response.status_code == 303
    assert db.session.get(Boundary, boundary.id).cidr == "2001:db8:1::/48"


@pytest.mark.parametrize("values, status, message", [
    ({"cidr": "10.2.7.1/16"}, 400, "did you mean 10.2.0.0/16?"),
    ({"cidr": "not a subnet"}, 400, "is not a subnet in CIDR form"),
    ({"cidr": "10.9.0.0/16"}, 409, "already has a boundary (Other)"),
    ({"name": ""}, 400, "boundary name"),
    ({"name": "bad\x07name"}, 400, "control characters"),
    ({"dp_id": "999999"}, 400, "no distribution point 999999"),
    ({"dp_id": "x"}, 400, "DP must be"),
])
def test_bad_values_are_refused_as_when_adding(login_as, dps, values, status, message):
    """Is each bad value refused with the message Add gives, the form kept, nothing changed?"""
    boundary = make_boundary("10.2.0.0/16", dps["seattle"], name="Seattle LAN")
    make_boundary("10.9.0.0/16", dps["slc"], name="Other")
    console = login_as("admin")
    data = {"name": "Seattle LAN", "cidr": "10.2.0.0/16", "dp_id": dps["seattle"].id, **values}
    response = console.post(f"/computers/boundaries/{boundary.id}", data, hx=True)
    assert response.status_code == status and message in html_of(response)
    assert html_of(response).lstrip().startswith('<section id="boundary-form">')
    saved = db.session.get(Boundary, boundary.id)
    assert (saved.name, saved.cidr, saved.dp_id) == ("Seattle LAN", "10.2.0.0/16", dps["seattle"].id)


@pytest.mark.parametrize("role", ["technician", "viewer"])
def test_other_roles_may_not_edit_boundaries(login_as, dps, role):
    """Are technicians and viewers refused (403) the Edit page and the save, and shown no Edit
    link?"""
    boundary = make_boundary("10.2.0.0/16", dps["seattle"], name="Seattle LAN")
    console = login_as(role)
    assert console.get(f"/computers/boundaries/{boundary.id}/edit").status_code == 403
    response = console.post(f"/computers/boundaries/{boundary.id}",
                            {"name": "x", "cidr": "10.4.0.0/16", "dp_id": dps["slc"].id})
    assert response.status_code == 403
    assert "/edit" not in html_of(console.get("/computers/boundaries"))
    assert db.session.get(Boundary, boundary.id).name == "Seattle LAN"


def test_edit_without_csrf_token_and_unknown_boundary(login_as, dps):
    """Is a save without its CSRF token a 400 (nothing changed), and an unknown boundary a 404?"""
    boundary = make_boundary("10.2.0.0/16", dps["seattle"], name="Seattle LAN")
    console = login_as("admin")
    response = console.client.post(f"/computers/boundaries/{boundary.id}", data={
        "name": "x", "cidr": "10.4.0.0/16", "dp_id": dps["slc"].id})
    assert response.status_code == 400
    assert db.session.get(Boundary, boundary.id).name == "Seattle LAN"
    assert console.get("/computers/boundaries/999999/edit").status_code == 404
    assert console.post("/computers/boundaries/999999", {"name": "x"}).status_code == 404
