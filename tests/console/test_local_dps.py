"""Local DPs in the console: add with a connection test, edit, forget; pages and fragments, CSRF,
roles, and bad input that changes nothing."""
import pytest

from portal.extensions import db
from portal.models import DistributionPoint, Job
from portal.services import dp_management, secrets
from portal.storage.answers import host_port
from tests.factories import write_file
from tests.helpers import csrf_from
from tests.node_fixtures import KEY

NEW = "/distribution-points/new-local"
LIST = "/distribution-points/"


def form_post(console, url, page_url, data):
    """Submit a page's form as a browser does: the CSRF token from the page's own form field."""
    token = csrf_from(console.get(page_url).get_data(as_text=True))
    return console.client.post(url, data=dict(data, csrf_token=token))


def dp_names():
    db.session.expire_all()
    return sorted(dp.name for dp in db.session.query(DistributionPoint))


def test_new_local_page_and_fragment(login_as):
    """Is the Add local form a full page normally and only the form for htmx, with CSRF and a test button?"""
    console = login_as("admin")
    page = console.get(NEW)
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and html.startswith("<!doctype html>")
    assert 'id="local-dp-form"' in html and 'class="sidebar"' in html
    for field in ('name="name"', 'name="url"', 'name="key"', 'type="password"', 'name="site"',
                  'name="csrf_token"'):
        assert field in html
    assert 'hx-post="/distribution-points/new-local/test"' in html and "Test connection" in html
    assert 'hx-target="#connection-result"' in html and 'id="connection-result"' in html
    assert "HX-Request" in page.headers["Vary"]
    fragment = console.get(NEW, hx=True)
    body = fragment.get_data(as_text=True)
    assert fragment.status_code == 200 and "HX-Request" in fragment.headers["Vary"]
    assert body.lstrip().startswith('<section id="local-dp-form">') and "<!doctype html>" not in body
    assert 'name="csrf_token"' in body


def test_list_offers_add_edit_and_forget_to_admins_only(login_as, seattle):
    """Do admins get Add local, Edit and Forget (with a confirmation), and others none of them?"""
    html = login_as("admin").get(LIST).get_data(as_text=True)
    assert f'href="{NEW}"' in html and "Add local</a>" in html
    assert seattle.url in html  # the URL under the name
    assert f'href="/distribution-points/{seattle.id}/edit"' in html
    assert f'hx-post="/distribution-points/{seattle.id}/delete"' in html
    assert 'hx-confirm="Forget Seattle?' in html
    for role in ("technician", "viewer"):
        html = login_as(role).get(LIST).get_data(as_text=True)
        assert f'href="{NEW}"' not in html
        assert '<button disabled title="Only admins add distribution points">Add local</button>' in html
        assert "/edit" not in html and "/delete" not in html and seattle.url in html


def test_test_connection_reports_version_and_space(login_as, node):
    """Does "Test connection" answer with the node's version and free space, saving nothing?"""
    console = login_as("admin")
    response = console.post(f"{NEW}/test", {"name": "Seattle", "url": node.url, "allow_plain_http": "y", "key": KEY},
                            hx=True)
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and body.lstrip().startswith('<div id="connection-result"')
    assert "Connected: version " in body and " free" in body and "<!doctype" not in body
    assert dp_names() == ["Central"] and db.session.query(Job).count() == 0


def test_test_connection_says_why_not(login_as, node, refused_url):
    """Does a wrong key or a URL where nothing listens give the reason in the result, saving nothing?"""
    console = login_as("admin")
    wrong = console.post(f"{NEW}/test", {"name": "Seattle", "url": node.url, "allow_plain_http": "y", "key": "w" * 20},
                         hx=True).get_data(as_text=True)
    assert "Seattle&#39;s DP node refused this key" in wrong and "Connected" not in wrong
    assert "answered HTTP 401 to Depot&#39;s key</pre></details>" in wrong  # the detail, disclosed
    down = console.post(f"{NEW}/test", {"name": "", "url": refused_url, "allow_plain_http": "y",
                                        "key": KEY}, hx=True).get_data(as_text=True)
    assert f"Depot could not connect to {host_port(refused_url)} (connection refused)" in down
    assert "<details class=\"error-detail\"><summary>Details</summary>" in down
    assert f"GET {refused_url}/dp/v1/health: ConnectionError" in down
    short = console.post(f"{NEW}/test", {"url": node.url, "allow_plain_http": "y", "key": "short"}, hx=True)
    assert "16 characters or more" in short.get_data(as_text=True)
    assert dp_names() == ["Central"]


