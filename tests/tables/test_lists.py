"""Every other console list sorts by its columns, searches and pages through the one helper:
devices, groups, boundaries, a library's assets, notifications, users, distribution points."""
import re

import pytest

from portal.extensions import db
from portal.models import Notification
from tests.factories import add_device, add_dp, make_boundary, make_group, make_user


def order(html: str, pattern: str) -> list[str]:
    return re.findall(pattern, html)


BAD_ARGS = ("sort=password_hash&dir=sideways", "page=0", "page=-1", "page=abc",
            "page=" + "9" * 30, "q=%25", "q=_", "q=" + "x" * 500)


@pytest.mark.parametrize("url", ["/computers/", "/computers/groups", "/computers/boundaries",
                                 "/libraries/images", "/notifications/", "/settings/users",
                                 "/distribution-points/", "/jobs/", "/deployments/"])
def test_no_list_fails_on_bad_arguments(login_as, url):
    """Does every list answer a bad sort, direction, page or search with a page, not an error?"""
    console = login_as("admin")
    for args in BAD_ARGS:
        response = console.get(f"{url}?{args}")
        assert response.status_code == 200, (url, args)
        assert "table-pager" in response.get_data(as_text=True)


def test_devices_sort_page_and_keep_the_order_in_the_filter_form(login_as):
    """Do devices sort by a column both ways, page with counts, and does the filter form carry
    the order (so a search keeps it)?"""
    add_device("bravo", os_name="Windows 10")
    add_device("Alpha", os_name="Windows 11")
    add_device("charlie", os_name="Debian")
    console = login_as("viewer")
    names = r'href="/computers/\d+">([^<]+)</a>'
    plain = console.get("/computers/").get_data(as_text=True)
    assert order(plain, names) == ["Alpha", "bravo", "charlie"]
    by_os = console.get("/computers/?sort=os&dir=desc").get_data(as_text=True)
    # Windows 11, Windows 10, Debian
    assert order(by_os, names) == ["Alpha", "bravo", "charlie"]
    assert 'aria-sort="descending"' in by_os
    assert order(console.get("/computers/?sort=os").get_data(as_text=True), names) == [
        "charlie", "bravo", "Alpha"]
    assert '<input type="hidden" name="sort" value="os">' in by_os
    found = console.get("/computers/?q=ALP&sort=os", hx=True).get_data(as_text=True)
    assert order(found, names) == ["Alpha"] and "1 of 1" in found


def test_devices_pager_counts_and_select_all(login_as):
    """Does a long device list say "1–50 of 52" with a Next link, and offer select-all to admins?"""
    for i in range(52):
        add_device(f"pc-{i:03d}")
    html = login_as("admin").get("/computers/").get_data(as_text=True)
    assert "1–50 of 52" in html and 'href="/computers/?page=2"' in html
    assert 'data-select-all="device_id"' in html
    assert "51–52 of 52" in login_as("admin").get("/computers/?page=2").get_data(as_text=True)


def test_groups_and_boundaries_sort_and_search(login_as):
    """Do groups sort by device count and search by name, and boundaries sort by subnet in
    address order and search by DP?"""
    seattle, boise = add_dp("Seattle"), add_dp("Boise")
    big, small = make_group("Big office", preferred=seattle), make_group("small office")
    for _ in range(2):
        add_device(group=big)
    add_device(group=small)
    console = login_as("viewer")
    groups = r'<tr id="group-(\d+)">'
    by_count = console.get("/computers/groups?sort=devices").get_data(as_text=True)
    assert order(by_count, groups) == [str(small.id), str(big.id)]
    found = console.get("/computers/groups?q=SMALL", hx=True).get_data(as_text=True)
    assert found.startswith('<section id="groups">') and order(found, groups) == [str(small.id)]
    ten = make_boundary("10.10.0.0/16", seattle, name="a")
    two = make_boundary("10.2.0.0/16", boise, name="b")
    bounds = r'<tr id="boundary-(\d+)">'
    by_subnet = console.get("/computers/boundaries?sort=cidr").get_data(as_text=True)
    assert order(by_subnet, bounds) == [str(two.id), str(ten.id)]
    assert order(console.get("/computers/boundaries?q=boise").get_data(as_text=True),
                 bounds) == [str(two.id)]


