"""The layout's markup for people with any screen and any means of reading it: the skip link
first, the menu button, labelled progress bars in polite live regions, and a DP switcher that
does not reload pages which do not show the selected DP."""
import re
from html.parser import HTMLParser

import pytest

from portal.extensions import db
from portal.models import Deployment, User
from tests.factories import add_copy_job, add_device, add_dp

FOCUSABLE = {"a", "button", "input", "select", "textarea", "summary"}


class Elements(HTMLParser):
    """Every start tag of a page in order, as (tag, attributes)."""

    def __init__(self, html):
        super().__init__()
        self.tags = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def first_focusable(self):
        return next((tag, attrs) for tag, attrs in self.tags
                    if tag in FOCUSABLE and attrs.get("type") != "hidden"
                    and attrs.get("tabindex") != "-1" and (tag != "a" or "href" in attrs))

    def with_id(self, element_id):
        return next((tag, attrs) for tag, attrs in self.tags if attrs.get("id") == element_id)


def live_region_around(html, marker):
    """The attributes of the innermost element with aria-live that encloses `marker`."""
    before = html[:html.index(marker)]
    opened = [m for m in re.finditer(r'<(\w+)[^>]*aria-live="polite"[^>]*>', before)]
    assert opened, f"no live region before {marker!r}"
    return opened[-1].group(0)


@pytest.mark.parametrize("url", ["/", "/deployments/new", "/libraries/images", "/login"])
def test_the_skip_link_comes_first_and_targets_main(login_as, client, url):
    """Is 'Skip to content' the first thing the keyboard reaches, and does #content exist and
    take the focus?"""
    html = (client if url == "/login" else login_as("admin")).get(url).get_data(as_text=True)
    page = Elements(html)
    tag, attrs = page.first_focusable()
    assert (tag, attrs.get("href"), attrs.get("class")) == ("a", "#content", "skip-link")
    assert ">Skip to content</a>" in html
    assert page.with_id("content") == ("main", page.with_id("content")[1])
    assert page.with_id("content")[1]["tabindex"] == "-1"


def test_the_menu_button_controls_the_sidebar_and_noscript_shows_it(login_as):
    """Does the top bar's Menu button say what it opens (aria-controls, aria-expanded), and does
    a browser without JavaScript get the stylesheet that shows the sidebar instead?"""
    page = Elements(login_as("viewer").get("/").get_data(as_text=True))
    button = next(attrs for tag, attrs in page.tags if tag == "button" and "data-nav-toggle" in attrs)
    assert button["aria-expanded"] == "false" and button["type"] == "button"
    assert page.with_id(button["aria-controls"]) == ("nav", page.with_id("sidebar")[1])
    assert page.with_id("sidebar")[1]["aria-label"] == "Main"
    html = login_as("viewer").get("/").get_data(as_text=True)
    assert re.search(r'<noscript><link rel="stylesheet" href="/static/noscript\.css[^"]*"></noscript>', html)


def test_the_noscript_stylesheet_shows_the_sidebar_and_hides_the_button(client):
    """Without JavaScript is the sidebar always shown and the button (which could do nothing)
    hidden?"""
    with client.get("/static/noscript.css") as response:
        css = response.get_data(as_text=True)
    assert ".sidebar { display:flex !important; }" in css
    assert ".menu-button { display:none !important; }" in css


