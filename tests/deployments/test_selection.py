"""Which DP a device downloads from: boundary, group preference, fallbacks, central; and why."""
from sqlalchemy import event, select

from portal.extensions import db
from portal.models import Asset, Device
from portal.services import copies
from portal.services.selection import Snapshot, choose_dp, eligibility
from tests.factories import make_boundary, make_device, make_group, write_file
from tests.node_fixtures import IMAGE, PACK

KEYS = [IMAGE]
BOTH = [IMAGE, PACK]


def test_boundary_beats_group_preference(central, seattle_image):
    """Does a device inside a boundary use the boundary's DP even though its group prefers another?"""
    group = make_group("Seattle office", preferred=central)
    make_boundary("10.2.0.0/16", seattle_image, "Seattle LAN")
    device = make_device("pc-1", ips=["10.2.3.4"], group=group)
    choice = choose_dp(device, KEYS)
    assert choice.dp.id == seattle_image.id
    assert choice.reason == "boundary 10.2.0.0/16 (Seattle LAN)"
    assert choice.skipped == []


def test_the_most_specific_boundary_wins(central, seattle_image):
    """Of two boundaries containing the address, is the narrower one used?"""
    make_boundary("10.0.0.0/8", central, "Whole company")
    make_boundary("10.2.0.0/16", seattle_image, "Seattle LAN")
    inside = make_device("pc-1", ips=["192.168.1.9", "10.2.3.4"])
    assert choose_dp(inside, KEYS).dp.id == seattle_image.id
    elsewhere = make_device("pc-2", ips=["10.9.0.1"])
    choice = choose_dp(elsewhere, KEYS)
    assert (choice.dp.id, choice.reason) == (central.id, "boundary 10.0.0.0/8 (Whole company)")


def test_the_request_address_is_matched_when_the_own_addresses_are_not(central, seattle_image):
    """Does the address a device's requests come from select a boundary too?"""
    make_boundary("203.0.113.0/24", seattle_image, "Seattle NAT")
    device = make_device("pc-1", ips=["192.168.1.9"], remote_ip="203.0.113.7")
    assert choose_dp(device, KEYS).reason == "boundary 203.0.113.0/24 (Seattle NAT)"


def test_a_public_request_address_comes_before_a_private_one(central, seattle_image):
    """Is a public request address (a branch's NAT) matched before a home network's 192.168.x?"""
    make_boundary("192.168.1.0/24", central, "HQ floor 1")
    make_boundary("81.2.69.0/24", seattle_image, "Seattle NAT")
    device = make_device("laptop", ips=["192.168.1.20"], remote_ip="81.2.69.160")
    assert choose_dp(device, KEYS).dp.id == seattle_image.id
    at_hq = make_device("desk", ips=["192.168.1.21"], remote_ip="10.0.0.1")
    assert choose_dp(at_hq, KEYS).reason == "boundary 192.168.1.0/24 (HQ floor 1)"


def test_an_ineligible_boundary_dp_is_skipped_for_the_next_rule(central, seattle_image):
    """If the boundary's DP lacks a file, is the group's preferred DP tried next, saying why?"""
    make_boundary("10.2.0.0/16", seattle_image, "Seattle LAN")
    group = make_group("Remote workers", preferred=central)
    device = make_device("pc-1", ips=["10.2.0.9"], group=group)
    choice = choose_dp(device, BOTH)
    assert (choice.dp.id, choice.reason) == (
        central.id, "preferred DP of group Remote workers: Seattle lacks Platform Packs/Dell")
    assert choice.skipped[0].rule == "boundary 10.2.0.0/16 (Seattle LAN)"


def test_group_preferred_dp_when_no_boundary_applies(central, seattle_image):
    """With no boundary, is the group's preferred DP used and named?"""
    group = make_group("Seattle office", preferred=seattle_image, fallbacks=[central])
    device = make_device("pc-1", ips=["172.16.0.5"], group=group)
    choice = choose_dp(device, KEYS)
    assert (choice.dp.id, choice.reason) == (seattle_image.id, "preferred DP of group Seattle office")


def test_fallback_when_the_preferred_dp_lacks_a_file(central, seattle_image):
    """If the preferred DP lacks the Platform Pack, is the first fallback used, saying why?"""
    group = make_group("Seattle office", preferred=seattle_image, fallbacks=[central])
    device = make_device("pc-1", group=group)
    choice = choose_dp(device, BOTH)
    assert choice.dp.id == central.id
    assert choice.reason == "fallback 1 of group Seattle office: Seattle lacks Platform Packs/Dell"
    [skipped] = choice.skipped
    assert skipped.rule == "preferred DP of group Seattle office"
    assert skipped.reasons == ["Platform Packs/Dell is missing at Seattle"]


def test_fallback_when_the_preferred_dp_is_outdated(central, seattle_image, rescan):
    """If central has a newer image than the preferred DP, is the DP skipped as outdated?"""
    write_file(central.root, IMAGE, b"a newer image")
    rescan(central)
    group = make_group("Seattle office", preferred=seattle_image, fallbacks=[central])
    choice = choose_dp(make_device("pc-1", group=group), KEYS)
    assert choice.dp.id == central.id
    assert choice.skipped[0].reasons == [
        "Images/Win11.wim is outdated at Seattle: central has a newer version"]


