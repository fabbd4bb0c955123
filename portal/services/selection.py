"""Which DP a device downloads a deployment from, and why (SPEC 2).

The order: a boundary, then the device's group's preferred DP, then the group's fallbacks in
order, then central. Boundaries are matched address by address (a public request address first,
then the addresses the agent reports, then a private request address: see `_addresses_in_order`);
the first address inside any boundary decides, and among the boundaries containing it the most
specific wins. A candidate that cannot serve
every asset of the deployment (missing, outdated, still copying, failed, offline, disabled) is
skipped with its reasons and the next one is tried.

Everything is read once into a `Snapshot`, so choosing for a group of 500 devices runs the same
handful of queries as choosing for one.
"""
import ipaddress
from dataclasses import dataclass, field

from sqlalchemy import select

from portal.extensions import db
from portal.models import Asset, Boundary, DeviceGroup, DistributionPoint, Job
from portal.models.jobs import ACTIVE_STATES
from portal.services import distribution_points as dps
from portal.services.assets import central_dp


@dataclass
class Skipped:
    """A candidate that was passed over: which rule offered it and why it could not serve."""

    dp: DistributionPoint
    rule: str
    reasons: list[str]
    short: str  # "Seattle lacks Images/Win11.wim": what the chosen reason repeats


@dataclass
class Choice:
    """The DP a device will use (None when no DP can serve), why, and what was skipped."""

    dp: DistributionPoint | None
    reason: str
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def reasons(self) -> list[str]:
        """Every reason of every skipped candidate (what a 409 says when nothing is eligible)."""
        return [r for s in self.skipped for r in s.reasons]


class Snapshot:
    """DPs, boundaries, groups and the state of `keys` at every DP, read once per request."""

    def __init__(self, keys: list[str]):
        self.keys = list(dict.fromkeys(keys))
        self.central = central_dp()
        self.dps = {dp.id: dp for dp in db.session.scalars(select(DistributionPoint))}
        self.central_health = dps.health(self.central)
        self.central_digests = dict(db.session.execute(
            select(Asset.key, Asset.digest).where(Asset.dp_id == self.central.id,
                                                  Asset.key.in_(self.keys))).all())
        self.held = {(dp_id, key): (digest, status, reason) for dp_id, key, digest, status, reason
                     in db.session.execute(select(Asset.dp_id, Asset.key, Asset.digest,
                                                  Asset.status, Asset.status_reason)
                                           .where(Asset.key.in_(self.keys)))}
        self.jobs, self.percent = self._copy_jobs()
        boundaries = []
        for boundary in db.session.scalars(select(Boundary)):
            try:
                boundaries.append((ipaddress.ip_network(boundary.cidr, strict=False), boundary))
            except ValueError:
                continue  # stored normalised; a row that is not is simply never matched
        # Most specific first; equal prefixes in a stable order.
        self.boundaries = sorted(boundaries, key=lambda nb: (-nb[0].prefixlen, nb[1].cidr))
        self.groups = {g.id: g for g in db.session.scalars(select(DeviceGroup))}

    def _copy_jobs(self) -> tuple[dict, dict]:
        """What copy jobs say of these keys, as `distribution_points.job_statuses` says it
        (`copying` while the last one is queued or running, `failed` with its reason), read for
        these keys only; and the percent of each running copy."""
        latest = {}
        for dp_id, key, state, error, done, total in db.session.execute(
                select(Job.dp_id, Job.asset_key, Job.state, Job.error, Job.bytes_done,
                       Job.bytes_total)
                .where(Job.kind == "copy", Job.asset_key.in_(self.keys))
                .order_by(Job.created_at)):
            latest[(dp_id, key)] = (state, error, done, total)
        said, percent = {}, {}
        for pair, (state, error, done, total) in latest.items():
            if state in ACTIVE_STATES:
                said[pair] = ("copying", None)
                percent[pair] = min(100, int(done * 100 / total)) if total else 0
            elif state == "failed":
                said[pair] = ("failed", error)
        return said, percent

    def problems(self, dp: DistributionPoint) -> list[tuple[str, str]]:
        """(reason, short reason) pairs: why `dp` cannot serve the keys; empty when it can."""
        name = dp.name
        if dp.disabled:
            return [(f"{name} is disabled for maintenance", f"{name} is disabled")]
        status, why = self.central_health if dp.is_central else (dp.status, dp.status_reason)
        if status == "needs-auth":
            return [(f"{name} needs to be reconnected", f"{name} needs to be reconnected")]
        if status != "online":
            return [(f"{name} is offline" + (f" ({why})" if why else ""), f"{name} is offline")]
        found = []
        for key in self.keys:
            if key not in self.central_digests:
                found.append((f"{key} is not at central", f"{key} is not at central"))
            elif self.central_digests[key] is None:
                found.append((f"{key} is not hashed at central yet: rescan central",
                              f"{key} is not hashed at central"))
            elif not dp.is_central:
                problem = self._asset_problem(dp, key)
                if problem:
                    found.append(problem)
        return found

    def _asset_problem(self, dp: DistributionPoint, key: str) -> tuple[str, str] | None:
        """Why the DP's copy of `key` will not do (None when it has central's digest)."""
        name = dp.name
        digest, status, status_reason = self.held.get((dp.id, key), (None, "missing", None))
        if digest is not None and digest == self.central_digests[key]:
            return None
        said = self.jobs.get((dp.id, key))
        if said and said[0] == "copying":
            pct = self.percent.get((dp.id, key), 0)
            return (f"{key}: copying to {name} ({pct}%)", f"{name} is still copying {key} ({pct}%)")
        if said and said[0] == "failed":
            return (f"{key}: the last copy to {name} failed: {said[1] or 'no reason given'}",
                    f"the copy of {key} to {name} failed")
        if status == "missing":
            return f"{key} is missing at {name}", f"{name} lacks {key}"
        if digest is None:
            if status == "failed":
                return (f"{key} failed at {name}: {status_reason or 'damaged'}",
                        f"{key} is damaged at {name}")
            return (f"{key} is not verified at {name} yet (rescan {name})",
                    f"{key} is unverified at {name}")
        return (f"{key} is outdated at {name}: central has a newer version",
                f"{name} has an outdated {key}")

    def copyable(self, dp: DistributionPoint) -> list[str]:
        """The keys a copy would fix at `dp`: not central's version there, and not copying now
        (none while the DP is disabled or does not answer: a copy could not start)."""
        if dp.is_central or dp.disabled or dp.status != "online":
            return []
        return [key for key in self.keys if self.central_digests.get(key)
                and self.held.get((dp.id, key), (None,))[0] != self.central_digests[key]
                and (self.jobs.get((dp.id, key)) or ("",))[0] != "copying"]

    def eligibility(self, dp: DistributionPoint) -> list[str]:
        """Why `dp` cannot serve the keys (empty: it can)."""
        return [long for long, _ in self.problems(dp)]

    def candidates(self, device) -> list[tuple[DistributionPoint, str]]:
        """(DP, rule) in the order they are tried for the device, each DP once."""
        found = []
        for address in _addresses_in_order(device):
            matches = [(net, b) for net, b in self.boundaries
                       if net.version == address.version and address in net]
            for net, boundary in matches:
                found.append((boundary.dp_id, f"boundary {boundary.cidr} ({boundary.name})"))
        group = self.groups.get(device.group_id) if device.group_id else None
        if group is not None:
            if group.preferred_dp_id:
                found.append((group.preferred_dp_id, f"preferred DP of group {group.name}"))
            for n, dp_id in enumerate(group.fallback_dp_ids or [], start=1):
                found.append((dp_id, f"fallback {n} of group {group.name}"))
        seen, ordered = set(), []
        for dp_id, rule in found:
            dp = self.dps.get(dp_id)
            if dp is not None and dp.id not in seen:
                seen.add(dp.id)
                ordered.append((dp, rule))
        return ordered

    def choose(self, device) -> Choice:
        """The first candidate that can serve, else central, else nothing (with every reason)."""
        skipped = []
        candidates = self.candidates(device)
        tried = {dp.id for dp, _ in candidates}
        if self.central.id not in tried:
            rule = "central: no boundary or group DP applies" if not candidates else "central"
            candidates.append((self.central, rule))
        for dp, rule in candidates:
            problems = self.problems(dp)
            if not problems:
                reason = rule
                if skipped:
                    reason += ": " + "; ".join(s.short for s in skipped)
                return Choice(dp, reason[:500], skipped)
            skipped.append(Skipped(dp, rule, [p for p, _ in problems], _summary(dp, problems)))
        return Choice(None, "no distribution point can serve this deployment", skipped)


