"""`demo seed`: real WIM images where wimlib-imagex is installed, a plain warning where it is not,
and device groups that prefer what their descriptions say."""
import os
import shutil
import subprocess

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import DeviceGroup, Notification
from portal.services import demo
from tests import factories

WIMLIB = shutil.which("wimlib-imagex")
needs_wimlib = pytest.mark.skipif(WIMLIB is None, reason="wimtools is not installed")


@needs_wimlib
def test_the_seeded_images_are_wims_the_agent_can_apply(app, runner, central, tmp_path):
    """Are the seeded .wim files real WIM images that `wimlib-imagex apply` unpacks, each with
    files of its own?"""
    result = runner.invoke(args=["demo", "seed", "--no-rescan"])
    assert result.exit_code == 0, result.output
    assert f"demo images: real WIM images, captured with {WIMLIB}" in result.output
    seen = set()
    for rel, title in demo.WIM_IMAGES.items():
        wim = os.path.join(central.root, rel)
        assert demo.is_wim(wim)
        out = tmp_path / rel.replace("/", "_")
        applied = subprocess.run([WIMLIB, "apply", wim, "1", str(out)], capture_output=True,
                                 check=False)
        assert applied.returncode == 0, applied.stdout + applied.stderr
        note = (out / "Windows/System32/depot-demo.txt").read_text()
        assert title in note and rel in note
        assert (out / "Windows/System32/payload.bin").stat().st_size == demo.DEMO_FILES[rel]
        seen.add((out / "Windows/System32/payload.bin").read_bytes()[:64])
    assert len(seen) == len(demo.WIM_IMAGES)  # a different image each
    assert not db.session.scalars(select(Notification)).first()  # nothing to warn about


def test_without_wimlib_the_seed_says_the_images_cannot_be_applied(app, runner, central,
                                                                   tmp_path, monkeypatch):
    """With wimlib-imagex nowhere on PATH, does the seed still write the files but say plainly
    (CLI and a notification) that they cannot be applied and how to install wimtools; and does
    a later seed with wimlib replace them with real images?"""
    factories.make_user("admin")
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no wimlib-imagex
    assert demo.wimlib() is None
    result = runner.invoke(args=["demo", "seed", "--no-rescan"])
    assert result.exit_code == 0, result.output
    assert "not WIM images" in result.output and "apt-get install wimtools" in result.output
    for rel in demo.WIM_IMAGES:
        path = os.path.join(central.root, rel)
        assert os.path.getsize(path) == demo.DEMO_FILES[rel] and not demo.is_wim(path)
    told = db.session.scalars(select(Notification)).all()
    assert told and {n.kind for n in told} == {"demo.images_unusable"}
    assert told[0].level == "warning" and "install wimtools" in told[0].message.lower()
    if WIMLIB is None:
        return
    monkeypatch.setenv("PATH", os.path.dirname(WIMLIB))
    again = runner.invoke(args=["demo", "seed", "--no-rescan"])
    assert again.exit_code == 0, again.output
    assert f"demo content: {len(demo.WIM_IMAGES)} files written" in again.output
    assert all(demo.is_wim(os.path.join(central.root, rel)) for rel in demo.WIM_IMAGES)


def test_a_failed_capture_is_an_error_in_words(app, central, tmp_path):
    """Does a wimlib-imagex that fails stop the seed with its last words, leaving no file?"""
    fake = tmp_path / "wimlib-imagex"
    fake.write_text("#!/bin/sh\necho 'ERROR: the disk is full' >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(demo.DepotError, match="could not capture the demo image .*disk is full"):
        demo.seed_central(str(tmp_path / "root"), str(fake))
    assert not any(name.endswith(".wim") for _, _, files in os.walk(tmp_path / "root")
                   for name in files)


def test_groups_prefer_what_their_descriptions_say(app, runner, central):
    """Without a DP node, does Seattle office say it uses central for now (and prefer it); once a
    node is added, does a second seed make the node its first choice, central the fallback, and
    say so?"""
    runner.invoke(args=["demo", "seed", "--no-rescan"])
    groups = {g.name: g for g in db.session.scalars(select(DeviceGroup))}
    seattle_group = groups["Seattle office"]
    assert seattle_group.preferred_dp_id == central.id and seattle_group.fallback_dp_ids == []
    assert "central for now" in seattle_group.description
    assert groups["SLC office"].preferred_dp_id == central.id
    node = factories.add_dp("Seattle")
    factories.add_dp("Portland")
    again = runner.invoke(args=["demo", "seed", "--no-rescan"])
    assert again.exit_code == 0, again.output
    db.session.refresh(seattle_group)
    assert seattle_group.preferred_dp_id == node.id
    assert seattle_group.fallback_dp_ids == [central.id]
    assert seattle_group.description.startswith("The branch office; its DP node first")
    assert "group Seattle office: preferred DP Seattle" in again.output
    remote = db.session.scalars(
        select(DeviceGroup).where(DeviceGroup.name == "Remote workers")).one()
    assert remote.preferred_dp_id == central.id and "central for now" in remote.description
    third = runner.invoke(args=["demo", "seed", "--no-rescan"])
    assert "group " not in third.output  # nothing left to change