def test_test_connection_without_htmx_shows_the_form_again(login_as, node):
    """Without JavaScript, does the test button's post give the whole form back with the result?"""
    console = login_as("admin")
    html = form_post(console, f"{NEW}/test", NEW, {"name": "Seattle", "url": node.url, "allow_plain_http": "y",
                                                   "key": KEY}).get_data(as_text=True)
    assert html.startswith("<!doctype html>") and 'id="local-dp-form"' in html
    assert "Connected: version" in html and f'value="{node.url}"' in html and KEY not in html


def test_add_local_with_the_form(login_as, node):
    """Does the form (with its CSRF token) add the DP, queue its first rescan and go to the list (303)?"""
    write_file(node.root, "Images/Branch.wim", b"branch")
    console = login_as("admin")
    response = form_post(console, NEW, NEW, {"name": "Seattle", "url": node.url + "/", "key": KEY, "allow_plain_http": "y",
                                             "site": "Seattle"})
    assert response.status_code == 303 and response.headers["Location"] == LIST
    dp = db.session.query(DistributionPoint).filter_by(name="Seattle").one()
    assert (dp.kind, dp.url, dp.site, dp.status) == ("local", node.url, "Seattle", "online")
    assert dp.secret != KEY and secrets.decrypt(dp.secret) == KEY
    assert db.session.query(Job).filter_by(dp_id=dp.id, kind="rescan").count() == 1
    html = console.get(LIST).get_data(as_text=True)
    assert "Seattle" in html and node.url in html and KEY not in html


def test_add_local_with_htmx_redirects_the_page(hx_client, node):
    """Does an htmx add answer with HX-Redirect to the list?"""
    response = hx_client.post(NEW, {"name": "Seattle", "url": node.url, "allow_plain_http": "y", "key": KEY, "site": ""})
    assert response.status_code == 200 and response.headers["HX-Redirect"] == LIST
    assert dp_names() == ["Central", "Seattle"]


def test_add_without_csrf_token_is_refused(login_as, node):
    """Is an add without the CSRF token refused (400) with nothing saved?"""
    console = login_as("admin")
    response = console.client.post(NEW, data={"name": "Seattle", "url": node.url, "allow_plain_http": "y", "key": KEY})
    assert response.status_code == 400 and "security token" in response.get_data(as_text=True)
    assert dp_names() == ["Central"]


def test_wrong_key_shows_the_message_and_saves_nothing(hx_client, node):
    """Does a wrong key re-render the form with the message and the entered values, but not the key?"""
    response = hx_client.post(NEW, {"name": "Seattle", "url": node.url, "allow_plain_http": "y",
                                    "key": "wrong-key-0123456789", "site": "Seattle office"})
    body = response.get_data(as_text=True)
    assert response.status_code == 400 and "HX-Redirect" not in response.headers
    assert body.lstrip().startswith('<section id="local-dp-form">')
    assert "Seattle&#39;s DP node refused this key" in body
    assert 'value="Seattle"' in body and f'value="{node.url}"' in body
    assert 'value="Seattle office"' in body and "wrong-key-0123456789" not in body
    assert dp_names() == ["Central"] and db.session.query(Job).count() == 0


