"""Copy targets as people see them: a box per DP, those that cannot take copies now greyed with
why, and the server refusing them with a clear message whatever sent the request."""
import pytest

from portal.core.errors import Conflict
from portal.extensions import db
from portal.models import Job, utcnow
from portal.services import copies, notifications
from tests.factories import add_dp, make_user, write_file


@pytest.fixture
def dps(app):
    """Four DP rows: Austin online, Boston offline since 10:42 today, Denver disabled, Fresno
    needing reconnecting."""
    austin, boston, denver, fresno = (add_dp(name) for name in ("Austin", "Boston", "Denver",
                                                                "Fresno"))
    notifications.set_dp_status(boston, "offline", "does not answer")
    boston.status_changed_at = utcnow().replace(hour=10, minute=42)
    denver.disabled = True
    notifications.set_dp_status(fresno, "needs-auth", "the token was revoked")
    db.session.commit()
    return austin, boston, denver, fresno


def test_a_dp_going_offline_notes_since_when(app):
    """Does set_dp_status note when a DP's status changed, and only when it changed?"""
    dp = add_dp("Austin")
    assert dp.status_changed_at is None
    notifications.set_dp_status(dp, "offline", "does not answer")
    first = dp.status_changed_at
    assert first is not None
    notifications.set_dp_status(dp, "offline", "still does not answer")
    assert dp.status_changed_at == first


def test_copy_refusal_words(dps):
    """Does each DP that cannot take copies say why in a few words, and an online one nothing?"""
    austin, boston, denver, fresno = dps
    now = boston.status_changed_at.replace(hour=11)
    assert copies.copy_refusal(austin, now) is None
    assert copies.copy_refusal(boston, now) == "offline since 10:42 UTC"
    assert copies.copy_refusal(boston, now.replace(year=now.year + 1)).startswith(
        f"offline since {boston.status_changed_at:%Y-%m-%d} 10:42")
    assert copies.copy_refusal(denver, now) == "disabled"
    assert copies.copy_refusal(fresno, now) == "needs reconnecting"
    boston.status_changed_at = None
    assert copies.copy_refusal(boston, now) == "offline"


@pytest.mark.parametrize("name, message", [
    ("Boston", "Boston is offline since 10:42 UTC: copies to it are refused"),
    ("Denver", "Denver is disabled for maintenance: enable it again"),
    ("Fresno", "Fresno needs reconnecting before it takes copies"),
])
def test_copies_to_dps_that_cannot_take_them_are_refused(dps, central, rescan, admin, name,
                                                         message):
    """Is a copy to an offline, disabled or disconnected DP refused with why and what to do,
    with nothing queued (not even for the online DP asked in the same request)?"""
    write_file(central.root, "Images/a.wim", b"a")
    rescan(central)
    austin = dps[0]
    target = next(dp for dp in dps if dp.name == name)
    with pytest.raises(Conflict, match=message):
        copies.request_copies(admin, ["Images/a.wim"], [austin.id, target.id])
    assert db.session.query(Job).filter_by(kind="copy").count() == 0


def test_console_and_api_refuse_an_offline_target_clearly(dps, central, rescan, hx_client,
                                                          api_as):
    """Do the console (409 with the message) and the API (409, JSON) refuse a copy to an offline
    DP, and does Copy what is missing at it say the same?"""
    write_file(central.root, "Images/a.wim", b"a")
    rescan(central)
    boston = dps[1]
    refused = hx_client.post("/copies/", {"asset_keys": ["Images/a.wim"],
                                          "dp_ids": [str(boston.id)]})
    assert refused.status_code == 409
    assert "Boston is offline since 10:42 UTC" in refused.get_data(as_text=True)
    missing = hx_client.post(f"/copies/missing/{boston.id}")
    assert missing.status_code == 409 and "Boston is offline" in missing.get_data(as_text=True)
    api = api_as("technician").post("/api/v1/copies", json={"asset_keys": ["Images/a.wim"],
                                                            "dp_ids": [boston.id]})
    assert api.status_code == 409 and "Boston is offline" in api.get_json()["error"]["message"]
    assert db.session.query(Job).filter_by(kind="copy").count() == 0


def test_copy_form_greys_the_dps_that_cannot_take_copies(dps, central, rescan, login_as):
    """Does the copy form show one box per DP (no list box), the online one ticked as the only
    one that can, and the others disabled with the reason; and none to a viewer?"""
    write_file(central.root, "Images/a.wim", b"a")
    rescan(central)
    austin, boston, denver, fresno = dps
    page = login_as("admin").get("/libraries/images").get_data(as_text=True)
    form = page.split('id="copy-form"')[1].split("</form>")[0]
    assert "<select" not in form and "Central" not in form
    assert f'name="dp_ids" value="{austin.id}" checked>' in form
    for dp, why in ((boston, "offline since 10:42 UTC"), (denver, "disabled"),
                    (fresno, "needs reconnecting")):
        label = form.split(f'data-dp="{dp.name}"')[1].split("</label>")[0]
        assert f'value="{dp.id}" disabled>' in label and f"— {why}" in label
    assert copies.copy_targets(make_user("viewer")) == []