def test_library_assets_sort_search_and_keep_them_when_refreshed(login_as, central_asset):
    """Do a library's assets sort by size, search by name, and does the table's refresh URL keep
    both?"""
    big = central_asset("Images/big.wim")
    big.size = 100
    central_asset("Images/small.wim")
    db.session.commit()
    console = login_as("viewer")
    keys = r'data-key="([^"]+)"'
    html = console.get("/libraries/images?sort=size&dir=desc").get_data(as_text=True)
    assert order(html, keys) == ["Images/big.wim", "Images/small.wim"]
    found = console.get("/libraries/images?q=SMA&sort=size", hx=True).get_data(as_text=True)
    assert order(found, keys) == ["Images/small.wim"]
    assert 'hx-get="/libraries/images?sort=size&amp;dir=asc&amp;q=SMA"' in found


def test_notifications_sort_search_and_mark_read_keeps_the_list(login_as):
    """Do notifications search by message and sort, and does Mark read answer the list as it
    was (its search kept)?"""
    console = login_as("viewer")
    for message, level in (("Copy to Seattle failed", "error"), ("Rescan of Boise done", "info")):
        db.session.add(Notification(user_id=console.user.id, kind="x", level=level,
                                    message=message))
    db.session.commit()
    rows = r'data-notification="(\d+)"'
    html = console.get("/notifications/?sort=level").get_data(as_text=True)
    first, second = order(html, rows)
    assert "Copy to Seattle failed" in html.split(f'data-notification="{second}"')[0]
    found = console.get("/notifications/?q=seattle", hx=True).get_data(as_text=True)
    assert order(found, rows) == [first]
    read_url = re.search(r'hx-post="(/notifications/\d+/read[^"]*)"', found).group(1)
    assert "q=seattle" in read_url
    after = console.post(read_url.replace("&amp;", "&"), hx=True).get_data(as_text=True)
    assert order(after, rows) == [first] and "Mark read" not in after


def test_users_sort_and_search(login_as):
    """Do users sort by role and search by email or site (admins only see the list)?"""
    admin = login_as("admin")
    make_user("viewer", email="zed@example.com", sites=["Seattle"])
    make_user("technician", email="amy@example.com")
    emails = r'<tr id="user-\d+"><td>([^<]+)</td>'
    by_role = admin.get("/settings/users?sort=role&dir=desc").get_data(as_text=True)
    assert order(by_role, emails)[0] == "zed@example.com"
    for q, found in (("seattle", ["zed@example.com"]), ("AMY", ["amy@example.com"])):
        assert order(admin.get(f"/settings/users?q={q}").get_data(as_text=True), emails) == found
    assert login_as("technician").get("/settings/users?q=x").status_code == 403


def test_distribution_points_sort_and_search(login_as):
    """Do distribution points sort by site and search by name, with the pager in the table the
    list refreshes?"""
    add_dp("Seattle", site="b-site")
    add_dp("Boise", site="a-site")
    console = login_as("viewer")
    names = r'<tr id="dp-\d+">\s*<td>([^<]+)<'
    by_site = console.get("/distribution-points/?sort=site").get_data(as_text=True)
    assert order(by_site, names) == ["Boise", "Seattle", "Central"]
    found = console.get("/distribution-points/?q=SEA", hx=True).get_data(as_text=True)
    assert found.startswith('<table id="dp-list"') and order(found, names) == ["Seattle"]
    assert "1 of 1" in found and 'hx-get="/distribution-points/?q=SEA"' in found
