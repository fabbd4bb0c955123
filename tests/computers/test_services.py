"""portal/services/devices.py: status, search and filters, rename/move/forget, groups, boundaries."""
from datetime import timedelta

import pytest

from portal.core.errors import Conflict, DepotError, NotFound, PermissionDenied
from portal.extensions import db
from portal.models import AuditEvent, Boundary, Deployment, Device, DeviceGroup, utcnow
from portal.services import boundaries, device_groups, devices, enrollment
from portal.services.actors import Actor
from tests import factories
from tests.factories import add_device


def actions():
    return [e.action for e in db.session.query(AuditEvent).order_by(AuditEvent.id)]


def add_deployment(device, state="succeeded", **kw):
    """A Deployment row for the device's history."""
    dep = Deployment(batch_id="b1", device_id=device.id, device_name=device.name, dp_name="Central",
                     image="Images/Win11.wim", state=state, **kw)
    db.session.add(dep)
    db.session.commit()
    return dep


def test_status_online_offline_never(app):
    """Is a device online within 3 heartbeat intervals, offline after, and 'never' when never seen?"""
    interval = app.config["DEPOT_AGENT_INTERVAL"]
    assert devices.device_status(add_device(seen_ago=interval * 3 - 5)) == "online"
    assert devices.device_status(add_device(seen_ago=interval * 3 + 5)) == "offline"
    assert devices.device_status(add_device(seen_ago=None)) == "never"


def test_search_by_name_serial_mac_and_ip(app):
    """Does the search find a device by part of its name, serial, MAC (either spelling) or IP?"""
    a = add_device("SEA-LT-0042", serial="5CG1234XYZ", macs=["3c:52:82:aa:bb:cc"], ips=["10.2.3.4"])
    b = add_device("SLC-DT-0007", serial="CZC9988", macs=["00:50:56:01:02:03"], ips=["10.1.9.9"])
    find = lambda q: [d.id for d in devices.list_devices(q)[0]]  # noqa: E731
    assert find("sea-lt") == [a.id]
    assert find("cg1234") == [a.id]
    assert find("3C:52:82") == [a.id] and find("3c-52-82-aa") == [a.id]
    assert find("10.1.9") == [b.id]
    assert find("nothing-like-this") == []
    assert find("%") == [] and find("_") == []  # wildcards are literal


def test_filters_by_group_no_group_and_status_with_pages(app):
    """Do the group ('none' too) and status filters combine, and pages split the list?"""
    seattle = device_groups.create_group(Actor(None), "Seattle office")
    in_group = [add_device(f"SEA-{i}", group=seattle, seen_ago=10) for i in range(3)]
    loose = add_device("LOOSE-1", seen_ago=None)
    old = add_device("OLD-1", group=seattle, seen_ago=86400)
    items, total = devices.list_devices(group_id=seattle.id)
    assert total == 4 and {d.id for d in items} == {d.id for d in in_group} | {old.id}
    assert [d.id for d in devices.list_devices(group_id="none")[0]] == [loose.id]
    assert [d.id for d in devices.list_devices(group_id=str(seattle.id), status="offline")[0]] == [old.id]
    assert [d.id for d in devices.list_devices(status="never")[0]] == [loose.id]
    assert devices.list_devices(status="online")[1] == 3
    page1, total = devices.list_devices(page=1, per_page=2)
    page3, _ = devices.list_devices(page=3, per_page=2)
    assert total == 5 and len(page1) == 2 and len(page3) == 1
    with pytest.raises(DepotError, match="status must be one of"):
        devices.list_devices(status="sleeping")
    with pytest.raises(DepotError, match="group_id must be"):
        devices.list_devices(group_id="seattle")


def test_update_device_renames_and_moves_and_refuses_unknown_fields(admin):
    """Can a device be renamed and moved (and back to no group), with unknown fields refused?"""
    group = device_groups.create_group(admin, "Remote workers")
    device = add_device("OLD-NAME")
    devices.update_device(admin, device, {"name": "  NEW-NAME ", "group_id": group.id})
    assert device.name == "NEW-NAME" and device.group_id == group.id
    devices.update_device(admin, device, {"group_id": None})
    assert device.group_id is None
    with pytest.raises(DepotError, match="unknown field.*serial"):
        devices.update_device(admin, device, {"serial": "X"})
    with pytest.raises(DepotError, match="no group 999"):
        devices.update_device(admin, device, {"group_id": 999})
    with pytest.raises(DepotError, match="control characters"):
        devices.update_device(admin, device, {"name": "bad\nname"})
    db.session.refresh(device)
    assert device.name == "NEW-NAME" and actions().count("device.update") == 2


