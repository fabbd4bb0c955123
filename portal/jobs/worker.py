"""`rq worker --worker-class portal.jobs.worker.Worker`: an RQ worker that builds the Flask app
once, in the worker process, instead of once for every job.

RQ forks a work horse for each job. With a plain `rq worker` the horse starts with no app, so
`portal.jobs.app_context` builds one (imports, settings, blueprints: 0.7 s a job on the 2-core
test machine, 1.8 s on a slower one) and throws it away when the horse exits. This worker builds the app and imports
the job modules before its first fork and keeps the app context pushed for as long as it works:
every horse inherits both, and `app_context` sees a context already there.

What must not cross a fork: the database engine's pooled connections (a horse drops what it
inherited, unused, and closes its own when the job ends). Redis's pool notices a fork by itself.
Jobs run by a plain `rq worker` (or in a test's SimpleWorker) still work, building the app as
before.
"""
import importlib

from rq.worker import Worker as RQWorker
from sqlalchemy.orm import configure_mappers

import portal.jobs
from portal.extensions import db
from portal.services.jobs import JOB_FUNCS

# The modules a job's function lives in (JOB_FUNCS, and portal.jobs.cron's maintenance):
# imported in the worker, so a horse does not import them again for each job.
JOB_MODULES = sorted({path.rpartition(".")[0] for _, path in JOB_FUNCS.values()}
                     | {"portal.jobs.maintenance"})


def build_app():
    """The app every job of this worker runs in, from the environment (as wsgi.py builds it),
    with the job modules imported and the ORM's mappers configured (else each horse would)."""
    for name in JOB_MODULES:
        importlib.import_module(name)
    app = portal.jobs.build_app()
    configure_mappers()
    return app


class Worker(RQWorker):
    """A forking RQ worker whose horses inherit an app context built once per worker process."""

    app = None

    def work(self, *args, **kwargs):
        """Build the app, push its context, and work in it until the worker stops."""
        if self.app is None:
            self.app = build_app()
            self.log.info("Worker %s: app built once for its jobs", self.name)
        with self.app.app_context():
            try:
                return super().work(*args, **kwargs)
            finally:
                db.session.remove()
                db.engine.dispose()

    def main_work_horse(self, job, queue):
        """In the horse, just forked: forget the worker's pooled connections (if it ever opened
        one) without closing them, which would close them for the worker too."""
        db.engine.dispose(close=False)
        super().main_work_horse(job, queue)

    def perform_job(self, job, queue, execution) -> bool:
        """Run the job, then close the horse's database connections cleanly before it exits
        (`os._exit` would leave the server to notice a dropped connection)."""
        try:
            return super().perform_job(job, queue, execution)
        finally:
            if self.is_horse:
                db.session.remove()
                db.engine.dispose()
