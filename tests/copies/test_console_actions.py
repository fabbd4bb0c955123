"""Content actions in the console: Copy to…, Copy here / Repair, Delete, Verify, copy what is missing."""
import os

from portal.extensions import db
from portal.models import Job, Notification, User
from portal.services import distribution_points as dps
from portal.services import notifications
from tests.factories import write_file
from tests.helpers import status_at


def select_dp(console, dp):
    expected = 204 if console.hx_default else 303  # htmx: remembered without a reload
    assert console.post("/distribution-points/select", {"dp_id": dp.id}).status_code == expected


def test_images_page_offers_copy_to_for_admins_not_viewers(central, rescan, seattle, login_as):
    """Does the library page show ticks and a box per DP to copy to, as page and fragment, and
    nothing of the kind to a viewer?"""
    write_file(central.root, "Images/Win11.wim", b"w")
    rescan(central)
    admin = login_as("admin")
    page = admin.get("/libraries/images").get_data(as_text=True)
    assert 'id="copy-form"' in page and 'name="asset_keys" value="Images/Win11.wim"' in page
    assert f'type="checkbox" name="dp_ids" value="{seattle.id}" checked>' in page  # the only one
    assert "<select" not in page.split('id="copy-form"')[1].split("</form>")[0]
    assert "Verify Central" in page
    fragment = admin.get("/libraries/images", hx=True).get_data(as_text=True)
    assert fragment.startswith('<div id="assets"') and 'name="asset_keys"' in fragment
    viewer = login_as("viewer").get("/libraries/images").get_data(as_text=True)
    assert "copy-form" not in viewer and "asset_keys" not in viewer and "Delete" not in viewer


def test_copy_to_queues_one_job_per_asset_and_dp(central, rescan, seattle, node, hx_client, work,
                                                 login_as):
    """Does Copy to… start the copies, answer with their progress widgets under a note that
    follows them ("queued", then "done"), and end `current`?"""
    write_file(central.root, "Images/a.wim", b"a" * 1000)
    write_file(central.root, "Images/b.wim", b"b" * 1000)
    rescan(central)
    response = hx_client.post("/copies/", {"asset_keys": ["Images/a.wim", "Images/b.wim"],
                                           "dp_ids": [str(seattle.id)]})
    assert response.status_code == 200
    assert response.headers["HX-Trigger"] == "jobs-changed"
    html = response.get_data(as_text=True)
    assert "2 copies to Seattle queued" in html and html.count('class="job job-queued"') == 2
    assert "Copy to Seattle</strong>" in html and "waiting for a worker" in html
    ids = [job.id for job in db.session.query(Job).filter_by(kind="copy")]
    assert f"/copies/started?job={ids[0]}&amp;job={ids[1]}" in html or \
        f"/copies/started?job={ids[1]}&amp;job={ids[0]}" in html
    assert status_at(seattle, "Images/a.wim") == "copying"
    for user in db.session.query(User):  # a finished copy is routine news: asked for here
        notifications.choose_successes(user, True)
    work()
    note = hx_client.get("/copies/started", query_string=[("job", i) for i in ids])
    text = note.get_data(as_text=True)
    assert "2 copies to Seattle done" in text and "hx-get" not in text  # it stops polling
    told = {n.message.split(":")[0] for n in db.session.query(Notification)
            .filter_by(kind="copy.succeeded")}
    assert told == {"Copy to Seattle finished"}  # not "Copy of Seattle"
    scoped = login_as("viewer", sites=["Elsewhere"])
    hidden = scoped.get("/copies/started", query_string=[("job", i) for i in ids], hx=True)
    assert "nothing started" in hidden.get_data(as_text=True)  # jobs it may not see are not told
    assert status_at(seattle, "Images/a.wim") == status_at(seattle, "Images/b.wim") == "current"
    assert os.path.exists(node.file("Images/b.wim"))


def test_copy_to_without_ticks_or_targets_says_what_is_missing(central, rescan, seattle, hx_client):
    """Does Copy to without ticked assets, or without a DP, say what is missing and queue
    nothing?"""
    write_file(central.root, "Images/a.wim", b"a")
    rescan(central)
    nothing = hx_client.post("/copies/", {"dp_ids": [str(seattle.id)]})
    assert nothing.status_code == 400 and "tick the assets to copy first" in nothing.get_data(as_text=True)
    nowhere = hx_client.post("/copies/", {"asset_keys": ["Images/a.wim"]})
    assert nowhere.status_code == 400 and "choose at least one" in nowhere.get_data(as_text=True)
    assert db.session.query(Job).filter_by(kind="copy").count() == 0


def test_viewers_and_forms_without_csrf_are_refused(central, rescan, seattle, login_as):
    """Are a viewer's copy request (403) and a forged CSRF token (400) refused, with no copy
    queued?"""
    write_file(central.root, "Images/a.wim", b"a")
    rescan(central)
    viewer = login_as("viewer")
    refused = viewer.post("/copies/", {"asset_keys": ["Images/a.wim"], "dp_ids": [str(seattle.id)]},
                          hx=True)
    assert refused.status_code == 403
    admin = login_as("admin")
    admin.csrf = "forged"
    assert admin.post("/copies/", {"asset_keys": ["Images/a.wim"],
                                   "dp_ids": [str(seattle.id)]}).status_code == 400
    assert db.session.query(Job).filter_by(kind="copy").count() == 0


