"""A small demo organisation's content: a few MB of deterministic sample files in every library."""
import os
import random

DEMO_FILES = {
    "Images/Demo-Win11-23H2.wim": 3 * 1024 * 1024,
    "Images/Demo-Win10-22H2.wim": 2 * 1024 * 1024,
    "Reference Machines/Win11-Ref/machine.json": 0,
    "Reference Machines/Win11-Ref/disk/part-001.bin": 1024 * 1024,
    "Platform Packs/Dell-Latitude-7440/drivers/net.inf": 0,
    "Platform Packs/Dell-Latitude-7440/drivers/net.sys": 512 * 1024,
    "Platform Packs/HP-EliteBook-840-G10/drivers/audio.sys": 384 * 1024,
    "Application Packs/Office-365.zip": 1024 * 1024,
    "Application Packs/Chrome/install.cmd": 0,
    "Application Packs/Chrome/chrome.msi": 768 * 1024,
    "Answer Files/unattend-slc.xml": 0,
    "Answer Files/unattend-seattle.xml": 0,
    "Media/Win11-23H2-media/sources/boot.wim": 1024 * 1024,
    "Media/Win11-23H2-media/setup.exe": 256 * 1024,
}


def _text_for(path: str) -> bytes:
    name = os.path.basename(path)
    if name.endswith(".xml"):
        site = name.removeprefix("unattend-").removesuffix(".xml").upper()
        return (f'<?xml version="1.0" encoding="utf-8"?>\n<unattend xmlns="urn:schemas-microsoft-'
                f'com:unattend">\n  <!-- Depot demo answer file for {site} -->\n</unattend>\n').encode()
    if name.endswith(".json"):
        return b'{"name": "Win11-Ref", "os": "Windows 11 23H2", "captured_by": "Depot demo"}\n'
    if name.endswith(".cmd"):
        return b"msiexec /i chrome.msi /qn\r\n"
    return b"[Version]\r\nSignature=\"$WINDOWS NT$\"\r\n"


def seed_central(root: str) -> int:
    """Write the demo files that are not there yet; returns how many were written."""
    written = 0
    for rel, size in DEMO_FILES.items():
        path = os.path.join(root, rel)
        if os.path.exists(path):
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        data = random.Random(rel).randbytes(size) if size else _text_for(rel)
        tmp = path + ".partial"
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
        written += 1
    return written


# The demo organisation of SPEC's picture: HQ in Salt Lake City (central is its DP), a Seattle
# office with a DP node, people at home served by a cloud DP.
DEMO_GROUPS = (
    ("SLC office", "Headquarters; central is the office's DP."),
    ("Seattle office", "The branch office; its DP node first, central if it lacks a file."),
    ("Remote workers", "People at home; a cloud DP first, central if it lacks a file."),
)


def seed_groups(actor) -> list:
    """Create the demo's device groups that do not exist yet, each preferring the DP that fits
    it (a DP node for Seattle, a cloud DP for remote workers, when there is one) with central as
    the fallback; returns the groups created."""
    from sqlalchemy import select

    from portal.extensions import db
    from portal.models import DeviceGroup, DistributionPoint
    from portal.services import device_groups

    existing = set(db.session.scalars(select(DeviceGroup.name)))
    dps = db.session.scalars(select(DistributionPoint).order_by(DistributionPoint.id)).all()
    central = next(dp for dp in dps if dp.is_central)
    node = next((dp for dp in dps if dp.kind == "local"), None)
    cloud = next((dp for dp in dps if dp.kind == "cloud"), None)
    choices = {"SLC office": (central, []),
               "Seattle office": (node, [central.id]) if node else (central, []),
               "Remote workers": (cloud, [central.id]) if cloud else (central, [])}
    created = []
    for name, description in DEMO_GROUPS:
        if name in existing:
            continue
        preferred, fallbacks = choices[name]
        created.append(device_groups.create_group(actor, name, description, preferred.id, fallbacks))
    return created
