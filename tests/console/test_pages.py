"""Console pages: full page or htmx fragment, the layout, the DP switcher, jobs widgets."""
import pytest

from portal.extensions import db
from portal.models import DistributionPoint, Job, User
from portal.services import distribution_points as dps
from tests.factories import write_file

PAGES = [
    ("/", 'id="overview"'),
    ("/distribution-points/", 'id="dp-list"'),
    ("/libraries/images", 'id="assets"'),
    ("/libraries/reference-machines", 'id="assets"'),
    ("/jobs/", 'id="job-list"'),
    ("/notifications/", 'id="notification-list"'),
    ("/settings/users", 'id="users"'),
    ("/settings/tokens", 'id="tokens"'),
    ("/settings/audit", 'id="audit"'),
]


@pytest.mark.parametrize("url, fragment_id", PAGES)
def test_each_page_is_only_its_fragment_for_htmx(login_as, url, fragment_id):
    """Is each page a full page normally and only its fragment for htmx, with Vary: HX-Request?"""
    console = login_as("admin")
    page = console.get(url)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert html.startswith("<!doctype html>") and fragment_id in html
    assert 'class="sidebar"' in html and 'id="dp-switcher"' in html and 'id="bell"' in html
    assert "htmx.min.js" in html and "X-CSRFToken" in html
    assert "HX-Request" in page.headers["Vary"]
    fragment = console.get(url, hx=True)
    body = fragment.get_data(as_text=True)
    assert fragment.status_code == 200 and "HX-Request" in fragment.headers["Vary"]
    assert fragment_id in body and "<!doctype html>" not in body and 'class="sidebar"' not in body


def test_boosted_and_history_restore_get_the_full_page(login_as):
    """Do boosted requests and history restores get the whole page (back button works)?"""
    console = login_as("admin")
    for extra in ({"HX-Boosted": "true"}, {"HX-History-Restore-Request": "true"}):
        html = console.get("/jobs/", hx=True, headers=extra).get_data(as_text=True)
        assert html.startswith("<!doctype html>")


def test_left_pane_lists_every_area(login_as):
    """Does the left pane link every area of the console?"""
    html = login_as("admin").get("/").get_data(as_text=True)
    for label in ["Dashboard", "Distribution Points", "Reference Machines", "Images", "Platform Packs",
                  "Application Packs", "Answer Files", "Media", "Computer Management",
                  "Deployments", "Jobs", "Settings"]:
        assert label in html


def test_signed_out_pages_redirect_to_login(client):
    """Is a signed-out visitor sent to the login page?"""
    response = client.get("/libraries/images")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_unknown_library_is_404(login_as):
    """Is a library that does not exist a 404 page saying so?"""
    response = login_as("viewer").get("/libraries/games")
    assert response.status_code == 404 and "no library" in response.get_data(as_text=True)


def test_library_page_shows_assets_of_the_selected_dp(login_as, central, work):
    """Does the Images page show size, short digest, modified time and status of each asset?"""
    write_file(central.root, "Images/Win11-23H2.wim", b"w" * 3 * 1024 * 1024)
    console = login_as("technician")
    response = console.post(f"/distribution-points/{central.id}/rescan", hx=True)
    assert 'class="job job-queued"' in response.get_data(as_text=True)
    work()
    html = console.get("/libraries/images", hx=True).get_data(as_text=True)
    asset = dps.content(central, "Images")[0]
    assert "Win11-23H2.wim" in html and "3.0 MiB" in html and asset["digest"][:12] in html
    assert "status-current" in html


def test_dp_switcher_is_remembered_per_user(login_as, central):
    """Does the DP a user picks stay picked across requests and sessions, for that user only?"""
    seattle = DistributionPoint(name="Seattle", kind="local", site="Seattle", url="https://sea")
    db.session.add(seattle)
    db.session.commit()
    console = login_as("viewer")
    response = console.post("/distribution-points/select", {"dp_id": seattle.id,
                                                             "csrf_token": console.csrf})
    assert response.status_code == 303
    assert db.session.get(User, console.user.id).selected_dp_id == seattle.id
    html = console.get("/libraries/images").get_data(as_text=True)
    assert "at Seattle" in html and f'<option value="{seattle.id}" selected' in html
    other = login_as("viewer")
    assert "at Central" in other.get("/libraries/images").get_data(as_text=True)


def test_dp_switcher_refuses_a_dp_the_viewer_cannot_see(login_as, central):
    """Can a viewer limited to Seattle not select central in the DP switcher?"""
    console = login_as("viewer", sites=["Seattle"])
    response = console.post("/distribution-points/select", {"dp_id": central.id})
    assert response.status_code == 404
    assert db.session.get(User, console.user.id).selected_dp_id is None


def test_job_widget_polls_only_while_running(login_as, central, work):
    """Does a job's fragment poll while queued, and stop polling (and fire jobs-changed) when done?"""
    console = login_as("admin")
    job, _ = dps.request_rescan(central, _actor(console.user))
    running = console.get(f"/jobs/{job.id}", hx=True)
    assert 'hx-trigger="every 1s"' in running.get_data(as_text=True)
    assert "HX-Trigger" not in running.headers
    work()
    finished = console.get(f"/jobs/{job.id}", hx=True)
    body = finished.get_data(as_text=True)
    assert "hx-trigger" not in body and 'data-state="succeeded"' in body
    assert finished.headers["HX-Trigger"] == "jobs-changed"
    full = console.get(f"/jobs/{job.id}").get_data(as_text=True)
    assert full.startswith("<!doctype html>") and job.id in full


def _actor(user):
    from portal.services.actors import Actor
    return Actor(user, via="console")


def test_cancel_button_cancels_a_queued_job(login_as, central):
    """Does the console's Cancel button cancel a queued job and show it cancelled?"""
    console = login_as("technician")
    job, _ = dps.request_rescan(central, _actor(console.user))
    response = console.post(f"/jobs/{job.id}/cancel", hx=True)
    assert 'data-state="cancelled"' in response.get_data(as_text=True)
    assert db.session.get(Job, job.id).state == "cancelled"


def test_dashboard_and_dp_list_show_counts(login_as, central, work):
    """After a rescan, do the dashboard and the DP list show the status counts?"""
    write_file(central.root, "Media/boot.iso", b"b")
    console = login_as("admin")
    console.post(f"/distribution-points/{central.id}/rescan", hx=True)
    work()
    for url in ("/", "/distribution-points/"):
        html = console.get(url).get_data(as_text=True)
        assert "1 current" in html
