"""The agent API and real agent processes (`python -m portal.agent`) against the test's app served
over HTTP on a loopback port, DP nodes, and moto's S3."""
import os
import shutil
import sys
import uuid

import pytest

from portal.config import BASE_DIR
from portal.extensions import db
from portal.models import Deployment, Device
from portal.services import enrollment
from portal.services.deployments import pin_assets
from tests.cloud.s3_fixtures import make_s3_dp, moto_server, s3, s3_client, s3_dp, s3_settings  # noqa: F401
from tests.factories import AGENT_FACTS
from tests.helpers import AgentCalls
from tests.processes import AgentProcess
from tests.servers import LoopbackServer


@pytest.fixture
def config_overrides():
    """Short intervals so agents notice work and cancels within a second or two."""
    return {"DEPOT_AGENT_INTERVAL": 1, "DEPOT_AGENT_REPORT_INTERVAL": 1}


@pytest.fixture
def enroll_secret(admin):
    """A valid enrollment token (no group)."""
    _, secret = enrollment.create_enrollment_token(admin, "tests", days=1)
    return secret


@pytest.fixture
def agent_calls(client):
    return AgentCalls(client, AGENT_FACTS)


@pytest.fixture
def deploy():
    """deploy(device_id, dp, image, *more_keys) -> a pending Deployment row, digests pinned as the
    DP holds them now (what the deployments service does, without its selection rules)."""
    def _deploy(device_id, dp, image, *more):
        assets = pin_assets(dp.id, [image, *more])
        device = db.session.get(Device, device_id)
        deployment = Deployment(
            batch_id=str(uuid.uuid4()), device_id=device_id, device_name=device.name,
            dp_id=dp.id, dp_name=dp.name, selection_reason="chosen by the test", image=image,
            application_packs=list(more), assets=assets,
            bytes_total=sum(f["size"] for a in assets for f in a["files"]))
        db.session.add(deployment)
        db.session.commit()
        return deployment
    return _deploy


@pytest.fixture
def server(app, central_node):
    """The test's app served over real HTTP on a loopback port (threaded): its base URL. Each
    request gets its own app context and database session, as under gunicorn. Central's files
    come from central's DP node, served beside it."""
    served = LoopbackServer(app, "central")
    url = served.start()
    yield url
    served.stop()


@pytest.fixture(scope="session")
def agent_zipapp(session_dir):
    """The agent as endpoints get it: portal/agent/ copied into a zip as depot_agent/, started by
    a __main__ doing `from depot_agent import main; main()`. Run with `python -I -S`: no
    site-packages, so an import of Flask or of `portal` would fail."""
    import zipapp

    build = os.path.join(session_dir, "agent-build")
    shutil.copytree(BASE_DIR / "portal" / "agent", os.path.join(build, "depot_agent"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    with open(os.path.join(build, "__main__.py"), "w") as fh:
        fh.write("from depot_agent import main\nmain()\n")
    target = os.path.join(session_dir, "depot-agent.pyz")
    zipapp.create_archive(build, target)
    return target


@pytest.fixture
def start_agent(server, enroll_secret, tmp_path, agent_zipapp):
    """start_agent(*extra_args, name="a1", env=None, module=False) -> an AgentProcess enrolled
    with the test server as its own machine (hostname, serial, MAC, IP), target tmp_path/<name>;
    stopped after. The zipapp by default; module=True runs `python -m portal.agent`."""
    started = []

    def _start(*extra, name="a1", env=None, enroll=True, module=False):
        number = sum(name.encode()) % 250 + 1
        args = ["--server", server, "--target", str(tmp_path / name), "--interval", "1",
                "--hostname", f"pc-{name}", "--serial", f"SN-{name}",
                "--mac", f"52:54:00:00:00:{number:02x}", "--ip", f"10.9.0.{number}", *extra]
        if enroll:
            args += ["--enroll-token", enroll_secret]
        process_env = dict(os.environ, PYTHONPATH=str(BASE_DIR), **(env or {}))
        command = [sys.executable, "-m", "portal.agent"] if module else \
            [sys.executable, "-I", "-S", agent_zipapp]
        agent = AgentProcess(command, args, tmp_path / f"agent-{name}.log", process_env)
        started.append(agent)
        return agent
    yield _start
    for agent in started:
        agent.close()