def _summary(dp: DistributionPoint, problems: list[tuple[str, str]]) -> str:
    """The short reasons of one skipped DP in one phrase: "Seattle lacks A, B and C; ..."."""
    lacks = f"{dp.name} lacks "
    lacking = [short[len(lacks):] for _, short in problems if short.startswith(lacks)]
    others = [short for _, short in problems if not short.startswith(lacks)]
    said = [lacks + (", ".join(lacking[:-1]) + " and " + lacking[-1] if len(lacking) > 1
                     else lacking[0])] if lacking else []
    return "; ".join(dict.fromkeys(said + others))


def _addresses_in_order(device) -> list:
    """The device's addresses in the order boundaries are matched: its own addresses, then the
    address its requests come from; but a public request address first (a branch's NAT address
    says more than a home network's 192.168.1.x, which many sites share)."""
    own = [_parse(a) for a in device.ip_addresses or []]
    own = [a for a in own if a is not None]
    remote = _parse(device.remote_ip) if device.remote_ip else None
    if remote is None:
        return own
    if remote.is_global:
        return [remote] + [a for a in own if a != remote]
    return own + ([remote] if remote not in own else [])


def _parse(text):
    """An address; an IPv4 one written as IPv6 (::ffff:10.2.3.4, what a server listening on [::]
    sees) as the IPv4 address it is, so IPv4 boundaries match it."""
    try:
        address = ipaddress.ip_address(str(text).split("%")[0].strip())
    except ValueError:
        return None
    return getattr(address, "ipv4_mapped", None) or address


def eligibility(dp: DistributionPoint, keys: list[str], snapshot: Snapshot | None = None) -> list[str]:
    """Why `dp` cannot serve a deployment of `keys` ("Images/Win11.wim is missing at Seattle",
    "Seattle is offline"); an empty list when it can."""
    return (snapshot or Snapshot(keys)).eligibility(dp)


def choose_dp(device, keys: list[str], snapshot: Snapshot | None = None) -> Choice:
    """The DP `device` will download `keys` from, the reason, and the candidates skipped. Pass one
    `snapshot` for many devices of the same deployment."""
    return (snapshot or Snapshot(keys)).choose(device)
