"""The dashboard's "is anything wrong?": each count and where its link leads, what a viewer
scoped to a site sees, and that the page costs the same few queries with many DPs."""
import re
import uuid
from datetime import timedelta

from sqlalchemy import event

from portal.extensions import db
from portal.models import Deployment, utcnow
from portal.services import attention
from tests import factories


def _set(dp, **fields):
    for name, value in fields.items():
        setattr(dp, name, value)
    db.session.commit()
    return dp


def _deployment(dp, state, hours_ago=1, device="PC-1"):
    """A deployment row from `dp` that ended (or started, while it runs) `hours_ago` hours ago."""
    when = utcnow() - timedelta(hours=hours_ago)
    row = Deployment(batch_id=str(uuid.uuid4()), device_name=device, dp_id=dp.id, dp_name=dp.name,
                     image="Images/Win11.wim", state=state, created_at=when,
                     finished_at=None if state in ("pending", "downloading") else when)
    db.session.add(row)
    db.session.commit()
    return row


def _section(html, element_id):
    """The markup of the element with that id (to the end of its line's element), or ''."""
    match = re.search(rf'<(\w+)[^>]*id="{element_id}".*?</\1>', html, re.S)
    return match.group(0) if match else ""


def test_all_healthy_in_one_line(login_as, central):
    """With only a healthy central and nothing else, does the dashboard say so in one line, with
    no device yet and a way to enroll one?"""
    html = login_as("admin").get("/").get_data(as_text=True)
    assert "All distribution points are healthy; nothing needs you." in html
    assert 'class="attention-list"' not in html
    devices = _section(html, "tile-devices")
    assert "No device has enrolled yet" in devices and "/settings/enrollment" in devices
    assert "0 running" in _section(html, "tile-deployments")


def test_offline_dp_said_plainly_with_a_link_to_fix_it(login_as, central):
    """Is an offline DP named in the attention list with its reason, linked to its edit page for
    an admin (its row for a technician), and does its card say its content cannot be confirmed?"""
    seattle = _set(factories.add_dp("Seattle"), status="offline",
                   status_reason="Seattle does not answer")
    html = login_as("admin").get("/").get_data(as_text=True)
    assert "1 distribution point needs attention" in html
    assert "All distribution points are healthy" not in html
    offline = _section(html, "attention-offline")
    assert f'href="/distribution-points/{seattle.id}/edit"' in offline
    assert "Seattle does not answer" in offline
    card = _section(html, f"dp-card-{seattle.id}")
    assert "dp-offline" in card and "Offline: Seattle does not answer." in card
    assert "cannot be confirmed" in card
    assert "cannot be confirmed" not in _section(html, f"dp-card-{central.id}")
    technician = login_as("technician").get("/").get_data(as_text=True)
    assert f'href="/distribution-points/#dp-{seattle.id}"' in _section(technician,
                                                                      "attention-offline")


def test_reconnect_disabled_and_low_space(login_as, central):
    """Are a cloud DP to reconnect, a disabled DP and a DP low on space each listed with their
    link, while a DP whose free space is unknown is not called low?"""
    remote = _set(factories.add_cloud_dp("Remote", "onedrive"), status="needs-auth",
                  status_reason="the token was revoked")
    spare = _set(factories.add_dp("Spare"), disabled=True)
    full = _set(factories.add_dp("Full"), free_bytes=5 * 2**30, total_bytes=100 * 2**30)
    unknown = factories.add_dp("Unknown")  # free_bytes None: never reported
    half = _set(factories.add_dp("Half"), free_bytes=10, total_bytes=None)  # total unknown
    html = login_as("admin").get("/").get_data(as_text=True)
    assert "3 distribution points need attention" in html
    assert f'href="/distribution-points/#dp-{remote.id}"' in _section(html, "attention-reconnect")
    assert f'href="/distribution-points/{spare.id}/edit"' in _section(html, "attention-disabled")
    space = _section(html, "attention-space")
    assert f'href="/status/?dp={full.id}"' in space and "5.0 GiB free of 100.0 GiB (5%)" in space
    assert "Unknown" not in space and "Half" not in space
    assert "Free space unknown" in _section(html, f"dp-card-{unknown.id}")
    assert "10 B free" in _section(html, f"dp-card-{half.id}")


def test_low_space_follows_the_setting(app, admin, central):
    """Does DEPOT_LOW_SPACE_PERCENT decide what is low, and free_percent stay None unknown?"""
    dp = _set(factories.add_dp("Seattle"), free_bytes=15, total_bytes=100)
    assert attention.free_percent(dp) == 15
    assert attention.free_percent(_set(factories.add_dp("Empty"), free_bytes=0,
                                       total_bytes=0)) is None
    [row] = attention.dp_rows(admin.user, [dp], {})
    assert not row["low_space"]
    app.config["DEPOT_LOW_SPACE_PERCENT"] = 20
    [row] = attention.dp_rows(admin.user, [dp], {})
    assert row["low_space"] and row["free_percent"] == 15


