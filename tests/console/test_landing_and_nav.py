"""Where people land after signing in, and the left pane's links: only those they may follow."""
import re

import pytest

from tests.factories import PASSWORD, add_dp, make_user
from tests.helpers import csrf_from

NAV = re.compile(r'<nav [^>]*class="sidebar"[^>]*>(.*?)</nav>', re.S)


def sign_in(app, user, next_=None):
    client = app.test_client()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    response = client.post("/login", query_string={"next": next_} if next_ else None,
                           data={"email": user.email, "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 303
    return client, response.headers["Location"]


def nav_links(client) -> list[str]:
    return re.findall(r'href="([^"]+)"', NAV.search(client.get("/").get_data(as_text=True))[1])


@pytest.mark.parametrize("role, landing", [("viewer", "/branch/"), ("technician", "/"),
                                           ("admin", "/")])
def test_viewers_land_on_the_branch_view(app, role, landing):
    """Does a viewer land on the branch view after signing in (also when sent to the front door,
    ?next=/, as the sign-in redirect does), and everyone else on the dashboard?"""
    _, location = sign_in(app, make_user(role))
    assert location == landing
    _, location = sign_in(app, make_user(role), next_="/")
    assert location == landing


def test_a_page_asked_for_still_comes_first(app):
    """Is a viewer sent on to the page they asked for (?next=/jobs/), not the branch view?"""
    _, location = sign_in(app, make_user("viewer"), next_="/jobs/")
    assert location == "/jobs/"


@pytest.mark.parametrize("role, sites", [("admin", []), ("technician", []), ("viewer", []),
                                         ("viewer", ["Seattle"])])
def test_every_link_of_the_pane_can_be_followed(app, role, sites):
    """Does every link of the left pane answer (no 403, no 404) for each role, a viewer scoped
    to a site included; and is the branch view offered to viewers only?"""
    add_dp("SEA", site="Seattle")
    client, _ = sign_in(app, make_user(role, sites=sites))
    links = nav_links(client)
    assert "/settings/" in links and "/libraries/images" in links
    assert ("/branch/" in links) == (role == "viewer")
    for link in links:
        response = client.get(link, follow_redirects=True)
        assert response.status_code == 200, (link, response.status_code)


def test_a_viewer_whose_site_has_no_dp_sees_no_dead_links(app):
    """Is a viewer scoped to a site without a DP (it was removed) shown neither the library
    links nor the branch view (both would answer 404), lands on the dashboard, and can follow
    every link shown?"""
    client, location = sign_in(app, make_user("viewer", sites=["Tacoma"]))
    assert location == "/"
    links = nav_links(client)
    assert not any(link.startswith("/libraries/") for link in links)
    assert "/branch/" not in links
    assert client.get("/libraries/images").status_code == 404  # what the link would have led to
    for link in links:
        assert client.get(link, follow_redirects=True).status_code == 200, link
