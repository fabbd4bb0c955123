"""Test data: users and tokens built through the services, so they are what the product itself
would make; devices, groups, boundaries, DP, inventory and job rows inserted as rows, as an
agent's enrollment, a form, a scan or a worker would leave them (the paths that create them are
tested elsewhere); files in content roots."""
import functools
import itertools
import os
import uuid
from datetime import timedelta
from unittest import mock

from werkzeug.security import generate_password_hash

from portal.extensions import db
from portal.models import (Boundary, Device, DeviceGroup, DistributionPoint, InventoryFile, Job,
                           utcnow)
from portal.services import accounts
from portal.services.actors import Actor

PASSWORD = "correct horse battery"
# What an agent says about its machine when it enrolls.
AGENT_FACTS = {"hostname": "pc-01", "serial": "SN-0001", "mac_addresses": ["52:54:00:aa:bb:01"],
               "ip_addresses": ["10.2.0.11"], "os": "Debian 13", "agent_version": "0.1.0"}
_seq = itertools.count(1)


@functools.cache
def _test_sized_hash(password: str) -> str:
    """A real scrypt hash with a test-sized work factor, made once per password: signing in as a
    factory's user still runs the real check_password_hash, in milliseconds instead of ~70 ms
    (the suite signs in hundreds of times). Users the product creates itself (init, Settings)
    keep the real work factor."""
    return generate_password_hash(password, method="scrypt:1024:8:1")


def make_user(role="admin", email=None, sites=None, password=PASSWORD):
    email = email or f"{role}{next(_seq)}@example.com"
    with mock.patch.object(accounts, "generate_password_hash", _test_sized_hash):
        return accounts.create_user(Actor(None, via="cli"), email, password, role, sites or [])


def make_token(user, name="tests"):
    _, secret = accounts.create_token(Actor(user, via="cli"), user, name)
    return secret


def write_file(root, rel, data=b"x", mtime_ns=None):
    """Write a file under a content root (creating folders); returns its path."""
    path = os.path.join(os.fsencode(root), os.fsencode(rel)) if isinstance(rel, bytes) \
        else os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def _saved(row):
    db.session.add(row)
    db.session.commit()
    return row


def add_device(name=None, serial=None, macs=None, ips=None, group=None, seen_ago=None,
               os_name="Windows 11 Pro 23H2", agent_version="1.0.0"):
    """A Device row with an agent's facts (generated unless given); seen_ago: seconds since its
    last heartbeat (None: never seen)."""
    n = next(_seq)
    return _saved(Device(
        name=name or f"PC-{n:04d}", serial=serial if serial is not None else f"SN{n:06d}",
        mac_addresses=macs if macs is not None else [f"00:11:22:33:44:{n % 256:02x}"],
        ip_addresses=ips if ips is not None else [f"10.0.0.{n % 250 + 1}"],
        os=os_name, agent_version=agent_version, group_id=group.id if group else None,
        token_hash=f"{n:064x}",
        last_seen_at=None if seen_ago is None else utcnow() - timedelta(seconds=seen_ago)))


def add_dp(name, site=None):
    """A DP node row (nothing listens; Computer Management only names DPs)."""
    return _saved(DistributionPoint(name=name, kind="local", site=site or name,
                                    url=f"http://127.0.0.1:9/{name}", allow_plain_http=True))


def make_device(name, *, ips=(), remote_ip=None, group=None, serial=None):
    """A device row for deployments: only its name, addresses and group."""
    return _saved(Device(name=name, serial=serial or f"SN-{name}", mac_addresses=[],
                         ip_addresses=list(ips), remote_ip=remote_ip,
                         group_id=group.id if group else None))


def make_group(name, preferred=None, fallbacks=()):
    """A device group with a preferred DP and fallbacks (DP rows or None)."""
    return _saved(DeviceGroup(name=name, preferred_dp_id=preferred.id if preferred else None,
                              fallback_dp_ids=[dp.id for dp in fallbacks]))


def make_boundary(cidr, dp, name=None):
    """A boundary row (cidr already normalised)."""
    return _saved(Boundary(name=name or cidr, cidr=cidr, dp_id=dp.id))


def add_cloud_dp(name, provider):
    """A cloud DP row of a provider (nothing is reached: the DP list only shows it)."""
    return _saved(DistributionPoint(name=name, kind="cloud", provider=provider, site=name))


def add_file(dp, path, size, sha256):
    """An inventory row: `dp` holds `path` (size, sha256; sha256 None: not hashed yet)."""
    return _saved(InventoryFile(dp_id=dp.id, path=path, size=size, mtime_ns=1, sha256=sha256))


def add_copy_job(dp, state="running", key="Images/Win11.wim", **fields):
    """A copy job row at a DP as a worker leaves it mid-run or at its end (bytes_done,
    bytes_total, bytes_sent, summary ...); nothing is enqueued."""
    return _saved(Job(id=str(uuid.uuid4()), kind="copy", queue="copies", dp_id=dp.id,
                      asset_key=key, state=state, attempts=1, warnings=[], **fields))
