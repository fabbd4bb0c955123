"""Distribution Points, Edit on a cloud DP: name, site, folder, maintenance, bandwidth cap and
copy hours, checked as when adding, without a new consent or keys."""
import pytest

from portal.extensions import db
from portal.models import AuditEvent, DistributionPoint, Job
from tests.factories import add_cloud_dp, add_copy_job


@pytest.fixture
def config_overrides(onedrive_config):
    return onedrive_config


def html_of(response) -> str:
    return response.get_data(as_text=True)


def form(dp, **values):
    data = {"name": dp.name, "site": dp.site, "folder": "Depot", "bandwidth_limit": "",
            "allowed_hours": ""}
    data.update(values)
    return data


def test_edit_page_and_fragment(login_as, make_s3_dp):
    """Is the Edit page filled from the DP (the S3 prefix tidy, the cap in MB/s, the known sites
    offered), a fragment for htmx, and linked from the list for cloud DPs?"""
    dp = make_s3_dp()
    dp.bandwidth_limit = 2_500_000
    db.session.commit()
    add_cloud_dp("Seattle OneDrive", "onedrive")
    console = login_as("admin")
    html = html_of(console.get(f"/distribution-points/{dp.id}/edit-cloud"))
    assert "<!doctype html>" in html and f"Edit {dp.name}" in html
    assert 'value="depot/hq"' in html and 'value="2.5"' in html
    assert "Prefix (folder in the bucket)" in html
    assert '<datalist id="known-sites"><option value="Cloud"><option value="HQ">' in html
    fragment = html_of(console.get(f"/distribution-points/{dp.id}/edit-cloud", hx=True))
    assert fragment.lstrip().startswith(f'<section id="dp-edit-{dp.id}">')
    listed = html_of(console.get("/distribution-points/"))
    assert f'href="/distribution-points/{dp.id}/edit-cloud"' in listed


def test_name_site_and_cap_saved_without_reaching_the_account(login_as):
    """Are a new name, site, bandwidth cap and copy hours of a OneDrive DP saved (audited) with
    no sign-in again (the row has no token: nothing reaches the account)?"""
    dp = add_cloud_dp("Seattle OneDrive", "onedrive")
    dp.settings = {"folder": "Depot"}
    db.session.commit()
    console = login_as("admin")
    response = console.post(f"/distribution-points/{dp.id}/edit-cloud", form(
        dp, name="SEA OneDrive", site="Seattle", bandwidth_limit="12.5", allowed_hours="22-6",
        disabled="y"), hx=True)
    assert response.headers["HX-Redirect"] == "/distribution-points/"
    saved = db.session.get(DistributionPoint, dp.id)
    assert (saved.name, saved.site, saved.bandwidth_limit, saved.allowed_hours, saved.disabled) == (
        "SEA OneDrive", "Seattle", 12_500_000, "22-06", True)
    event = db.session.query(AuditEvent).filter_by(action="dp.update").one()
    assert "folder" not in event.details["fields"] and "name" in event.details["fields"]
    assert db.session.query(Job).count() == 0


@pytest.mark.parametrize("values, status, message", [
    ({"name": ""}, 400, "name"),
    ({"name": "Taken"}, 409, "a distribution point named Taken already exists"),
    ({"site": "bad\x07site"}, 400, "control characters"),
    ({"bandwidth_limit": "fast"}, 400, "Not a valid decimal value"),
    ({"bandwidth_limit": "NaN"}, 400, "Not a valid decimal value"),
    ({"bandwidth_limit": "0.01"}, 400, "Number must be between 0.1 and 100000"),
    ({"bandwidth_limit": "1e9"}, 400, "Number must be between 0.1 and 100000"),
    ({"allowed_hours": "25-3"}, 400, "allowed hours must look like 22-6"),
    ({"folder": "IT/../Depot"}, 400, "folder must be a folder path"),
])
def test_bad_values_are_refused_as_when_adding(login_as, values, status, message):
    """Is each bad value refused with the form again saying why, and nothing changed?"""
    dp = add_cloud_dp("Seattle OneDrive", "onedrive")
    dp.settings = {"folder": "Depot"}
    db.session.commit()
    add_cloud_dp("Taken", "dropbox")
    console = login_as("admin")
    response = console.post(f"/distribution-points/{dp.id}/edit-cloud", form(dp, **values),
                            hx=True)
    assert response.status_code == status and message in html_of(response)
    saved = db.session.get(DistributionPoint, dp.id)
    assert (saved.name, saved.site, saved.settings) == ("Seattle OneDrive", "Seattle OneDrive",
                                                        {"folder": "Depot"})
    assert db.session.query(AuditEvent).filter_by(action="dp.update").count() == 0


