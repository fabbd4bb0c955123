"""Devices for Computer Management tests: rows inserted directly, as an agent's enrollment would
leave them (the agent API that creates them is tested elsewhere)."""
import itertools
from datetime import timedelta

import pytest

from portal.extensions import db
from portal.models import Device, DistributionPoint, utcnow

_seq = itertools.count(1)


def add_device(name=None, serial=None, macs=None, ips=None, group=None, seen_ago=None,
               os_name="Windows 11 Pro 23H2", agent_version="1.0.0"):
    """A Device row; seen_ago: seconds since its last heartbeat (None: never seen)."""
    n = next(_seq)
    device = Device(
        name=name or f"PC-{n:04d}", serial=serial if serial is not None else f"SN{n:06d}",
        mac_addresses=macs if macs is not None else [f"00:11:22:33:44:{n % 256:02x}"],
        ip_addresses=ips if ips is not None else [f"10.0.0.{n % 250 + 1}"],
        os=os_name, agent_version=agent_version, group_id=group.id if group else None,
        token_hash=f"{n:064x}",
        last_seen_at=None if seen_ago is None else utcnow() - timedelta(seconds=seen_ago))
    db.session.add(device)
    db.session.commit()
    return device


def add_dp(name, site=None):
    """A DP node row (nothing listens; Computer Management only names DPs)."""
    dp = DistributionPoint(name=name, kind="local", site=site or name,
                           url=f"http://127.0.0.1:9/{name}")
    db.session.add(dp)
    db.session.commit()
    return dp


@pytest.fixture
def dps(app, central):
    """Central plus two DP nodes: {'central', 'seattle', 'slc'}."""
    return {"central": central, "seattle": add_dp("Seattle"), "slc": add_dp("SLC")}
