"""`portal.jobs.worker.Worker`: the app built once per worker process, not once per job; jobs
still work under a plain `rq worker`."""
import os
import subprocess
import sys

import pytest
from rq.job import Job as RQJob

from portal.config import BASE_DIR
from portal.extensions import get_queue, get_redis
from tests import factories

RQ = os.path.join(os.path.dirname(sys.executable), "rq")
pytestmark = pytest.mark.slow  # starts real worker processes


def run_burst(env, *worker_class) -> str:
    """`rq worker --burst` on the default queue until it is empty; its log."""
    done = subprocess.run([RQ, "worker", "--burst", "--url", env["REDIS_URL"], *worker_class,
                           "default"], env=env, cwd=str(BASE_DIR), capture_output=True,
                          timeout=120)
    log = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode == 0, log
    return log


def queue(func: str, count: int) -> list[str]:
    return [get_queue("default").enqueue(func).id for _ in range(count)]


def result(job_id: str):
    job = RQJob.fetch(job_id, connection=get_redis())
    assert job.get_status() == "finished", job.latest_result()
    return job.return_value()


def test_app_is_built_once_per_worker(app, worker_env):
    """Under `--worker-class portal.jobs.worker.Worker`, do three jobs run in three horses that
    inherit the worker's app (none builds one), with working database connections?"""
    factories.make_user("admin")
    ids = queue("tests.jobs.worker_jobs.app_facts", 3)
    log = run_burst(worker_env, "--worker-class", "portal.jobs.worker.Worker")
    facts = [result(job_id) for job_id in ids]
    assert [f["built_in_horse"] for f in facts] == [False, False, False]
    assert len({f["pid"] for f in facts}) == 3  # a horse each
    assert {f["instance"] for f in facts} == {os.path.abspath(app.config["INSTANCE_DIR"])}
    assert [f["users"] for f in facts] == [1, 1, 1]
    assert log.count("app built once for its jobs") == 1


def test_plain_worker_still_runs_jobs(app, worker_env):
    """Under a plain `rq worker`, does each job's horse build the app itself, and work?"""
    factories.make_user("admin")
    ids = queue("tests.jobs.worker_jobs.app_facts", 2)
    log = run_burst(worker_env)
    facts = [result(job_id) for job_id in ids]
    assert [f["built_in_horse"] for f in facts] == [True, True]
    assert [f["users"] for f in facts] == [1, 1]
    assert "app built once" not in log


def test_a_failing_job_does_not_stop_the_next(app, worker_env):
    """A job that raises under Depot's worker class: is it failed with its error, and does the
    next job still run in a fresh horse with a working database?"""
    factories.make_user("admin")
    failing = queue("tests.jobs.worker_jobs.fails", 1)[0]
    after = queue("tests.jobs.worker_jobs.app_facts", 1)[0]
    run_burst(worker_env, "--worker-class", "portal.jobs.worker.Worker")
    job = RQJob.fetch(failing, connection=get_redis())
    assert job.get_status() == "failed"
    assert "this job fails on purpose" in job.latest_result().exc_string
    assert result(after)["users"] == 1