@pytest.mark.parametrize("role", ["technician", "viewer"])
def test_other_roles_may_not_edit_cloud_dps(login_as, role):
    """Are technicians and viewers refused (403) the page and the save?"""
    dp = add_cloud_dp("Seattle OneDrive", "onedrive")
    console = login_as(role)
    assert console.get(f"/distribution-points/{dp.id}/edit-cloud").status_code == 403
    assert console.post(f"/distribution-points/{dp.id}/edit-cloud",
                        form(dp, name="x")).status_code == 403
    assert db.session.get(DistributionPoint, dp.id).name == "Seattle OneDrive"


def test_csrf_and_dps_that_are_not_cloud(login_as, central):
    """Is a save without its CSRF token a 400 (nothing changed), and central or an unknown DP a
    404 here?"""
    dp = add_cloud_dp("Seattle OneDrive", "onedrive")
    console = login_as("admin")
    response = console.client.post(f"/distribution-points/{dp.id}/edit-cloud",
                                    data=form(dp, name="x"))
    assert response.status_code == 400
    assert db.session.get(DistributionPoint, dp.id).name == "Seattle OneDrive"
    assert console.get(f"/distribution-points/{central.id}/edit-cloud").status_code == 404
    assert console.get("/distribution-points/999999/edit-cloud").status_code == 404


def test_s3_prefix_moves_after_a_probe_and_a_rescan_starts(login_as, make_s3_dp, s3_client):
    """Is a new S3 prefix reached with the stored keys (a probe written there), saved and the DP
    rescanned, with both folders in the audit entry?"""
    dp = make_s3_dp()
    console = login_as("admin")
    response = console.post(f"/distribution-points/{dp.id}/edit-cloud",
                            form(dp, folder="/depot//seattle/"))
    assert response.status_code == 303, html_of(response)
    assert db.session.get(DistributionPoint, dp.id).settings["prefix"] == "depot/seattle"
    assert db.session.query(Job).filter_by(kind="rescan", dp_id=dp.id).count() == 1
    event = db.session.query(AuditEvent).filter_by(action="dp.update").one()
    assert (event.details["folder"], event.details["previous_folder"]) == ("depot/seattle",
                                                                           "depot/hq")


def test_folder_stays_while_copies_run(login_as, make_s3_dp):
    """Is a new folder refused (409) while a copy to the DP runs, which would end in the old one?"""
    dp = make_s3_dp()
    add_copy_job(dp, state="running")
    console = login_as("admin")
    response = console.post(f"/distribution-points/{dp.id}/edit-cloud", form(dp, folder="other"),
                            hx=True)
    assert response.status_code == 409 and "let them finish or cancel them" in html_of(response)
    assert db.session.get(DistributionPoint, dp.id).settings["prefix"] == "/depot//hq/"


def test_onedrive_folder_moves_with_the_stored_sign_in(login_as, onedrive_dp, graph_fake):
    """Is a OneDrive DP's new folder created with its library folders through the stored token
    (no consent page), saved, and rescanned?"""
    dp = onedrive_dp("Seattle OneDrive")
    console = login_as("admin")
    response = console.post(f"/distribution-points/{dp.id}/edit-cloud", form(
        dp, folder="IT/Depot Seattle"))
    assert response.status_code == 303, html_of(response)
    assert db.session.get(DistributionPoint, dp.id).settings["folder"] == "IT/Depot Seattle"
    assert graph_fake.item("alice", "IT/Depot Seattle/Images") is not None
    assert db.session.query(Job).filter_by(kind="rescan", dp_id=dp.id).count() == 1
