"""Rescans of the central DP through a real RQ worker on the real Redis."""
import hashlib
import os

import pytest
from sqlalchemy import select

from portal.core.libraries import LIBRARIES, ManifestEntry, manifest_digest
from portal.extensions import db
from portal.models import Asset, InventoryFile, Job
from portal.services import distribution_points as dps
from portal.storage.central import FilesystemStorage
from tests.factories import write_file


@pytest.fixture
def rescan(central, admin, work):
    """rescan() -> the finished job row of one rescan of central, run by a real worker."""
    def _rescan():
        job, _ = dps.request_rescan(central, admin)
        work()
        return db.session.get(Job, job.id)
    return _rescan


def assets(dp_id):
    return {a.key: a for a in db.session.scalars(select(Asset).where(Asset.dp_id == dp_id))}


def test_central_root_gets_the_six_libraries(central):
    """Does the central DP exist from the first start with its six library folders?"""
    assert central.kind == "central"
    assert sorted(os.listdir(central.root)) == sorted(LIBRARIES)


def test_first_scan_finds_files_and_folders(central, rescan):
    """Are file and folder assets found with size, digest covering every file, and status?"""
    wim = write_file(central.root, "Images/Win11-23H2.wim", b"W" * 5000)
    write_file(central.root, "Reference Machines/Win11-Ref/machine.json", b"{}")
    write_file(central.root, "Reference Machines/Win11-Ref/disk/part1.bin", b"D" * 300)
    write_file(central.root, "Other folder/ignored.txt", b"nope")
    write_file(central.root, "Images/.~lock.tmp", b"temp")
    job = rescan()
    assert job.state == "succeeded", job.error
    found = assets(central.id)
    assert set(found) == {"Images/Win11-23H2.wim", "Reference Machines/Win11-Ref"}
    image = found["Images/Win11-23H2.wim"]
    assert (image.kind, image.size, image.status) == ("file", 5000, "current")
    sha = hashlib.sha256(b"W" * 5000).hexdigest()
    assert image.digest == manifest_digest([ManifestEntry("Win11-23H2.wim", 5000, sha)])
    ref = found["Reference Machines/Win11-Ref"]
    assert (ref.kind, ref.size, ref.file_count) == ("folder", 302, 2)
    assert ref.digest == manifest_digest([
        ManifestEntry("machine.json", 2, hashlib.sha256(b"{}").hexdigest()),
        ManifestEntry("disk/part1.bin", 300, hashlib.sha256(b"D" * 300).hexdigest()),
    ])
    assert job.bytes_done == job.bytes_total == 5302
    assert os.path.exists(wim)  # nothing is ever deleted by a scan


def test_rescan_hashes_only_what_changed(central, rescan):
    """Does a second scan hash only files whose size or mtime changed, and drop removed ones?"""
    write_file(central.root, "Images/a.wim", b"a" * 100)
    write_file(central.root, "Images/b.wim", b"b" * 100)
    gone = write_file(central.root, "Media/old.iso", b"o")
    rescan()
    digest_before = assets(central.id)["Images/b.wim"].digest
    write_file(central.root, "Images/b.wim", b"B" * 150)
    os.remove(gone)
    job = rescan()
    assert job.state == "succeeded"
    assert (job.files_total, job.bytes_total) == (1, 150)
    assert "1 hashed, 1 removed" in job.summary
    found = assets(central.id)
    assert "Media/old.iso" not in found
    assert found["Images/b.wim"].digest != digest_before
    job = rescan()
    assert (job.files_total, job.bytes_total) == (0, 0)


def test_odd_names_are_listed_escaped(central, rescan, hx_client):
    """Are names with control characters or invalid UTF-8 listed escaped, never a crash?"""
    write_file(central.root, b"Images/bad\xffname.wim", b"x")
    write_file(central.root, b"Images/bell\x07.wim", b"y")
    job = rescan()
    assert job.state == "succeeded"
    assert {"Images/bad\\xffname.wim", "Images/bell\\x07.wim"} <= set(assets(central.id))
    page = hx_client.get("/libraries/images").get_data(as_text=True)
    assert "bad\\xffname.wim" in page and "bell\\x07.wim" in page


