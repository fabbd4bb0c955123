"""A small demo organisation's content: a few MB of sample files in every library, its WIM images
real ones (captured with wimlib-imagex where it is installed), and its device groups."""
import os
import random
import shutil
import subprocess
import tempfile

from portal.core.errors import DepotError

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


# The demo's WIM images: each captured from a small folder tree of its own (a few text files and
# a payload of random bytes, which makes the size), so that the agent can apply it.
WIM_IMAGES = {
    "Images/Demo-Win11-23H2.wim": "Windows 11 Pro 23H2 (Depot demo)",
    "Images/Demo-Win10-22H2.wim": "Windows 10 Pro 22H2 (Depot demo)",
    "Media/Win11-23H2-media/sources/boot.wim": "Windows PE boot image (Depot demo)",
}
WIM_MAGIC = b"MSWIM\0\0\0"
NO_WIMLIB = ("wimlib-imagex is not installed on this server, so the demo's .wim files are random "
             "bytes, not WIM images: a deployment of them fails when the agent applies the image. "
             "Install wimtools (Debian and Ubuntu: apt-get install wimtools) and run "
             "`flask --app wsgi demo seed` again; it replaces them with real images.")


def wimlib() -> str | None:
    """The path of wimlib-imagex, None where it is not installed."""
    return shutil.which("wimlib-imagex")


def is_wim(path: str) -> bool:
    """True when the file starts like a WIM image (its header's magic)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(len(WIM_MAGIC)) == WIM_MAGIC
    except OSError:
        return False


def _tree_for(rel: str, folder: str) -> None:
    """The small folder tree an image is captured from, different for every image."""
    title, size = WIM_IMAGES[rel], DEMO_FILES[rel]
    files = {
        "Windows/System32/depot-demo.txt": f"{title}\r\nCaptured by `demo seed` from {rel}.\r\n",
        "Windows/System32/drivers/etc/hosts": "127.0.0.1 localhost\r\n",
        "Users/Public/Desktop/Welcome.txt": f"Welcome to {title.split(' (')[0]}.\r\n",
    }
    for name, text in files.items():
        path = os.path.join(folder, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
    with open(os.path.join(folder, "Windows", "System32", "payload.bin"), "wb") as fh:
        fh.write(random.Random(rel).randbytes(size))


def capture_wim(rel: str, path: str, wimlib_path: str) -> None:
    """Capture the demo image `rel` into `path` with wimlib-imagex (uncompressed: the payload is
    random bytes anyway, and it is quicker); a DepotError with wimlib's words if it fails."""
    with tempfile.TemporaryDirectory(prefix="depot-demo-") as folder:
        tree = os.path.join(folder, "tree")
        _tree_for(rel, tree)
        done = subprocess.run([wimlib_path, "capture", tree, path, WIM_IMAGES[rel],
                               "--compress=none"], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        said = done.stdout.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise DepotError(f"wimlib-imagex could not capture the demo image {rel}: {said[0]}")


def seed_central(root: str, wimlib_path: str | None = None) -> int:
    """Write the demo files that are not there yet, the WIM images captured with wimlib-imagex
    when `wimlib_path` is given (a .wim left by a seed without it is replaced then); returns
    how many were written."""
    written = 0
    for rel, size in DEMO_FILES.items():
        path = os.path.join(root, rel)
        wim = rel in WIM_IMAGES and wimlib_path is not None
        if os.path.exists(path) and not (wim and not is_wim(path)):
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".partial"
        if wim:
            capture_wim(rel, tmp, wimlib_path)
        else:
            with open(tmp, "wb") as fh:
                fh.write(random.Random(rel).randbytes(size) if size else _text_for(rel))
        os.replace(tmp, path)
        written += 1
    return written


def tell_images_unusable(central_id: int) -> int:
    """Tell the people who see central that the demo images cannot be applied, and why (once
    per seed without wimlib-imagex); commits."""
    from portal.extensions import db
    from portal.services import notifications

    told = notifications.notify("demo.images_unusable", NO_WIMLIB, level="warning",
                                dp_id=central_id)
    db.session.commit()
    return told


# The demo organisation of SPEC's picture: HQ in Salt Lake City (central is its DP), a Seattle
# office with a DP node, people at home served by a cloud DP. Each group's description says what
# it prefers: the DP it wants when that exists at seed time, else central until it does.
DEMO_GROUPS = {
    "SLC office": (None, "Headquarters; central is the office's DP.", None),
    "Seattle office": (
        "local", "The branch office; its DP node first, central if it lacks a file.",
        "The branch office; central for now: add Seattle's DP node and run demo seed again "
        "to make it the group's first choice."),
    "Remote workers": (
        "cloud", "People at home; a cloud DP first, central if it lacks a file.",
        "People at home; central for now: add a cloud DP and run demo seed again to make it "
        "the group's first choice."),
}


def _wanted_dp(dps: list, kind: str | None, group_name: str):
    """The DP a demo group wants: of its kind, one named or sited like the group first."""
    if kind is None:
        return None
    mine = [dp for dp in dps if dp.kind == kind]
    word = group_name.split()[0].lower()
    return next((dp for dp in mine if word in f"{dp.name} {dp.site}".lower()),
                mine[0] if mine else None)


def seed_groups(actor) -> list:
    """Create the demo's device groups that do not exist yet, each preferring the DP its
    description names (a DP node for Seattle, a cloud DP for remote workers, central as the
    fallback) or central while that DP does not exist; a group seeded that way before is moved
    to its DP once it exists. Returns the groups created or changed."""
    from sqlalchemy import select

    from portal.extensions import db
    from portal.models import DeviceGroup, DistributionPoint
    from portal.services import device_groups

    existing = {g.name: g for g in db.session.scalars(select(DeviceGroup))}
    dps = db.session.scalars(select(DistributionPoint).order_by(DistributionPoint.id)).all()
    central = next(dp for dp in dps if dp.is_central)
    done = []
    for name, (kind, with_dp, for_now) in DEMO_GROUPS.items():
        wanted = _wanted_dp(dps, kind, name)
        if wanted is not None:
            choice = {"preferred_dp_id": wanted.id, "fallback_dp_ids": [central.id],
                      "description": with_dp}
        else:
            choice = {"preferred_dp_id": central.id, "fallback_dp_ids": [],
                      "description": for_now or with_dp}
        group = existing.get(name)
        if group is None:
            done.append(device_groups.create_group(
                actor, name, choice["description"], choice["preferred_dp_id"],
                choice["fallback_dp_ids"]))
        elif wanted is not None and for_now and group.description == for_now \
                and group.preferred_dp_id == central.id:
            done.append(device_groups.update_group(actor, group, choice))
    return done