def test_fallback_when_the_preferred_dp_is_offline_or_disabled(central, seattle_image):
    """Is an offline DP, or one disabled for maintenance, skipped with that reason?"""
    group = make_group("Seattle office", preferred=seattle_image, fallbacks=[central])
    device = make_device("pc-1", group=group)
    seattle_image.status = "offline"
    db.session.commit()
    assert choose_dp(device, KEYS).skipped[0].reasons == ["Seattle is offline"]
    assert Snapshot(BOTH).copyable(seattle_image) == []  # no Copy now for a DP that is away
    seattle_image.status, seattle_image.disabled = "online", True
    db.session.commit()
    choice = choose_dp(device, KEYS)
    assert choice.dp.id == central.id
    assert choice.skipped[0].reasons == ["Seattle is disabled for maintenance"]


def test_central_comes_last_and_says_so(central, seattle_image):
    """With no boundary and no group, or every candidate skipped, is central chosen and why?"""
    alone = choose_dp(make_device("pc-1"), KEYS)
    assert (alone.dp.id, alone.reason) == (central.id, "central: no boundary or group DP applies")
    group = make_group("Seattle office", preferred=seattle_image)
    choice = choose_dp(make_device("pc-2", group=group), BOTH)
    assert (choice.dp.id, choice.reason) == (central.id, "central: Seattle lacks Platform Packs/Dell")


def test_nothing_eligible_gives_every_reason(central, seattle_image):
    """When central is disabled too, is no DP chosen, with each candidate's reasons?"""
    central.disabled = True
    db.session.commit()
    group = make_group("Seattle office", preferred=seattle_image)
    choice = choose_dp(make_device("pc-1", group=group), BOTH)
    assert choice.dp is None
    assert choice.reasons == ["Platform Packs/Dell is missing at Seattle",
                              "Central is disabled for maintenance"]


def test_a_running_copy_is_named_with_its_progress(central, content, seattle, admin):
    """Is an asset being copied to the DP reported as copying (with its percent), not missing?"""
    [job] = copies.request_copies(admin, [IMAGE], [seattle.id])
    assert eligibility(seattle, KEYS) == ["Images/Win11.wim: copying to Seattle (0%)"]
    assert Snapshot(KEYS).copyable(seattle) == []
    job.state, job.bytes_done, job.bytes_total = "running", 420, 1000
    db.session.commit()
    assert eligibility(seattle, KEYS) == ["Images/Win11.wim: copying to Seattle (42%)"]


def test_a_failed_copy_is_named_with_its_reason(central, content, seattle, admin):
    """Is the last copy's failure the reason, and may it be copied again?"""
    [job] = copies.request_copies(admin, [IMAGE], [seattle.id])
    job.state, job.error = "failed", "the DP's disk is full"
    db.session.commit()
    assert eligibility(seattle, KEYS) == [
        "Images/Win11.wim: the last copy to Seattle failed: the DP's disk is full"]
    assert Snapshot(KEYS).copyable(seattle) == [IMAGE]


def test_central_is_eligible_only_with_its_assets_hashed(central, content):
    """Does central serve what it holds hashed, and not an asset it does not have?"""
    assert eligibility(central, BOTH) == []
    assert eligibility(central, ["Images/nope.wim"]) == ["Images/nope.wim is not at central"]
    db.session.execute(db.update(Asset).where(Asset.key == IMAGE).values(digest=None))
    db.session.commit()
    assert eligibility(central, KEYS) == [
        "Images/Win11.wim is not hashed at central yet: rescan central"]


def test_choosing_for_many_devices_reads_once(app, central, seattle_image):
    """Does choosing for 200 devices run no more queries than choosing for 2?"""
    group = make_group("Seattle office", preferred=seattle_image, fallbacks=[central])
    make_boundary("10.2.0.0/16", seattle_image)
    for n in range(200):
        make_device(f"pc-{n}", ips=[f"10.{n % 4}.0.{n % 250 + 1}"], group=group)

    def queries(how_many):
        some = db.session.scalars(select(Device).order_by(Device.id).limit(how_many)).all()
        count = [0]

        def counting(*args):
            count[0] += 1
        event.listen(db.engine, "before_cursor_execute", counting)
        try:
            snapshot = Snapshot(BOTH)
            chosen = [snapshot.choose(d) for d in some]
        finally:
            event.remove(db.engine, "before_cursor_execute", counting)
        assert all(c.dp is not None for c in chosen)
        return count[0]
    assert queries(200) == queries(2)


def test_the_reason_names_everything_a_skipped_dp_lacks_at_once(central, content, seattle):
    """Does the chosen reason say "Seattle lacks A and B" rather than repeat Seattle per asset?"""
    group = make_group("Seattle office", preferred=seattle)
    choice = choose_dp(make_device("pc-1", group=group), BOTH)
    assert choice.reason == "central: Seattle lacks Images/Win11.wim and Platform Packs/Dell"


def test_an_ipv4_address_written_as_ipv6_matches_an_ipv4_boundary(central, seattle_image):
    """A server listening on IPv6 ([::]) sees IPv4 callers as ::ffff:10.2.3.4: does that address
    still fall in the boundary 10.2.0.0/16, and does a public one still come first?"""
    make_boundary("10.2.0.0/16", seattle_image, "Seattle LAN")
    device = make_device("pc-1", remote_ip="::ffff:10.2.3.4")
    assert choose_dp(device, KEYS).reason == "boundary 10.2.0.0/16 (Seattle LAN)"
    make_boundary("81.2.69.0/24", central, "HQ NAT")
    roaming = make_device("pc-2", ips=["10.2.3.5"], remote_ip="::ffff:81.2.69.160")
    assert choose_dp(roaming, KEYS).reason == "boundary 81.2.69.0/24 (HQ NAT)"
