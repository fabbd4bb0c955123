"""A DP node in a process of its own (gunicorn, or waitress with DEPOT_TEST_DP_SERVER=waitress, as
a branch server runs it), for tests that kill it or look at what it loads."""
import os
import subprocess
import sys

from portal.config import BASE_DIR
from tests.node_fixtures import KEY, Node
from tests.servers import bound_port, wait_answering

FLASK = os.path.join(os.path.dirname(sys.executable), "flask")
PYTHON_M_NODE = [sys.executable, "-m", "portal.dpnode"]
SERVER = os.environ.get("DEPOT_TEST_DP_SERVER", "gunicorn")


def start_node(root, log_path, key=KEY, command=None, extra=()):
    """The node command on a port of its own choosing (bind :0), in its own process group;
    `extra` arguments after run's own (e.g. --self-signed)."""
    env = dict(os.environ, DEPOT_DP_KEY=key, DEPOT_DP_RESERVE_BYTES="0")
    argv = [*(command or [FLASK, "--app", "wsgi", "dp-node"]), "run", "--root", str(root),
            "--bind", "127.0.0.1:0", "--server", SERVER, *extra]
    with open(log_path, "wb") as log:
        return subprocess.Popen(argv, env=env, cwd=str(BASE_DIR), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def wait_up(proc, log_path, root, timeout=90) -> Node:
    """The node once it answers /dp/v1/health: its port read from the server's log, then health
    asked until it answers. Any failure to answer (refused, reset, slow) is waited out until the
    deadline; a node that exits fails at once, with its log."""
    node = Node(f"http://127.0.0.1:{bound_port(proc, log_path, timeout)}", str(root))
    wait_answering(f"{node.url}/dp/v1/health", proc, log_path, timeout)
    assert node.call("GET", "/health").status_code == 200
    return node
