"""Creating deployments (digests pinned, one batch, refusals with reasons), cancel, list."""
import pytest
from sqlalchemy import select

from portal.core.errors import Conflict, DepotError, NotFound, PermissionDenied
from portal.extensions import db
from portal.models import Asset, AuditEvent, Deployment
from portal.services import deployments as svc
from portal.services.actors import Actor
from portal.services.deployment_preview import preview
from portal.services.deployments import DpNotEligible
from tests.factories import make_device, make_group, make_user
from tests.node_fixtures import IMAGE, PACK


def test_a_group_deployment_pins_what_the_dp_holds(admin, central, seattle_all):
    """Does a group get one deployment per device in one batch, with the DP's digests pinned?"""
    group = make_group("Seattle office", preferred=seattle_all)
    for name in ("pc-1", "pc-2"):
        make_device(name, group=group)
    rows = svc.create_deployments(admin, group_id=group.id, image=IMAGE, platform_pack=PACK)
    assert len(rows) == 2 and len({r.batch_id for r in rows}) == 1
    digests = dict(db.session.execute(select(Asset.key, Asset.digest).where(
        Asset.dp_id == seattle_all.id)).all())
    for row in rows:
        assert (row.state, row.dp_id, row.group_id) == ("pending", seattle_all.id, group.id)
        assert row.selection_reason == "preferred DP of group Seattle office"
        assert [(a["key"], a["digest"]) for a in row.assets] == [
            (IMAGE, digests[IMAGE]), (PACK, digests[PACK])]
        assert [f["path"] for f in row.assets[1]["files"]] == [
            f"{PACK}/drivers/net.inf", f"{PACK}/drivers/net.sys"]
        assert row.bytes_total == 16 * 64 + 5 + 600
    event = db.session.scalars(select(AuditEvent).where(
        AuditEvent.action == "deployment.create")).one()
    assert event.details["devices"] == 2 and event.target == f"batch {rows[0].batch_id}"


def test_each_device_gets_its_own_dp(admin, central, seattle_image):
    """In one request, does each device get the DP its own rules give?"""
    group = make_group("Seattle office", preferred=seattle_image)
    near = make_device("near", group=group)
    far = make_device("far")
    rows = svc.create_deployments(admin, device_ids=[near.id, far.id], image=IMAGE)
    assert {r.device_name: r.dp_name for r in rows} == {"near": "Seattle", "far": "Central"}


def test_an_explicit_dp_that_is_not_eligible_is_refused_with_reasons(admin, central, seattle_image):
    """Is a DP chosen by hand that lacks the Platform Pack a 409 listing why, creating nothing?"""
    device = make_device("pc-1")
    with pytest.raises(DpNotEligible) as refused:
        svc.create_deployments(admin, device_ids=[device.id], image=IMAGE, platform_pack=PACK,
                               dp_id=seattle_image.id)
    assert refused.value.status == 409 and refused.value.code == "dp_not_eligible"
    assert refused.value.reasons == ["Platform Packs/Dell is missing at Seattle"]
    assert db.session.scalars(select(Deployment)).all() == []
    [row] = svc.create_deployments(admin, device_ids=[device.id], image=IMAGE,
                                   dp_id=seattle_image.id)
    assert (row.dp_name, row.selection_reason) == ("Seattle", f"chosen by {admin.label}")


def test_no_eligible_dp_at_all_is_refused_with_every_reason(admin, central, seattle_image):
    """With central disabled and Seattle lacking a file, is the 409 given with both reasons?"""
    central.disabled = True
    db.session.commit()
    group = make_group("Seattle office", preferred=seattle_image)
    device = make_device("pc-1", group=group)
    with pytest.raises(DpNotEligible) as refused:
        svc.create_deployments(admin, device_ids=[device.id], image=IMAGE, platform_pack=PACK)
    assert refused.value.reasons == ["Platform Packs/Dell is missing at Seattle",
                                     "Central is disabled for maintenance"]


def test_a_device_with_an_unfinished_deployment_is_refused(admin, central, content):
    """Is a second deployment to a busy device a 409 naming the device and its deployment?"""
    device = make_device("pc-1")
    [first] = svc.create_deployments(admin, device_ids=[device.id], image=IMAGE)
    with pytest.raises(Conflict) as refused:
        svc.create_deployments(admin, device_ids=[device.id], image=IMAGE)
    assert f"pc-1 (deployment #{first.id}, pending)" in refused.value.message
    svc.cancel_deployment(admin, first.id)
    assert len(svc.create_deployments(admin, device_ids=[device.id], image=IMAGE)) == 1


@pytest.mark.parametrize("kwargs, error, text", [
    (dict(image=None), DepotError, "choose an image"),
    (dict(image="Platform Packs/Dell"), DepotError, "image must be an asset of Images/"),
    (dict(image=IMAGE, platform_pack=IMAGE), DepotError, "platform pack must be an asset of"),
    (dict(image=IMAGE, application_packs="Application Packs/x"), DepotError, "must be a list"),
    (dict(image=IMAGE, answer_file="Images/x"), DepotError, "answer file must be an asset of"),
    (dict(image="Images/missing.wim"), NotFound, "Images/missing.wim is not at central"),
    (dict(image=IMAGE, application_packs=["Application Packs/Office"]), NotFound, "not at central"),
])
def test_bad_assets_are_refused(admin, content, kwargs, error, text):
    """Is each wrong or unknown asset refused with a message that names it?"""
    device = make_device("pc-1")
    with pytest.raises(error) as refused:
        svc.create_deployments(admin, device_ids=[device.id], **kwargs)
    assert text in refused.value.message