def test_move_devices_is_all_or_nothing(admin):
    """Does a bulk move with an unknown id name it and move nothing; a good one move them all?"""
    group = device_groups.create_group(admin, "SLC office")
    a, b = add_device("A"), add_device("B")
    with pytest.raises(devices.UnknownDevices, match="no devices 998, 999; nothing was moved"):
        devices.move_devices(admin, [a.id, 999, b.id, 998], group.id)
    db.session.expire_all()
    assert a.group_id is None and b.group_id is None
    with pytest.raises(DepotError, match="at least one device"):
        devices.move_devices(admin, [], group.id)
    with pytest.raises(DepotError, match="no group 4242"):
        devices.move_devices(admin, [a.id], 4242)
    moved = devices.move_devices(admin, [b.id, a.id, a.id], group.id)
    assert [d.name for d in moved] == ["A", "B"] and {a.group_id, b.group_id} == {group.id}
    devices.move_devices(admin, [a.id], None)
    assert a.group_id is None and "device.move" in actions()


def test_forget_device_keeps_history_and_cancels_unfinished(admin):
    """Does forgetting a device drop it (token gone) while its deployments stay by name, the
    unfinished one cancelled?"""
    device = add_device("GONE-1")
    done = add_deployment(device, "succeeded")
    running = add_deployment(device, "downloading")
    devices.forget_device(admin, device)
    db.session.expire_all()
    assert db.session.query(Device).filter_by(name="GONE-1").count() == 0
    assert done.device_id is None and done.device_name == "GONE-1" and done.state == "succeeded"
    assert running.state == "cancelled" and "forgotten" in running.error and running.finished_at
    assert "device.forget" in actions()


def test_device_history_newest_first(admin):
    """Is a device's history its own deployments, newest first?"""
    device, other = add_device(), add_device()
    first = add_deployment(device, created_at=utcnow() - timedelta(hours=2))
    second = add_deployment(device, "failed", error="hash mismatch")
    add_deployment(other)
    assert [d.id for d in devices.device_history(device.id)] == [second.id, first.id]


def test_group_dps_are_checked(admin, dps):
    """Are unknown DPs, repeated fallbacks and the preferred DP among the fallbacks refused?"""
    sea, slc, central = dps["seattle"], dps["slc"], dps["central"]
    group = device_groups.create_group(admin, "Seattle office", "Floor 3", sea.id, [slc.id, central.id])
    assert group.preferred_dp_id == sea.id and group.fallback_dp_ids == [slc.id, central.id]
    assert device_groups.group_dps(group) == (sea, [slc, central])
    with pytest.raises(DepotError, match="no distribution point 999"):
        device_groups.create_group(admin, "X", preferred_dp_id=999)
    with pytest.raises(DepotError, match="no distribution point 998"):
        device_groups.create_group(admin, "X", fallback_dp_ids=[slc.id, 998])
    with pytest.raises(DepotError, match="only once.*SLC is repeated"):
        device_groups.create_group(admin, "X", fallback_dp_ids=[slc.id, slc.id])
    with pytest.raises(DepotError, match="Seattle is the preferred DP"):
        device_groups.create_group(admin, "X", preferred_dp_id=sea.id, fallback_dp_ids=[sea.id])
    with pytest.raises(DepotError, match="must be a list"):
        device_groups.create_group(admin, "X", fallback_dp_ids=str(slc.id))
    assert db.session.query(DeviceGroup).count() == 1


def test_group_names_unique_and_clean(admin):
    """Are empty, control-character and duplicate (any case) group names refused?"""
    device_groups.create_group(admin, "SLC office")
    with pytest.raises(Conflict, match="a group named SLC office already exists"):
        device_groups.create_group(admin, "slc OFFICE ")
    with pytest.raises(DepotError, match="must not be empty"):
        device_groups.create_group(admin, "   ")
    with pytest.raises(DepotError, match="control characters"):
        device_groups.create_group(admin, "a\tb")
    other = device_groups.create_group(admin, "Seattle office")
    with pytest.raises(Conflict):
        device_groups.update_group(admin, other, {"name": "SLC Office"})
    device_groups.update_group(admin, other, {"name": "seattle office"})  # its own name, new case
    assert other.name == "seattle office"


