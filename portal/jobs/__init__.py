"""RQ entry points. Each is importable by a plain `rq worker`, takes ids, and calls one service."""
import contextlib

from flask import has_app_context

_app = None


def app_context():
    """The app context a job runs in: the caller's (tests, SimpleWorker) or one built from env."""
    global _app
    if has_app_context():
        return contextlib.nullcontext()
    if _app is None:
        from portal import create_app

        _app = create_app()
    return _app.app_context()
