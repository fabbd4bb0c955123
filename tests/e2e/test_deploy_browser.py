"""Deploy to a group in a real browser with real agents: the form picks the group's preferred DP
and says why, the list shows each endpoint's progress live, and a cancel stops one agent while the
other finishes, without a reload."""
import os
import re
import subprocess
import sys

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from portal.config import BASE_DIR
from portal.extensions import db
from portal.models import Device, DeviceGroup
from portal.services import copies, dp_management, enrollment
from portal.services import distribution_points as dps
from portal.services.actors import Actor
from tests import factories
from tests.helpers import run_worker, sign_in, status_at, wait_for
from tests.node_fixtures import KEY

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
KiB, MiB = 1024, 1024 * 1024


class Agent:
    """`python -m portal.agent` in a process of its own (slow downloads), its log in a file."""

    def __init__(self, server, secret, name, number, tmp_path):
        self.log_path = tmp_path / f"agent-{name}.log"
        self.log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "portal.agent", "--server", server, "--enroll-token", secret,
             "--target", str(tmp_path / name), "--interval", "1", "--max-rate", str(384 * KiB),
             "--hostname", name, "--serial", f"SN-{name}",
             "--mac", f"52:54:00:00:01:{number:02x}", "--ip", f"10.9.1.{number}"],
            cwd=str(BASE_DIR), env=dict(os.environ, PYTHONPATH=str(BASE_DIR)),
            stdout=self.log_file, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()


@pytest.fixture
def agents(live_server, tmp_path):
    """agents(name, secret) -> a running agent enrolled with the live server; all stopped."""
    started = []

    def _start(name, secret):
        agent = Agent(live_server, secret, name, len(started) + 1, tmp_path)
        started.append(agent)
        return agent
    yield _start
    for agent in started:
        agent.stop()


def test_deploy_to_a_group_and_watch_it(app, central, node, live_server, agents, page, screenshot):
    """Does a group deployment from the form go to the preferred DP (said why), show both
    endpoints' progress live, and stop the cancelled one while the other succeeds?"""
    admin = factories.make_user(role="admin", email="admin@example.com")
    actor = Actor(admin, via="console")
    factories.write_file(central.root, "Images/Win11-23H2.img", os.urandom(3 * MiB))
    dps.request_rescan(central, actor)
    seattle = dp_management.add_local(actor, "Seattle", node.url, KEY, "Seattle office",
                                      allow_plain_http=True)
    run_worker()
    copies.request_copies(actor, ["Images/Win11-23H2.img"], [seattle.id])
    run_worker()
    assert status_at(seattle, "Images/Win11-23H2.img") == "current"
    group = DeviceGroup(name="Seattle office", preferred_dp_id=seattle.id, fallback_dp_ids=[])
    db.session.add(group)
    db.session.commit()
    _, secret = enrollment.create_enrollment_token(actor, "e2e", days=1, group_id=group.id)
    watched = [agents("pc-sea-1", secret), agents("pc-sea-2", secret)]
    wait_for(lambda: db.session.scalar(select(func.count(Device.id)).where(
        Device.group_id == group.id)) == 2, timeout=30, message="both agents to enroll")

    sign_in(page, live_server, "admin@example.com")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Deployments").click()
    page.get_by_role("link", name="Deploy…").click()
    page.get_by_label("every device of a group").check()
    page.locator("select[name=group_id]").select_option(label="Seattle office")
    page.locator("select[name=image]").select_option(label="Win11-23H2.img")
    preview = page.locator("#deploy-preview")
    expect(preview.locator(".preview-choices")).to_contain_text("2 devices from Seattle")
    expect(preview.locator(".preview-choices")).to_contain_text("preferred DP of group Seattle office")
    expect(preview.locator('tr[data-dp="Seattle"]')).to_have_attribute("data-eligible", "yes")
    screenshot("deploy-form")
    page.get_by_role("button", name="Deploy", exact=True).click()

    expect(page.locator("tr.deployment")).to_have_count(2)
    page.evaluate("window.depotNoReload = true")
    first = page.locator("tr.deployment", has_text="pc-sea-1")
    second = page.locator("tr.deployment", has_text="pc-sea-2")
    expect(second).to_have_attribute("data-state", "downloading", timeout=30_000)
    expect(first).to_have_attribute("data-state", "downloading", timeout=30_000)
    expect(first.locator("td.progress-col")).to_contain_text(re.compile(r"\(([1-9]\d?)%\)"), timeout=30_000)
    screenshot("deployments-in-progress")
    page.once("dialog", lambda dialog: dialog.accept())
    second.get_by_role("button", name="Cancel").click()
    expect(second).to_have_attribute("data-state", "cancelled", timeout=20_000)
    expect(first).to_have_attribute("data-state", "succeeded", timeout=60_000)
    expect(first.locator("progress")).to_have_attribute("value", "100")
    assert "every 2s" not in page.locator("#deployment-list").get_attribute("hx-trigger")
    assert page.evaluate("window.depotNoReload") is True
    screenshot("deployments-done")
    for agent in watched:
        assert "Traceback" not in agent.log, agent.log
