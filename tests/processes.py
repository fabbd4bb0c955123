"""Processes tests start: RQ workers and agents, each in its own process group, and the way to
kill one as `kill -9` does (the process and everything it started, at once)."""
import os
import signal
import subprocess
import sys

from portal.config import BASE_DIR
from portal.extensions import QUEUE_NAMES
from portal.launcher import descendants

WORKER_CLASS = "portal.jobs.worker.Worker"


def kill_hard(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGKILL a process and all its descendants at once, as `kill -9` of its process group."""
    for pid in [proc.pid, *descendants(proc.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=timeout)


def is_gone(pid: int) -> bool:
    """True once a process no longer exists, or is a zombie waiting for its parent."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


class WorkerProcess:
    """An `rq worker --with-scheduler` process of Depot's worker class (the app built once per
    worker), in its own process group, as the production command runs it."""

    def __init__(self, env, log_path):
        self.log = open(log_path, "wb")
        rq = os.path.join(os.path.dirname(sys.executable), "rq")
        self.proc = subprocess.Popen(
            [rq, "worker", "--url", env["REDIS_URL"], "--worker-class", WORKER_CLASS,
             "--with-scheduler", *QUEUE_NAMES],
            env=env, cwd=str(BASE_DIR), stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)

    def kill(self):
        """SIGKILL the worker and its work horse at once, as `kill -9`."""
        kill_hard(self.proc)

    def stop(self):
        """At the end of a test: SIGKILL, as nothing is left to check (a warm shutdown waits for
        RQ's dequeue and scheduler, one or two seconds for each worker of the suite)."""
        if self.proc.poll() is None:
            self.kill()
        self.log.close()


class CronProcess:
    """`rq cron portal.jobs.cron` (the recovery sweep, the health check ...), in its own process
    group; a site runs exactly one."""

    def __init__(self, env, log_path):
        self.log = open(log_path, "wb")
        rq = os.path.join(os.path.dirname(sys.executable), "rq")
        self.proc = subprocess.Popen(
            [rq, "cron", "--url", env["REDIS_URL"], "portal.jobs.cron"],
            env=env, cwd=str(BASE_DIR), stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)

    def stop(self):
        """SIGKILL, as WorkerProcess.stop: nothing it does is left to check."""
        if self.proc.poll() is None:
            kill_hard(self.proc)
        self.log.close()


class AgentProcess:
    """An agent in a process of its own (the zipapp, or `python -m portal.agent`); its log in a
    file."""

    def __init__(self, command, args, log_path, env):
        self.log_path = log_path
        self.log_file = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [*command, *args], cwd=str(BASE_DIR), env=env,
            stdout=self.log_file, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def log(self) -> str:
        with open(self.log_path, errors="replace") as fh:
            return fh.read()

    def wait(self, timeout=60) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"the agent did not finish in {timeout}s:\n{self.log}") from None

    def signal(self, signum) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signum)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log_file.close()