@pytest.mark.parametrize("data, status, message", [
    ({"url": "ftp://x"}, 400, "url must look like https://"),
    ({"name": "Sea\x07ttle"}, 400, "name must not contain control characters"),
    ({"key": "short"}, 400, "16 characters or more"),
    ({"name": "Central"}, 409, "a distribution point named Central already exists"),
])
def test_bad_input_shows_the_message_and_saves_nothing(login_as, node, data, status, message):
    """Are a bad URL, a control character, a short key and a taken name each shown on the form?"""
    console = login_as("admin")
    fields = dict({"name": "Seattle", "url": node.url, "allow_plain_http": "y", "key": KEY, "site": ""}, **data)
    response = form_post(console, NEW, NEW, fields)
    html = response.get_data(as_text=True)
    assert response.status_code == status and html.startswith("<!doctype html>")
    assert message in html and 'id="local-dp-form"' in html and KEY not in html
    assert dp_names() == ["Central"]


def test_edit_page_and_fragment(login_as, admin, seattle):
    """Is the edit form a page and a fragment, filled from the DP, with the key left empty?"""
    dp_management.update_dp(admin, seattle, {"bandwidth_limit": 12_500_000,
                                                "allowed_hours": "22-6"})
    console = login_as("admin")
    url = f"/distribution-points/{seattle.id}/edit"
    page = console.get(url)
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and html.startswith("<!doctype html>")
    assert f'id="dp-edit-{seattle.id}"' in html and "Edit Seattle" in html
    assert f'value="{seattle.url}"' in html and 'value="12.5"' in html and 'value="22-06"' in html
    assert "Disable for maintenance" in html and 'name="csrf_token"' in html and KEY not in html
    fragment = console.get(url, hx=True).get_data(as_text=True)
    assert fragment.lstrip().startswith(f'<section id="dp-edit-{seattle.id}">')
    assert "<!doctype" not in fragment and "HX-Request" in console.get(url, hx=True).headers["Vary"]


def test_disable_for_maintenance_while_the_node_is_down(login_as, seattle, node):
    """Can an admin disable a DP whose node is down (no key or URL change, so no test) and see it?"""
    node.stop()
    console = login_as("admin")
    url = f"/distribution-points/{seattle.id}/edit"
    response = form_post(console, url, url, {"name": "Seattle", "site": "Seattle", "url": seattle.url, "allow_plain_http": "y",
                                             "key": "", "disabled": "y", "bandwidth_limit": "12.5",
                                             "allowed_hours": "22-6"})
    assert response.status_code == 303 and response.headers["Location"] == LIST
    dp = db.session.get(DistributionPoint, seattle.id)
    assert (dp.disabled, dp.bandwidth_limit, dp.allowed_hours) == (True, 12_500_000, "22-06")
    assert secrets.decrypt(dp.secret) == KEY
    html = console.get(LIST).get_data(as_text=True)
    assert '<span class="badge dp-disabled">disabled</span>' in html


def test_edit_with_htmx_redirects_and_clears_limits(hx_client, admin, seattle):
    """Does an htmx save answer with HX-Redirect, and empty fields clear the cap and the hours?"""
    dp_management.update_dp(admin, seattle, {"bandwidth_limit": 10_000_000, "allowed_hours": "1-5"})
    response = hx_client.post(f"/distribution-points/{seattle.id}/edit", {
        "name": "Seattle branch", "site": "Seattle", "url": seattle.url, "allow_plain_http": "y", "bandwidth_limit": "",
        "allowed_hours": ""})
    assert response.headers["HX-Redirect"] == LIST
    dp = db.session.get(DistributionPoint, seattle.id)
    assert (dp.name, dp.disabled, dp.bandwidth_limit, dp.allowed_hours) == (
        "Seattle branch", False, None, None)