def test_bad_targets_are_refused(admin, content):
    """Are no target, both targets, unknown devices and an empty group refused clearly?"""
    device = make_device("pc-1")
    empty = make_group("Nobody")
    cases = [(dict(), DepotError, "choose the devices"),
             (dict(device_ids=[device.id], group_id=empty.id), DepotError, "not both"),
             (dict(device_ids=[device.id, 999]), NotFound, "no device 999"),
             (dict(device_ids="1"), DepotError, "must be a list"),
             (dict(group_id=999), NotFound, "no group 999"),
             (dict(group_id=empty.id), DepotError, "group Nobody has no devices")]
    for kwargs, error, text in cases:
        with pytest.raises(error) as refused:
            svc.create_deployments(admin, image=IMAGE, **kwargs)
        assert text in refused.value.message, kwargs
    with pytest.raises(NotFound):
        svc.create_deployments(admin, device_ids=[device.id], image=IMAGE, dp_id=999)


def test_a_viewer_cannot_deploy_or_cancel_and_a_technician_can(app, content):
    """Can a viewer deploy or cancel? Can a technician?"""
    device = make_device("pc-1")
    viewer = Actor(make_user("viewer"), via="console")
    technician = Actor(make_user("technician"), via="console")
    with pytest.raises(PermissionDenied):
        svc.create_deployments(viewer, device_ids=[device.id], image=IMAGE)
    [row] = svc.create_deployments(technician, device_ids=[device.id], image=IMAGE)
    with pytest.raises(PermissionDenied):
        svc.cancel_deployment(viewer, row.id)
    assert svc.cancel_deployment(technician, row.id).state == "cancelled"


def test_cancel_depends_on_the_deployments_state(admin, content):
    """Is a pending deployment cancelled at once, a running one asked to stop, a finished one 409?"""
    a, b, c = (make_device(n) for n in ("a", "b", "c"))
    pending, running, done = svc.create_deployments(admin, device_ids=[a.id, b.id, c.id],
                                                    image=IMAGE)
    running.state = "downloading"
    done.state = "succeeded"
    db.session.commit()
    cancelled = svc.cancel_deployment(admin, pending.id)
    assert (cancelled.state, cancelled.finished_at is not None) == ("cancelled", True)
    assert cancelled.phase == f"cancelled by {admin.label} before it started"
    assert cancelled.error is None
    asked = svc.cancel_deployment(admin, running.id)
    assert (asked.state, asked.cancel_requested) == ("downloading", True)
    assert svc.cancel_deployment(admin, running.id).cancel_requested  # asking twice is fine
    for finished in (done, cancelled):
        with pytest.raises(Conflict) as refused:
            svc.cancel_deployment(admin, finished.id)
        assert "already" in refused.value.message
    with pytest.raises(NotFound):
        svc.cancel_deployment(admin, 12345)
    assert db.session.scalar(select(db.func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "deployment.cancel")) == 3


def test_list_filters_newest_first(admin, central, seattle_image):
    """Does the list filter by state, device, batch, DP and site, newest first?"""
    group = make_group("Seattle office", preferred=seattle_image)
    a = make_device("a", group=group)
    b = make_device("b")
    [first] = svc.create_deployments(admin, device_ids=[a.id], image=IMAGE)
    [second] = svc.create_deployments(admin, device_ids=[b.id], image=IMAGE)
    user = admin.user
    items, total = svc.list_deployments(user)
    assert [d.id for d in items] == [second.id, first.id] and total == 2
    assert [d.id for d in svc.list_deployments(user, device_id=a.id)[0]] == [first.id]
    assert [d.id for d in svc.list_deployments(user, dp_id=central.id)[0]] == [second.id]
    assert [d.id for d in svc.list_deployments(user, site="Seattle office")[0]] == [first.id]
    assert [d.id for d in svc.list_deployments(user, batch_id=second.batch_id)[0]] == [second.id]
    assert svc.list_deployments(user, state="failed") == ([], 0)
    with pytest.raises(DepotError):
        svc.list_deployments(user, state="exploded")
    scoped = make_user("viewer", sites=["Seattle office"])
    assert [d.id for d in svc.list_deployments(scoped)[0]] == [first.id]
    assert svc.list_deployments(scoped, site="HQ") == ([], 0)
    with pytest.raises(NotFound):
        svc.get_deployment(scoped, second.id)


def test_preview_says_which_dp_and_why(admin, central, seattle_image):
    """Does the preview give each device's DP and reason, and each DP's eligibility?"""
    group = make_group("Seattle office", preferred=seattle_image)
    make_device("pc-1", group=group)
    result = preview(admin.user, group_id=group.id, image=IMAGE, platform_pack=PACK)
    [entry] = result["devices"]
    assert (entry["dp"].name, entry["reason"]) == ("Central", "central: Seattle lacks Platform Packs/Dell")
    by_name = {row["dp"].name: row for row in result["dps"]}
    assert by_name["Central"]["eligible"] and not by_name["Seattle"]["eligible"]
    assert by_name["Seattle"]["copyable"] == [PACK]
    assert preview(admin.user, image=None)["error"].startswith("choose an image")
    assert preview(admin.user, group_id=999, image=IMAGE)["error"] == "no group 999"