def test_symlinks_never_lead_out_of_the_root(central, rescan, tmp_path):
    """Is a symlink out of the root skipped (and said), while one inside the root counts?"""
    outside = tmp_path / "secret.txt"
    outside.write_bytes(b"secret")
    os.symlink(outside, os.path.join(central.root, "Images", "escape.wim"))
    os.symlink(tmp_path, os.path.join(central.root, "Media", "dir-escape"))
    inside = write_file(central.root, "Images/real.wim", b"r")
    os.symlink(inside, os.path.join(central.root, "Images", "alias.wim"))
    os.mkfifo(os.path.join(central.root, "Images", "pipe.wim"))
    job = rescan()
    assert job.state == "succeeded"
    found = assets(central.id)
    assert "Images/escape.wim" not in found and "Media/dir-escape" not in found
    assert "Images/alias.wim" in found and "Images/pipe.wim" not in found
    notes = " ".join(job.warnings)
    assert "escape.wim: symlink leads out of the content root" in notes
    assert "pipe.wim: not a regular file" in notes


def test_a_file_swapped_for_a_symlink_after_the_walk_is_not_read(central, rescan, tmp_path,
                                                                   monkeypatch):
    """If a file is replaced by a symlink out of the root between walk and hashing, is it refused?"""
    outside = tmp_path / "secret.txt"
    outside.write_bytes(b"secret")
    swapped = write_file(central.root, "Images/swapped.wim", b"innocent")
    real_walk = FilesystemStorage.walk

    def walk_then_swap(self, problems):
        entries = list(real_walk(self, problems))
        os.remove(swapped)
        os.symlink(outside, swapped)
        return iter(entries)

    monkeypatch.setattr(FilesystemStorage, "walk", walk_then_swap)
    job = rescan()
    assert job.state == "succeeded"
    row = db.session.scalars(select(InventoryFile).where(InventoryFile.path == "Images/swapped.wim")).one()
    assert row.sha256 is None and "cannot read" in row.error
    assert assets(central.id)["Images/swapped.wim"].status == "unverified"


def test_unreadable_and_vanishing_files_do_not_stop_the_scan(central, rescan, monkeypatch):
    """Does a scan go on past a file it cannot read and one that vanishes, recording both?"""
    write_file(central.root, "Images/locked.wim", b"l")
    vanishing = write_file(central.root, "Images/vanish.wim", b"v")
    write_file(central.root, "Images/fine.wim", b"f")
    real_open = FilesystemStorage.open_read

    def flaky_open(self, entry):
        if entry.path.endswith("locked.wim"):
            raise PermissionError(13, "Permission denied")
        if entry.path.endswith("vanish.wim"):
            os.remove(vanishing)
        return real_open(self, entry)

    monkeypatch.setattr(FilesystemStorage, "open_read", flaky_open)
    job = rescan()
    assert job.state == "succeeded"
    found = assets(central.id)
    assert found["Images/fine.wim"].status == "current"
    assert found["Images/locked.wim"].status == "unverified"
    assert "Permission denied" in found["Images/locked.wim"].status_reason
    assert "Images/vanish.wim" not in found
    notes = " ".join(job.warnings)
    assert "locked.wim: cannot read: Permission denied" in notes
    assert "vanish.wim: vanished during the scan" in notes
    row = db.session.scalars(select(InventoryFile).where(InventoryFile.path == "Images/locked.wim")).one()
    assert row.sha256 is None and "Permission denied" in row.error


def test_rescan_of_a_missing_root_fails_with_a_clear_message(app, central, rescan):
    """Does a rescan of a root that vanished fail with the reason, marking the DP offline?"""
    root = central.root
    os.rename(root, root + ".moved")
    app.config["DEPOT_CENTRAL_ROOT_IS_DEFAULT"] = False
    job = rescan()
    assert job.state == "failed"
    assert job.error == f"content root {root} does not exist"
    assert dps.health(central) == ("offline", f"content root {root} does not exist")


def test_folder_asset_digest_changes_with_any_inner_file(central, rescan):
    """Does touching one deep file of a folder asset make its digest change?"""
    write_file(central.root, "Platform Packs/Dell/drivers/a.inf", b"1")
    write_file(central.root, "Platform Packs/Dell/drivers/b.sys", b"2")
    rescan()
    before = assets(central.id)["Platform Packs/Dell"].digest
    write_file(central.root, "Platform Packs/Dell/drivers/b.sys", b"3", mtime_ns=10**18)
    rescan()
    assert assets(central.id)["Platform Packs/Dell"].digest != before
