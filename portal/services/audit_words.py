"""The audit log in words: one sentence per action, with the ids an event names (DPs, groups,
devices, jobs) turned into today's names by one query per kind of thing for a whole page.

Events keep their raw details (what was true at the time); the sentence says it as a person
would, and a thing deleted since is named as such ("a deleted distribution point (#7)")."""
import json
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select

from portal.extensions import db
from portal.models import AuditEvent, Device, DeviceGroup, DistributionPoint, Job
from portal.services.audit_sentences import SENTENCES, and_list

# The "what" filter: an action prefix and what it covers, in words.
ACTION_KINDS = (
    ("auth.", "Sign-ins and two-step sign-in"),
    ("user.", "User accounts"),
    ("token.", "API tokens"),
    ("dp.", "Distribution points"),
    ("job.copy.", "Copies"),
    ("job.delete.", "Deletions from a DP"),
    ("job.rescan.", "Rescans"),
    ("job.verify.", "Verifications"),
    ("deployment.", "Deployments"),
    ("device.", "Devices and claims"),
    ("group.", "Device groups"),
    ("boundary.", "Boundaries"),
    ("enrollment_token.", "Enrollment tokens"),
)


@dataclass(frozen=True)
class AuditLine:
    """An event as the audit page shows it: the sentence, and its raw record for the curious."""

    event: AuditEvent
    sentence: str
    raw: str


class Names:
    """Today's names of the DPs, groups, devices and jobs some events refer to, fetched with one
    query per kind; a name that is gone reads "a deleted … (#id)"."""

    def __init__(self, events: Iterable[AuditEvent]):
        wanted: dict[str, set] = {"dp": set(), "group": set(), "device": set(), "job": set()}
        for e in events:
            d = e.details or {}
            for key in ("dp_id", "preferred_dp_id"):
                _add(wanted["dp"], d.get(key))
            for key in ("dp_ids", "fallback_dp_ids"):
                for value in d.get(key) or ():
                    _add(wanted["dp"], value)
            _add(wanted["group"], d.get("group_id"))
            _add(wanted["device"], d.get("device_id"))
            for value in d.get("device_ids") or ():
                _add(wanted["device"], value)
            if e.action.startswith("job.") and isinstance(e.target, str):
                wanted["job"].add(e.target)
        self.dps = _names(DistributionPoint.id, DistributionPoint.name, wanted["dp"])
        self.groups = _names(DeviceGroup.id, DeviceGroup.name, wanted["group"])
        self.devices = _names(Device.id, Device.name, wanted["device"])
        self.job_assets = _names(Job.id, Job.asset_key, wanted["job"])

    def dp(self, dp_id) -> str:
        if dp_id is None:
            return "no DP"
        return self.dps.get(dp_id) or f"a deleted distribution point (#{dp_id})"

    def dp_list(self, ids) -> str:
        return and_list([self.dp(i) for i in ids or ()]) or "none"

    def group(self, group_id) -> str:
        if group_id is None:
            return "no group"
        name = self.groups.get(group_id)
        return f"the group {name}" if name else f"a deleted group (#{group_id})"

    def device(self, device_id, fallback: str | None = None) -> str:
        return self.devices.get(device_id) or fallback or f"a forgotten device (#{device_id})"


def _add(found: set, value) -> None:
    if isinstance(value, int) and not isinstance(value, bool):
        found.add(value)


def _names(id_column, name_column, ids: set) -> dict:
    if not ids:
        return {}
    return dict(db.session.execute(select(id_column, name_column).where(id_column.in_(ids))).all())


def who(event: AuditEvent) -> str:
    """The actor as a person reads it: the email, or what "system" stood for."""
    if event.actor == "anonymous":
        return "Someone"
    if event.actor == "system":
        return {"cli": "An operator at the command line", "agent": "A device's agent"}.get(
            event.via, "Depot")
    return event.actor


def sentence(event: AuditEvent, names: Names) -> str:
    """The event as one sentence; an action without one of its own (added later) still reads."""
    w, d = who(event), event.details or {}
    plain = f"{w}: {event.action.replace('_', ' ')}" + (f" {event.target}" if event.target else "")
    say = SENTENCES.get(event.action)
    if say is None:
        return plain
    try:
        return say(event, w, d, names)
    except (KeyError, TypeError, ValueError, AttributeError):  # an older event's other shape
        return plain


def raw(event: AuditEvent) -> str:
    """The event's record as stored, for the Details disclosure."""
    record = {"action": event.action, "target": event.target, **(event.details or {})}
    return json.dumps(record, indent=2, sort_keys=False, default=str, ensure_ascii=False)


def compact(event: AuditEvent) -> str:
    """The event's details on one line (the CSV's last column)."""
    return json.dumps(event.details or {}, sort_keys=True, default=str, ensure_ascii=False)


def describe(events: list[AuditEvent]) -> list[AuditLine]:
    """The page's events in words (one query per kind of id they name, whatever their number)."""
    names = Names(events)
    return [AuditLine(e, sentence(e, names), raw(e)) for e in events]
