"""DP-node mode: the same code base serving a branch's content root to the central server
(inventory, resumable uploads, deletes, health) and to endpoints (signed download links).

Production: `gunicorn --worker-class gthread 'portal.dpnode:create_node_app()'` with DEPOT_DP_ROOT
and DEPOT_DP_KEY set; `flask --app wsgi dp-node run --root DIR --bind HOST:PORT` does the same.
"""
import logging
import os

from flask import Flask

from portal.config import NodeConfig
from portal.services import DepotError
from portal.storage.central import FilesystemStorage

MIN_KEY_LENGTH = 16


class NodeMisconfigured(DepotError):
    """The node cannot start: said once, clearly, at start-up."""


def check_settings(root: str | None, key: str | None) -> None:
    """Refuse to start without a usable root or a key long enough to be a secret."""
    if not key or len(key) < MIN_KEY_LENGTH:
        raise NodeMisconfigured(f"set DEPOT_DP_KEY to a secret of at least {MIN_KEY_LENGTH} "
                                "characters (the same key is entered in the console's Add local)")
    if not root or not os.path.isdir(root):
        raise NodeMisconfigured(f"the content root {root} does not exist or is not a folder")
    if not os.access(root, os.R_OK | os.W_OK | os.X_OK):
        raise NodeMisconfigured(f"the content root {root} is not writable by this user")


def create_node_app(config_class=NodeConfig) -> Flask:
    """Build a DP node app for the root and key in `config_class` (the environment by default)."""
    app = Flask(__name__)
    app.config.from_object(config_class)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = app.config["DEPOT_DP_ROOT"]
    check_settings(root, app.config["DEPOT_DP_KEY"])
    app.config["DEPOT_DP_ROOT"] = os.path.abspath(root)

    from portal import errors
    from portal.dpnode.routes import bp, store

    errors.init_app(app)
    app.register_blueprint(bp)
    FilesystemStorage(root=app.config["DEPOT_DP_ROOT"]).ensure_layout()
    store(app).sweep()
    return app
