"""What the console offers whom (services/overviews.py): the pages only show these decisions."""
import pytest

from portal.models import DistributionPoint, User
from portal.services.overviews import asset_offers, dp_offers, offers_copy_missing


def a_dp(kind="local", provider=None, disabled=False):
    return DistributionPoint(name="X", kind=kind, provider=provider, disabled=disabled)


def a_user(role):
    return User(email=f"{role}@example.com", role=role)


@pytest.mark.parametrize("role, dp, counts, offered", [
    ("admin", a_dp(), {"current": 2, "missing": 1}, True),
    ("technician", a_dp(), {"outdated": 1}, True),
    ("admin", a_dp(), {"failed": 1}, True),
    ("admin", a_dp(), {"current": 3, "only-here": 1, "copying": 1}, False),
    ("viewer", a_dp(), {"missing": 1}, False),
    ("admin", a_dp("central"), {"missing": 1}, False),
    ("admin", a_dp(disabled=True), {"missing": 1}, False),
])
def test_copy_what_is_missing_is_offered_only_where_it_helps(role, dp, counts, offered):
    """Is "Copy what is missing or outdated" offered to those who may copy, for a DP that is not
    central, not disabled, and lacks something?"""
    assert offers_copy_missing(a_user(role), dp, counts) is offered


def test_asset_rows_offer_copy_repair_deploy_and_delete_by_status_and_role():
    """Does an asset row offer Copy here for missing or outdated, Repair after a failed copy,
    Deploy for images central has, and Delete (asked twice at central) to admins only?"""
    admin, tech, viewer = a_user("admin"), a_user("technician"), a_user("viewer")
    node, central = a_dp(), a_dp("central")
    assert asset_offers(admin, node, "Images", "missing") == (True, True, "copy", None)
    assert asset_offers(admin, node, "Images", "failed") == (True, True, "repair", "dp")
    assert asset_offers(tech, node, "Drivers", "outdated") == (True, False, "copy", None)
    assert asset_offers(admin, node, "Images", "only-here") == (False, False, None, "dp")
    assert asset_offers(admin, central, "Images", "current") == (True, True, None, "central")
    assert asset_offers(viewer, node, "Images", "missing") == (True, False, None, None)
    assert asset_offers(admin, a_dp(disabled=True), "Images", "missing").copy is None


def test_dp_rows_offer_edit_reconnect_and_forget_to_admins():
    """Are Edit (DP nodes and cloud DPs), Reconnect (consent-page providers, not S3) and Forget offered to
    admins, never for central, and nothing to a technician?"""
    admin = a_user("admin")
    assert dp_offers(admin, a_dp(), {}) == (False, True, False, True)
    assert dp_offers(admin, a_dp("cloud", "onedrive"), {}) == (False, True, True, True)
    assert dp_offers(admin, a_dp("cloud", "s3"), {}) == (False, True, False, True)
    assert dp_offers(admin, a_dp("central"), {"missing": 1}) == (False, False, False, False)
    assert dp_offers(a_user("technician"), a_dp("cloud", "dropbox"), {"missing": 1}) == (
        True, False, False, False)
