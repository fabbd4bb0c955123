"""RQ entry points. Each is importable by a plain `rq worker`, takes ids, and calls one service."""
import contextlib

from flask import has_app_context

_app = None


def build_app():
    """The app from the environment, as wsgi.py builds it: the composition root of a worker
    process (`portal.jobs.worker.Worker` builds it once; a plain worker's horse, once a job)."""
    from portal import create_app

    return create_app()


def app_context():
    """The app context a job runs in: the caller's (Depot's worker class, tests, SimpleWorker)
    or one built from env (a plain `rq worker`: in each horse, so once a job)."""
    global _app
    if has_app_context():
        return contextlib.nullcontext()
    if _app is None:
        _app = build_app()
    return _app.app_context()