def test_devices_online_offline_and_never(login_as, app, central):
    """Are devices counted online, offline and never seen (claims aside), each count linking to
    Computer Management filtered by it?"""
    interval = app.config["DEPOT_AGENT_INTERVAL"]
    factories.add_device(seen_ago=1)
    known = factories.add_device(seen_ago=10 * interval)
    factories.add_device(seen_ago=None)
    claim = factories.add_device(seen_ago=1)
    _set(claim, claims_device_id=known.id)
    html = login_as("admin").get("/").get_data(as_text=True)
    tile = _section(html, "tile-devices")
    assert '<a href="/computers/?status=online">1 online</a>' in tile
    assert '<a href="/computers/?status=offline">1 offline</a>' in tile
    assert '<a href="/computers/?status=never">1 never seen</a>' in tile
    claims = _section(html, "attention-claims")
    assert "1 device claim waits for your decision" in claims and 'href="/computers/"' in claims
    assert 'id="attention-claims"' not in login_as("technician").get("/").get_data(as_text=True)


def test_deployments_running_and_failed_in_the_last_day(login_as, central):
    """Are running deployments and those failed in the last 24 hours counted, each recent
    failure linked, and older failures and successes left out?"""
    _deployment(central, "downloading", device="PC-run")
    failed = _deployment(central, "failed", hours_ago=2, device="PC-bad")
    _deployment(central, "failed", hours_ago=30, device="PC-old")
    _deployment(central, "succeeded", device="PC-ok")
    html = login_as("technician").get("/").get_data(as_text=True)
    tile = _section(html, "tile-deployments")
    assert "1 running" in tile and "1 failed in the last 24 h" in tile
    listed = _section(html, "attention-deployments")
    assert f'href="/deployments/{failed.id}"' in listed and "PC-bad" in listed
    assert "PC-old" not in listed and "PC-ok" not in listed
    assert "all failed deployments" not in listed
    for n in range(attention.FAILED_SHOWN):
        _deployment(central, "failed", device=f"PC-more-{n}")
    listed = _section(login_as("technician").get("/").get_data(as_text=True),
                      "attention-deployments")
    assert "6 deployments failed" in listed and listed.count('href="/deployments/') == 6
    assert 'href="/deployments/?state=failed">all failed deployments' in listed


def test_failing_copies_counted_until_a_copy_succeeds(login_as, central):
    """Is a failed copy counted with links to the matrix and the failed jobs, and no longer once
    a later copy of the same asset succeeded?"""
    seattle = factories.add_dp("Seattle")
    factories.add_copy_job(seattle, state="failed", error="the disk is full")
    html = login_as("admin").get("/").get_data(as_text=True)
    copies = _section(html, "attention-copies")
    assert "1 copy failing" in copies
    assert f'href="/status/?dp={seattle.id}&amp;status=failed"' in copies
    assert 'href="/jobs/?state=failed"' in copies
    factories.add_copy_job(seattle, state="succeeded")
    html = login_as("admin").get("/").get_data(as_text=True)
    assert 'id="attention-copies"' not in html
    assert "All distribution points are healthy; nothing needs you." in html


def test_viewer_sees_only_their_site(login_as, central):
    """Does a viewer scoped to Seattle see Seattle's trouble but not Denver's, nor its devices
    and deployments?"""
    seattle = factories.add_dp("Seattle")
    denver = _set(factories.add_dp("Denver"), status="offline", status_reason="gone")
    factories.add_device(seen_ago=1, group=factories.make_group("Denver office", denver))
    _deployment(denver, "failed")
    html = login_as("viewer", sites=["Seattle"]).get("/").get_data(as_text=True)
    assert "Denver" not in html and f'id="dp-card-{seattle.id}"' in html
    assert "All distribution points are healthy; nothing needs you." in html
    assert "No device has enrolled yet" in html and "0 failed in the last 24 h" in html


def test_fragment_and_few_queries_however_many_dps(login_as, central):
    """Is the dashboard's htmx fragment the overview alone, and does it take as many queries
    with twelve troubled DPs as with two (no query per DP)?"""
    console = login_as("admin")

    def queries():
        seen = []
        listener = lambda *args: seen.append(args[2])  # noqa: E731 (statement)
        event.listen(db.engine, "before_cursor_execute", listener)
        try:
            body = console.get("/", hx=True).get_data(as_text=True)
        finally:
            event.remove(db.engine, "before_cursor_execute", listener)
        assert body.startswith('<div id="overview"') and "<!doctype html>" not in body
        return len(seen)

    def troubled(n):
        dp = _set(factories.add_dp(f"DP{n}"), status="offline", free_bytes=1, total_bytes=100)
        factories.add_copy_job(dp, state="failed", error="no")
        _deployment(dp, "failed", device=f"PC-{n}")

    for n in range(2):
        troubled(n)
    few = queries()
    for n in range(2, 12):
        troubled(n)
    assert queries() == few, few


def test_branch_view_never_calls_an_offline_dp_current(login_as, central):
    """Does the branch view say an offline DP's content cannot be confirmed instead of the green
    "Everything central has is current here", and keep that line for an online DP?"""
    seattle = factories.add_dp("Seattle")
    viewer = login_as("viewer", sites=["Seattle"])
    html = viewer.get("/branch/?site=Seattle").get_data(as_text=True)
    assert "Everything central has is current here." in html and "cannot be confirmed" not in html
    _set(seattle, status="offline", status_reason="Seattle does not answer")
    html = viewer.get("/branch/?site=Seattle").get_data(as_text=True)
    assert "Everything central has is current here." not in html
    assert "What it holds cannot be confirmed while it is offline" in html