def test_update_group_dps_checked_together(admin, dps):
    """Does changing only the preferred DP check it against the fallbacks already stored?"""
    sea, slc = dps["seattle"], dps["slc"]
    group = device_groups.create_group(admin, "G", preferred_dp_id=sea.id, fallback_dp_ids=[slc.id])
    with pytest.raises(DepotError, match="SLC is the preferred DP"):
        device_groups.update_group(admin, group, {"preferred_dp_id": slc.id})
    device_groups.update_group(admin, group, {"preferred_dp_id": slc.id, "fallback_dp_ids": [sea.id]})
    assert (group.preferred_dp_id, group.fallback_dp_ids) == (slc.id, [sea.id])
    with pytest.raises(DepotError, match="unknown field.*colour"):
        device_groups.update_group(admin, group, {"colour": "red"})


def test_delete_group_leaves_devices_ungrouped(admin):
    """Does deleting a group keep its devices, in no group, and untie its enrollment tokens?"""
    group = device_groups.create_group(admin, "Temp")
    device = add_device(group=group)
    token, _ = enrollment.create_enrollment_token(admin, "t", 7, group.id)
    assert device_groups.device_counts() == {group.id: 1}
    assert device_groups.delete_group(admin, group) == 1
    db.session.expire_all()
    assert device.group_id is None and token.group_id is None
    assert device_groups.device_counts() == {None: 1}
    with pytest.raises(NotFound):
        device_groups.get_group(group.id)


@pytest.mark.parametrize("given, normal", [
    ("10.2.0.0/16", "10.2.0.0/16"), (" 192.168.1.0/24 ", "192.168.1.0/24"),
    ("2001:DB8:1::/48", "2001:db8:1::/48"), ("10.9.9.9", "10.9.9.9/32"),
])
def test_cidr_normalised(given, normal):
    """Are IPv4 and IPv6 subnets accepted and stored normalised?"""
    assert boundaries.clean_cidr(given) == normal


@pytest.mark.parametrize("given, message", [
    ("10.2.3.4/16", "10.2.3.4/16 has host bits set; the network is 10.2.0.0/16 (did you mean 10.2.0.0/16?)"),
    ("2001:db8::1/64", "did you mean 2001:db8::/64?"),
    ("10.2.0.0/33", "not a subnet in CIDR form"),
    ("seattle", "not a subnet in CIDR form"),
    ("", "give the subnet in CIDR form"),
    (None, "give the subnet in CIDR form"),
])
def test_bad_cidr_says_why(given, message):
    """Does a bad subnet get a clear message, naming the network meant when host bits are set?"""
    with pytest.raises(DepotError) as info:
        boundaries.clean_cidr(given)
    assert message in info.value.message


def test_boundaries_unique_and_dp_must_exist(admin, dps):
    """Is a boundary stored normalised, a second one for the same subnet and an unknown DP refused,
    and each change audited?"""
    boundary = boundaries.create_boundary(admin, "Seattle LAN", "10.2.0.0/16", dps["seattle"].id)
    with pytest.raises(Conflict, match="10.2.0.0/16 already has a boundary \\(Seattle LAN\\)"):
        boundaries.create_boundary(admin, "Again", "10.2.0.0/16", dps["slc"].id)
    with pytest.raises(DepotError, match="no distribution point 999"):
        boundaries.create_boundary(admin, "X", "10.3.0.0/16", 999)
    with pytest.raises(DepotError, match="host bits set"):
        boundaries.create_boundary(admin, "X", "10.3.0.1/16", dps["slc"].id)
    boundaries.update_boundary(admin, boundary, {"dp_id": dps["slc"].id, "cidr": "10.2.0.0/15"})
    assert (boundary.cidr, boundary.dp_id) == ("10.2.0.0/15", dps["slc"].id)
    boundaries.delete_boundary(admin, boundary)
    assert db.session.query(Boundary).count() == 0
    assert {"boundary.create", "boundary.update", "boundary.delete"} <= set(actions())


@pytest.mark.parametrize("role", ["technician", "viewer"])
def test_only_admins_change_computer_management(role, dps):
    """Are a technician's and a viewer's changes refused by the services themselves?"""
    actor = Actor(factories.make_user(role), via="api")
    device = add_device()
    with pytest.raises(PermissionDenied):
        device_groups.create_group(actor, "G")
    with pytest.raises(PermissionDenied):
        devices.move_devices(actor, [device.id], None)
    with pytest.raises(PermissionDenied):
        boundaries.create_boundary(actor, "B", "10.0.0.0/8", dps["central"].id)
    with pytest.raises(PermissionDenied):
        devices.forget_device(actor, device)
    with pytest.raises(PermissionDenied):
        enrollment.create_enrollment_token(actor, "t")
