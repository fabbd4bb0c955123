"""Jobs the worker-class tests queue: importable by a real `rq worker` (PYTHONPATH is the
checkout), each entered the way Depot's entry points are (`portal.jobs.app_context`)."""
import os

from flask import current_app

import portal.jobs
from portal.extensions import db
from portal.models import User


def app_facts() -> dict:
    """What the work horse running this job sees: its pid, whether it had to build the app itself
    (as a plain worker's horse does), and a query through the app's database."""
    built_before = portal.jobs._app is not None
    with portal.jobs.app_context():
        users = db.session.query(User).count()
        return {"pid": os.getpid(), "built_in_horse": built_before or portal.jobs._app is not None,
                "instance": current_app.instance_path, "users": users}


def fails() -> None:
    """A job that raises, as a job with a bug would."""
    with portal.jobs.app_context():
        raise RuntimeError("this job fails on purpose")
