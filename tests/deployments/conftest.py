"""Deployments: content at central and at the DP node Seattle, devices and groups inserted as
rows (the agent API enrolls them in production)."""
import pytest

from portal.extensions import db
from portal.models import Boundary, Device, DeviceGroup
from tests.conftest import copy_one
from tests.factories import write_file

IMAGE = "Images/Win11.wim"
PACK = "Platform Packs/Dell"


def make_device(name, *, ips=(), remote_ip=None, group=None, serial=None):
    """A device row as enrollment would leave it."""
    device = Device(name=name, serial=serial or f"SN-{name}", mac_addresses=[],
                    ip_addresses=list(ips), remote_ip=remote_ip,
                    group_id=group.id if group else None)
    db.session.add(device)
    db.session.commit()
    return device


def make_group(name, preferred=None, fallbacks=()):
    """A device group with a preferred DP and fallbacks (DP rows or None)."""
    group = DeviceGroup(name=name, preferred_dp_id=preferred.id if preferred else None,
                        fallback_dp_ids=[dp.id for dp in fallbacks])
    db.session.add(group)
    db.session.commit()
    return group


def make_boundary(cidr, dp, name=None):
    """A boundary row (cidr already normalised)."""
    boundary = Boundary(name=name or cidr, cidr=cidr, dp_id=dp.id)
    db.session.add(boundary)
    db.session.commit()
    return boundary


@pytest.fixture
def content(central, rescan):
    """An image and a Platform Pack folder at central, hashed."""
    write_file(central.root, IMAGE, b"wim image bytes " * 64)
    write_file(central.root, f"{PACK}/drivers/net.inf", b"[net]")
    write_file(central.root, f"{PACK}/drivers/net.sys", b"driver" * 100)
    rescan(central)
    return central


@pytest.fixture
def seattle_image(content, seattle, admin, work):
    """Seattle holds the image (current) but not the Platform Pack."""
    job = copy_one(admin, work, IMAGE, seattle)
    assert job.state == "succeeded", job.error
    db.session.expire_all()
    return seattle


@pytest.fixture
def seattle_all(seattle_image, admin, work):
    """Seattle holds the image and the Platform Pack, both current."""
    job = copy_one(admin, work, PACK, seattle_image)
    assert job.state == "succeeded", job.error
    db.session.expire_all()
    return seattle_image
