"""Notifications that matter: failures and what needs someone for everyone, routine successes
only for who asks (Settings, Notifications); the bell's dropdown and Mark all read."""
import re
import uuid

from portal.extensions import db
from portal.models import Deployment, Notification
from portal.models.jobs import JOB_KINDS
from portal.services import notifications
from portal.services.job_runs import notify_finished
from tests import factories


def _told(user) -> list[str]:
    db.session.expire_all()
    return [n.kind for n in db.session.query(Notification).filter_by(user_id=user.id)
            .order_by(Notification.id)]


def test_every_kind_is_either_routine_or_needs_attention():
    """Is each job kind's success routine and its failure for everyone, and news of a DP, a
    deployment or a claim (and a kind no table names) never routine?"""
    for kind in JOB_KINDS:
        assert notifications.is_routine(f"{kind}.succeeded")
        assert not notifications.is_routine(f"{kind}.failed")
        assert f"{kind}.failed" in notifications.NEEDS_ATTENTION
    for kind in ("dp.offline", "dp.needs_auth", "dp.online", "deployment.failed",
                 "device.claim", "something.new"):
        assert not notifications.is_routine(kind)
    assert not set(notifications.ROUTINE) & set(notifications.NEEDS_ATTENTION)


def test_finished_copy_tells_only_who_asked(app, central):
    """Does a finished copy tell no one by default and the person who turned successes on, while
    a failed copy tells both?"""
    seattle = factories.add_dp("Seattle")
    quiet, keen = factories.make_user("admin"), factories.make_user("technician")
    assert not quiet.notify_successes  # off by default
    notifications.choose_successes(keen, True)
    notify_finished(factories.add_copy_job(seattle, state="succeeded"))
    db.session.commit()
    assert _told(quiet) == [] and _told(keen) == ["copy.succeeded"]
    notify_finished(factories.add_copy_job(seattle, state="failed", error="the disk is full"))
    db.session.commit()
    assert _told(quiet) == ["copy.failed"] and _told(keen) == ["copy.succeeded", "copy.failed"]


def test_settings_turn_successes_on_and_off(login_as):
    """Can a viewer turn routine successes on and off for themselves in Settings, with the page
    saying what always rings the bell, and is a post without its CSRF token refused?"""
    console = login_as("viewer")
    page = console.get("/settings/notifications").get_data(as_text=True)
    assert "A distribution point went offline" in page and "a copy finished" in page
    assert re.search(r'<input[^>]*name="successes"', page) and "checked" not in page
    response = console.post("/settings/notifications", {"successes": "y"}, hx=True)
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "Saved." in body and "checked" in body
    assert body.startswith('<section id="notification-choices"')
    db.session.refresh(console.user)
    assert console.user.notify_successes
    refused = console.client.post("/settings/notifications", data={})  # no CSRF token
    assert refused.status_code == 400
    db.session.refresh(console.user)
    assert console.user.notify_successes
    console.post("/settings/notifications", {})  # the box unticked
    db.session.refresh(console.user)
    assert not console.user.notify_successes
    assert "/settings/notifications" in console.get("/settings/password").get_data(as_text=True)


def test_bell_is_a_dropdown_loaded_with_htmx(login_as):
    """Is the bell a details dropdown with the unread count, its list loaded by htmx when it
    opens, and a plain link to every notification for a browser without script?"""
    console = login_as("admin")
    notifications.notify("dp.offline", "Seattle went offline: gone", level="error")
    db.session.commit()
    html = console.get("/").get_data(as_text=True)
    bell = re.search(r'<details id="bell".*?</details>', html, re.S).group(0)
    assert "data-dropdown" in bell and "<summary" in bell
    assert 'class="bell-count">1<' in bell
    assert 'hx-get="/notifications/menu"' in bell and 'href="/notifications/"' in bell
    count = console.get("/notifications/bell", hx=True).get_data(as_text=True)
    assert count.startswith('<span id="bell-unread"') and 'class="bell-count">1<' in count


def test_dropdown_lists_the_newest_with_links(login_as, central):
    """Does the dropdown list the newest eight, each linked to where it is dealt with (the
    deployment, the job, the claims, the DP's row, else the list), with Mark all read?"""
    console = login_as("admin")
    seattle = factories.add_dp("Seattle")
    job = factories.add_copy_job(seattle, state="failed", error="no")
    deployment = Deployment(batch_id=str(uuid.uuid4()), device_name="PC-9", dp_id=central.id,
                            dp_name=central.name, image="Images/Win11.wim", state="failed")
    db.session.add(deployment)
    db.session.commit()
    for n in range(5):
        notifications.notify("copy.failed", f"old news {n}", job_id=job.id)
    notifications.notify("copy.failed", "Copy of Seattle failed", job_id=job.id)
    notifications.notify("dp.offline", "Seattle went offline", dp_id=seattle.id)
    notifications.notify("device.claim", "A new enrollment claims to be PC-1")
    notifications.notify("deployment.failed", "Deployment failed", deployment_id=deployment.id)
    notifications.notify("something.new", "News of nothing in particular")
    db.session.commit()
    menu = console.get("/notifications/menu", hx=True).get_data(as_text=True)
    assert menu.count("<li") == 8 and "old news 1" not in menu and "old news 2" in menu
    assert f'href="/deployments/{deployment.id}"' in menu
    assert f'href="/jobs/{job.id}"' in menu
    assert f'href="/distribution-points/#dp-{seattle.id}"' in menu
    assert 'href="/computers/"' in menu and 'href="/notifications/"' in menu
    assert "Mark all read (10)" in menu and 'hx-swap="none"' in menu
    page = console.get("/notifications/").get_data(as_text=True)  # the full list links too
    assert page.count(f'href="/jobs/{job.id}"') == 6


def test_dropdown_with_nothing_to_tell(login_as):
    """Does an empty dropdown say so, with no Mark all read?"""
    menu = login_as("technician").get("/notifications/menu", hx=True).get_data(as_text=True)
    assert "Nothing to tell you yet." in menu and "Mark all read" not in menu


def test_mark_all_read_marks_only_mine_and_needs_csrf(login_as):
    """Does Mark all read need its CSRF token, mark only the caller's own notifications, and
    tell the page (bell-changed) so the count and the dropdown refresh?"""
    me, other = login_as("admin"), login_as("technician")
    notifications.notify("dp.offline", "Seattle went offline", level="error")
    db.session.commit()
    assert me.client.post("/notifications/read-all").status_code == 400  # no token
    assert notifications.unread_count(me.user.id) == 1
    response = me.post("/notifications/read-all", hx=True)
    assert response.headers["HX-Trigger"] == "bell-changed"
    assert notifications.unread_count(me.user.id) == 0
    assert notifications.unread_count(other.user.id) == 1
    assert "bell-count" not in me.get("/notifications/bell", hx=True).get_data(as_text=True)
    assert "Mark all read" not in me.get("/notifications/menu", hx=True).get_data(as_text=True)
    plain = other.post("/notifications/read-all")  # a form post without script
    assert plain.status_code == 303 and plain.headers["Location"].endswith("/notifications/")
    assert notifications.unread_count(other.user.id) == 0