def test_rows_at_a_dp_offer_copy_here_repair_and_delete(central, rescan, seattle, node, hx_client,
                                                       work):
    """At Seattle, is a missing image offered 'Copy here', and a present one 'Delete from Seattle'?"""
    write_file(central.root, "Images/a.wim", b"a")
    write_file(node.root, "Images/hand.wim", b"h")
    rescan(central)
    rescan(seattle)
    select_dp(hx_client, seattle)
    page = hx_client.get("/libraries/images").get_data(as_text=True)
    assert "Copy here" in page and "Delete from Seattle" in page
    response = hx_client.post(f"/copies/delete/{seattle.id}", {"key": "Images/hand.wim"})
    assert response.status_code == 200 and "1 delete from Seattle queued" in \
        response.get_data(as_text=True) and "Delete from Seattle</strong> · Images/hand.wim" in \
        response.get_data(as_text=True)
    work()
    assert not os.path.exists(node.file("Images/hand.wim"))


def test_deleting_from_central_asks_twice(central, rescan, hx_client, work):
    """Is a delete from central refused until the prompt is answered with 'central'?"""
    write_file(central.root, "Images/orig.wim", b"o")
    rescan(central)
    page = hx_client.get("/libraries/images", headers={}).get_data(as_text=True)
    assert 'hx-prompt="Type central to delete the original"' in page
    once = hx_client.post(f"/copies/delete/{central.id}", {"key": "Images/orig.wim"})
    assert once.status_code == 409 and "confirm it a second time" in once.get_data(as_text=True)
    twice = hx_client.post(f"/copies/delete/{central.id}", {"key": "Images/orig.wim"},
                           headers={"HX-Prompt": "central"})
    assert twice.status_code == 200
    work()
    assert not os.path.exists(os.path.join(central.root, "Images/orig.wim"))


def test_copy_what_is_missing_then_verify_from_the_console(central, rescan, seattle, hx_client,
                                                           work):
    """Does Copy what is missing queue one copy per missing asset (and nothing once all are
    current), and Verify queue a verify that finds all intact?"""
    write_file(central.root, "Images/a.wim", b"a")
    write_file(central.root, "Media/m.iso", b"m")
    rescan(central)
    response = hx_client.post(f"/copies/missing/{seattle.id}")
    assert "2 copies to Seattle queued" in response.get_data(as_text=True)
    work()
    assert dps.status_counts([seattle.id])[seattle.id] == {"current": 2}
    again = hx_client.post(f"/copies/missing/{seattle.id}")
    assert "Nothing is missing or outdated at Seattle" in again.get_data(as_text=True)
    verify = hx_client.post(f"/copies/verify/{seattle.id}")
    assert "1 verify of Seattle queued" in verify.get_data(as_text=True)
    work()
    assert db.session.query(Job).filter_by(kind="verify").one().summary.endswith("all intact")


def test_a_whole_library_is_one_action(central, rescan, seattle, hx_client, api_as, work):
    """Does "the whole of Images" copy every image (console), and {library} do the same (API)?"""
    for name in ("a", "b", "c"):
        write_file(central.root, f"Images/{name}.wim", name.encode())
    write_file(central.root, "Media/m.iso", b"m")
    rescan(central)
    response = hx_client.post("/copies/", {"whole_library": "1", "library": "Images",
                                           "dp_ids": [str(seattle.id)]})
    assert "3 copies to Seattle queued" in response.get_data(as_text=True)
    again = api_as("technician").post("/api/v1/copies", json={"library": "Images",
                                                              "dp_ids": [seattle.id]})
    assert again.status_code == 202 and len(again.get_json()["jobs"]) == 3  # the same three jobs
    work()
    assert dps.status_counts([seattle.id])[seattle.id] == {"current": 3, "missing": 1}
    empty = api_as("admin").post("/api/v1/copies", json={"library": "Answer Files",
                                                         "dp_ids": [seattle.id]})
    assert empty.status_code == 400 and "Answer Files is empty at central" in empty.get_data(as_text=True)
    unknown = api_as("admin").post("/api/v1/copies", json={"library": "Games", "dp_ids": [seattle.id]})
    assert unknown.status_code == 400 and "library must be one of" in unknown.get_data(as_text=True)


def test_dp_list_offers_copy_what_is_missing(central, rescan, seattle, login_as):
    """Is "Copy what is missing or outdated" offered for a DP that lacks something, to those who
    may copy, and not once it has everything?"""
    write_file(central.root, "Images/a.wim", b"a")
    rescan(central)
    admin = login_as("admin")
    page = admin.get("/distribution-points/").get_data(as_text=True)
    assert f'action="/copies/missing/{seattle.id}"' in page and "Content status matrix" in page
    assert "/copies/missing/" not in login_as("viewer").get("/distribution-points/").get_data(as_text=True)
    admin.post(f"/copies/missing/{seattle.id}")
    assert "/copies/missing/" not in admin.get("/distribution-points/").get_data(as_text=True)  # copying
