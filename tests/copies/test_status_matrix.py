"""The status matrix: every asset's status at every DP, with filters and counts per DP."""
import re

from tests.factories import write_file


def cells(html: str) -> dict[str, list[str]]:
    """{asset key: [status at each DP column]} from the rendered matrix."""
    rows = re.findall(r'<tr data-key="([^"]+)">(.*?)</tr>', html, re.S)
    return {key: re.findall(r'class="badge status-[^"]+" data-dp="\d+">([^<]+)<', body)
            for key, body in rows}


def test_matrix_shows_every_asset_at_every_dp(central, rescan, seattle, node, login_as, work):
    """Are current, outdated, missing and only-here shown per DP, as page and as fragment?"""
    write_file(central.root, "Images/same.wim", b"same")
    write_file(central.root, "Images/newer.wim", b"new")
    write_file(central.root, "Media/tools.iso", b"tools")
    write_file(node.root, "Images/same.wim", b"same")
    write_file(node.root, "Images/newer.wim", b"old")
    write_file(node.root, "Images/hand.wim", b"by hand")
    rescan(central)
    rescan(seattle)
    viewer = login_as("viewer")
    page = viewer.get("/status/").get_data(as_text=True)
    assert cells(page) == {
        "Images/hand.wim": ["missing", "only-here"],
        "Images/newer.wim": ["current", "outdated"],
        "Images/same.wim": ["current", "current"],
        "Media/tools.iso": ["current", "missing"],
    }
    assert "1 only-here" in page and "1 outdated" in page and "1 missing" in page
    fragment = viewer.get("/status/?library=Images&status=outdated", hx=True).get_data(as_text=True)
    assert fragment.startswith('<div id="matrix"')
    assert list(cells(fragment)) == ["Images/newer.wim"]
    only_seattle = viewer.get(f"/status/?dp={seattle.id}").get_data(as_text=True)
    assert cells(only_seattle)["Media/tools.iso"] == ["missing"]


def test_matrix_ignores_unknown_filters(central, rescan, login_as):
    """Does the status matrix ignore unknown library and status filters, and show no column for
    an unknown DP?"""
    write_file(central.root, "Images/a.wim", b"a")
    rescan(central)
    page = login_as("viewer").get("/status/?library=Nope&status=weird&dp=abc").get_data(as_text=True)
    assert list(cells(page)) == []  # dp=abc matches no DP column...
    page = login_as("viewer").get("/status/?library=Nope&status=weird").get_data(as_text=True)
    assert list(cells(page)) == ["Images/a.wim"]  # ...while unknown library/status filter nothing
