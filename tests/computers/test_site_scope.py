"""A viewer scoped to sites sees only their sites' devices, groups and boundaries (issue 13 item
10), in the API and the console; the rule (`services.computers`): a boundary is at its DP's site,
a group at its preferred DP's (else its first fallback's), a device at its group's."""
import pytest

from portal.services import boundaries, device_groups, devices
from tests.factories import add_device, make_boundary, make_group

SEATTLE, SLC = "Seattle", "SLC"


@pytest.fixture
def two_sites(dps):
    """Seattle and SLC, each with a group, a device and a boundary; one device in no group and a
    group whose only DP (a fallback) is at SLC."""
    sea_group = make_group("Seattle office", preferred=dps["seattle"])
    slc_group = make_group("SLC office", preferred=dps["slc"], fallbacks=[dps["seattle"]])
    slc_fallback_only = make_group("SLC spares", fallbacks=[dps["slc"], dps["seattle"]])
    return {
        "sea_group": sea_group, "slc_group": slc_group, "slc_spares": slc_fallback_only,
        "sea_device": add_device("SEA-LT-1", serial="SEA-SERIAL", macs=["3c:52:82:00:00:01"],
                                 ips=["10.2.0.5"], group=sea_group),
        "slc_device": add_device("SLC-LT-1", serial="SLC-SERIAL", macs=["3c:52:82:00:00:02"],
                                 ips=["10.9.0.5"], group=slc_group),
        "spare_device": add_device("SLC-SPARE", serial="SPARE-SERIAL", group=slc_fallback_only),
        "loose_device": add_device("LOOSE-1", serial="LOOSE-SERIAL", ips=["10.2.0.6"]),
        "sea_boundary": make_boundary("10.2.0.0/16", dps["seattle"], name="Seattle LAN"),
        "slc_boundary": make_boundary("10.9.0.0/16", dps["slc"], name="SLC LAN"),
    }


def test_api_lists_only_the_viewers_sites(api_as, two_sites):
    """Do /devices, /groups and /boundaries give a Seattle viewer Seattle's rows only, nothing of
    SLC's serials, MACs or addresses, not even by search?"""
    api = api_as("viewer", sites=[SEATTLE])
    listed = api.get("/api/v1/devices").get_json()
    assert [d["name"] for d in listed["items"]] == ["SEA-LT-1"] and listed["total"] == 1
    text = api.get("/api/v1/devices?per_page=100").get_data(as_text=True)
    for secret in ("SLC-SERIAL", "3c:52:82:00:00:02", "10.9.0.5", "LOOSE-SERIAL", "SPARE-SERIAL"):
        assert secret not in text
    assert api.get("/api/v1/devices?q=SLC-SERIAL").get_json()["total"] == 0
    slc_group = two_sites["slc_group"].id
    assert api.get(f"/api/v1/devices?group_id={slc_group}").get_json()["items"] == []
    assert api.get("/api/v1/devices?group_id=none").get_json()["items"] == []
    groups = api.get("/api/v1/groups").get_json()
    assert [g["name"] for g in groups["items"]] == ["Seattle office"]
    assert groups["ungrouped"] == 0 and groups["items"][0]["device_count"] == 1
    assert [b["cidr"] for b in api.get("/api/v1/boundaries").get_json()["items"]] == ["10.2.0.0/16"]


def test_api_by_id_is_404_for_other_sites(api_as, two_sites):
    """Is another site's device, group or boundary a 404 by id, as if it did not exist?"""
    api = api_as("viewer", sites=[SEATTLE])
    assert api.get(f"/api/v1/devices/{two_sites['sea_device'].id}").status_code == 200
    for path in (f"/api/v1/devices/{two_sites['slc_device'].id}",
                 f"/api/v1/devices/{two_sites['loose_device'].id}",
                 f"/api/v1/groups/{two_sites['slc_group'].id}",
                 f"/api/v1/groups/{two_sites['slc_spares'].id}",
                 f"/api/v1/boundaries/{two_sites['slc_boundary'].id}"):
        response = api.get(path)
        assert response.status_code == 404, path
        assert "SLC" not in response.get_data(as_text=True)
    assert api.get(f"/api/v1/groups/{two_sites['sea_group'].id}").status_code == 200
    assert api.get(f"/api/v1/boundaries/{two_sites['sea_boundary'].id}").status_code == 200


def test_fallback_only_group_is_at_its_first_fallbacks_site(api_as, two_sites):
    """Does a group with no preferred DP belong to its first fallback's site (SLC), and only
    that one, though Seattle is its second fallback?"""
    slc = api_as("viewer", sites=[SLC])
    names = [g["name"] for g in slc.get("/api/v1/groups").get_json()["items"]]
    assert names == ["SLC office", "SLC spares"]
    assert {d["name"] for d in slc.get("/api/v1/devices").get_json()["items"]} == \
        {"SLC-LT-1", "SLC-SPARE"}


@pytest.mark.parametrize("who", [("viewer", None), ("technician", None), ("admin", None),
                                 ("viewer", [SEATTLE, SLC])])
def test_unscoped_users_see_everything(api_as, two_sites, who):
    """Do admins, technicians, unscoped viewers (and one scoped to both sites, but for the device
    in no group) see every device, group and boundary?"""
    role, sites = who
    api = api_as(role, sites=sites)
    names = {d["name"] for d in api.get("/api/v1/devices").get_json()["items"]}
    everything = {"SEA-LT-1", "SLC-LT-1", "SLC-SPARE", "LOOSE-1"}
    assert names == (everything - {"LOOSE-1"} if sites else everything)
    assert len(api.get("/api/v1/groups").get_json()["items"]) == 3
    assert len(api.get("/api/v1/boundaries").get_json()["items"]) == 2
    assert api.get(f"/api/v1/devices/{two_sites['loose_device'].id}").status_code == \
        (404 if sites else 200)


def test_console_pages_show_only_the_viewers_sites(login_as, two_sites):
    """Do the console's devices, device, groups and boundaries pages keep SLC from a Seattle
    viewer (404 for SLC's device page)?"""
    console = login_as("viewer", sites=[SEATTLE])
    pages = {path: console.get(path) for path in
             ("/computers/", "/computers/groups", "/computers/boundaries",
              f"/computers/{two_sites['sea_device'].id}")}
    for path, page in pages.items():
        html = page.get_data(as_text=True)
        assert page.status_code == 200, path
        for other in ("SLC-SERIAL", "SLC-LT-1", "SLC office", "SLC LAN", "10.9.0.0/16",
                      "LOOSE-1"):
            assert other not in html, (path, other)
    assert "SEA-LT-1" in pages["/computers/"].get_data(as_text=True)
    assert "Seattle LAN" in pages["/computers/boundaries"].get_data(as_text=True)
    assert "Seattle office" in pages["/computers/groups"].get_data(as_text=True)
    assert console.get(f"/computers/{two_sites['slc_device'].id}").status_code == 404
    assert console.get("/computers/?q=SLC-SERIAL").get_data(as_text=True).count("SLC-LT-1") == 0


def test_services_without_a_user_see_everything(two_sites):
    """Do the services, asked without a user (the CLI, the system), still see every row?"""
    assert devices.list_devices()[1] == 4
    assert len(device_groups.list_groups()) == 3 and len(boundaries.list_boundaries()) == 2
    assert devices.get_device(two_sites["slc_device"].id).name == "SLC-LT-1"
    assert device_groups.device_counts()[None] == 1