def test_progress_bars_say_what_they_measure_in_live_regions(app, login_as, central):
    """Does a running copy's bar read "Copying <asset> to <DP>: 42%", a deployment's
    "Deploying <image> to <device>", each inside a polite live region, and none just
    'progress'?"""
    seattle = add_dp("Seattle")
    add_copy_job(seattle, key="Images/Win11.wim", bytes_done=42, bytes_total=100)
    device = add_device("SEA-LT-1")
    db.session.add(Deployment(batch_id="b", device_id=device.id, device_name="SEA-LT-1",
                              dp_name="Seattle", image="Images/Win11.wim", state="pending"))
    db.session.commit()
    console = login_as("admin")
    copying = 'aria-label="Copying Images/Win11.wim to Seattle: 42%"'
    for url in ("/", "/jobs/", "/libraries/images"):
        html = console.get(url).get_data(as_text=True)
        assert copying in html, url
        assert 'aria-label="progress"' not in html
        assert 'aria-live="polite"' in live_region_around(html, copying)
    html = console.get("/deployments/").get_data(as_text=True)
    deploying = 'aria-label="Deploying Images/Win11.wim to SEA-LT-1: in progress"'
    assert deploying in html
    assert 'id="deployments-live"' in live_region_around(html, deploying)
    deployment = db.session.scalars(db.select(Deployment)).one()
    html = console.get(f"/deployments/{deployment.id}").get_data(as_text=True)
    assert 'aria-live="polite"' in live_region_around(html, deploying)


@pytest.mark.parametrize("kind, key, words", [
    ("rescan", None, "Rescanning Seattle"), ("verify", None, "Verifying Seattle"),
    ("delete", "Images/old.wim", "Deleting Images/old.wim from Seattle"),
    ("verify", "Images/a.wim", "Verifying Images/a.wim at Seattle")])
def test_each_kind_of_job_says_what_its_bar_measures(app, login_as, kind, key, words):
    """Does every kind of job label its bar with its verb, asset and DP?"""
    job = add_copy_job(add_dp("Seattle"), key=key)
    job.kind = kind
    db.session.commit()
    html = login_as("admin").get(f"/jobs/{job.id}").get_data(as_text=True)
    assert f'aria-label="{words}: in progress"' in html


def test_the_dp_switcher_posts_through_htmx_and_reloads_only_the_libraries(login_as, central):
    """Is the switcher an htmx form (no reload) with a noscript button, and is only a library
    page (which shows the selected DP) marked to be reloaded?"""
    console = login_as("admin")
    deploy = console.get("/deployments/new").get_data(as_text=True)
    switcher = re.search(r'<form class="dp-switcher"[^>]*>', deploy).group(0)
    assert 'hx-post="/distribution-points/select"' in switcher and 'hx-swap="none"' in switcher
    assert "data-dp-switcher" in switcher and 'action="/distribution-points/select"' in switcher
    assert '<noscript><button type="submit">Show</button></noscript>' in deploy
    assert "data-shows-selected-dp" not in deploy
    library = console.get("/libraries/images").get_data(as_text=True)
    assert re.search(r'<main id="content"[^>]*data-shows-selected-dp', library)


def test_an_htmx_switch_is_remembered_without_a_reload(login_as, central):
    """Does an htmx switch answer 204 with no refresh and remember the DP, while a plain post
    (no JavaScript) still goes back to the page it came from?"""
    seattle = add_dp("Seattle")
    console = login_as("admin")
    response = console.post("/distribution-points/select", {"dp_id": seattle.id}, hx=True)
    assert response.status_code == 204 and "HX-Refresh" not in response.headers
    assert response.get_data() == b""
    assert db.session.get(User, console.user.id).selected_dp_id == seattle.id
    response = console.post("/distribution-points/select", {"dp_id": central.id},
                            headers={"Referer": "http://localhost/deployments/new"})
    assert response.status_code == 303 and response.headers["Location"].endswith("/deployments/new")
    assert db.session.get(User, console.user.id).selected_dp_id == central.id


def test_an_htmx_switch_to_a_hidden_dp_is_refused_in_the_flash(login_as, central):
    """Is a viewer's htmx switch to a DP outside their sites refused into #flash (so depot.js
    puts the switcher back), the remembered DP unchanged?"""
    console = login_as("viewer", sites=["Seattle"])
    response = console.post("/distribution-points/select", {"dp_id": central.id}, hx=True)
    assert response.status_code == 404 and response.headers["HX-Retarget"] == "#flash"
    assert db.session.get(User, console.user.id).selected_dp_id is None