@pytest.mark.parametrize("data, message", [
    ({"allowed_hours": "25-3"}, "allowed hours must look like 22-6"),
    ({"bandwidth_limit": "fast"}, "Bandwidth limit for copies (MB/s, empty: no limit): Not a valid decimal"),
    ({"bandwidth_limit": "0.01"}, "Number must be between 0.1 and 100000"),
    ({"bandwidth_limit": "sNaN"}, "Not a valid decimal"),  # its comparisons raise: was a 500
    ({"bandwidth_limit": "NaN"}, "Not a valid decimal"),
    ({"bandwidth_limit": "-Infinity"}, "Not a valid decimal"),
    ({"bandwidth_limit": "1e999999999"}, "Number must be between 0.1 and 100000"),
    ({"key": "another-key-0123456789"}, "Seattle&#39;s DP node refused this key"),
    ({"url": "http://127.0.0.1:1"}, "a new URL needs the node&#39;s key entered again"),
    ({"url": "http://127.0.0.1:1", "key": KEY},
     "Depot could not connect to 127.0.0.1:1 (connection refused)"),
    ({"name": "Central"}, "a distribution point named Central already exists"),
])
def test_edit_bad_input_changes_nothing(hx_client, seattle, data, message):
    """Are bad hours, a bad cap, a key or URL the node refuses, and a taken name shown, changing nothing?"""
    before = (seattle.name, seattle.url, seattle.secret, seattle.allowed_hours, seattle.bandwidth_limit)
    fields = dict({"name": "Seattle", "site": "Seattle", "url": seattle.url, "allow_plain_http": "y", "key": "",
                   "bandwidth_limit": "", "allowed_hours": ""}, **data)
    response = hx_client.post(f"/distribution-points/{seattle.id}/edit", fields)
    body = response.get_data(as_text=True)
    assert response.status_code >= 400 and "HX-Redirect" not in response.headers
    assert message in body and body.lstrip().startswith(f'<section id="dp-edit-{seattle.id}">')
    assert "another-key-0123456789" not in body
    db.session.expire_all()
    dp = db.session.get(DistributionPoint, seattle.id)
    assert (dp.name, dp.url, dp.secret, dp.allowed_hours, dp.bandwidth_limit) == before


def test_central_is_not_edited_here(login_as, central):
    """Is the edit page of the central DP a 404?"""
    assert login_as("admin").get(f"/distribution-points/{central.id}/edit").status_code == 404


def test_forget_removes_the_dp_and_leaves_the_files(hx_client, seattle, node, work):
    """Does Forget remove the DP from Depot while the node keeps its files?"""
    write_file(node.root, "Images/Branch.wim", b"branch")
    work()
    response = hx_client.post(f"/distribution-points/{seattle.id}/delete")
    assert response.status_code == 200 and response.headers["HX-Redirect"] == LIST
    assert dp_names() == ["Central"]
    with open(node.file("Images/Branch.wim"), "rb") as fh:
        assert fh.read() == b"branch"
    assert "Seattle" not in hx_client.get(LIST).get_data(as_text=True)


def test_forget_central_is_refused(login_as, central):
    """Is forgetting the central DP refused with a message?"""
    console = login_as("admin")
    response = console.post(f"/distribution-points/{central.id}/delete", hx=True)
    assert response.status_code == 409 and "cannot be deleted" in response.get_data(as_text=True)
    assert dp_names() == ["Central"]


@pytest.mark.parametrize("role", ["viewer", "technician"])
def test_others_get_403_and_nothing_changes(login_as, seattle, node, role):
    """Are every page and post of adding, testing, editing and forgetting a 403 for non-admins?"""
    console = login_as(role)
    edit = f"/distribution-points/{seattle.id}/edit"
    assert console.get(NEW).status_code == 403
    assert console.get(edit).status_code == 403
    fields = {"name": "Boise", "url": node.url, "allow_plain_http": "y", "key": KEY, "site": "Boise"}
    assert console.post(NEW, fields).status_code == 403
    assert console.post(f"{NEW}/test", fields).status_code == 403
    assert console.post(edit, {"name": "Hacked", "url": seattle.url, "allow_plain_http": "y", "disabled": "y"}).status_code == 403
    forget = console.post(f"/distribution-points/{seattle.id}/delete", hx=True)
    assert forget.status_code == 403 and forget.headers["HX-Retarget"] == "#flash"
    assert dp_names() == ["Central", "Seattle"]
    dp = db.session.get(DistributionPoint, seattle.id)
    assert (dp.name, dp.disabled) == ("Seattle", False)
