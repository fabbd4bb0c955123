"""`make run`: migrate, initialise, then run the web console, central's DP node (endpoints'
downloads of central's files), one RQ worker, the RQ cron scheduler and the watcher of central's
root on the same Redis (the embedded one unless REDIS_URL is set). Ctrl-C stops them all.

Each child is the documented production command, so what `make run` starts is what ops run.
"""
import os
import signal
import subprocess
import sys
import time

BIN = os.path.dirname(sys.executable)


def _children(redis_url: str, port: str) -> dict[str, list[str]]:
    return {
        "web": [os.path.join(BIN, "gunicorn"), "--bind", f"0.0.0.0:{port}", "--worker-class",
                "gthread", "--workers", "2", "--threads", "8", "--access-logfile", "-",
                "--logger-class", "portal.core.gunicorn_logger.RedactingLogger",
                "--no-control-socket", "wsgi:app"],
        "worker": [os.path.join(BIN, "rq"), "worker", "--url", redis_url, "--worker-class",
                   "portal.jobs.worker.Worker", "--with-scheduler", "default", "rescans", "copies"],
        "cron": [os.path.join(BIN, "rq"), "cron", "--url", redis_url, "portal.jobs.cron"],
        # rescans central once files under its root change (docs/architecture.md: why apart)
        "watcher": [os.path.join(BIN, "flask"), "--app", "wsgi", "watch-central"],
        # execs gunicorn in place, so the pid watched and stopped here is the node's own
        "node": [os.path.join(BIN, "flask"), "--app", "wsgi", "dp-node", "central"],
    }


def descendants(pid: int) -> list[int]:
    """Every live descendant of a process (children, their children ...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def prepare():
    """Migrate the database, create the central DP and the first admin, recover lost jobs."""
    from flask_migrate import upgrade

    from portal import create_app
    from portal.cli import central_node_settings, initialise
    from portal.config import BASE_DIR
    from portal.extensions import redis_url
    from portal.services.job_recovery import recover_lost_jobs

    app = create_app()
    central_node_settings(app.config)  # a setting that will not do stops us before anything runs
    with app.app_context():
        upgrade(directory=str(BASE_DIR / "migrations"))
        initialise()
        url = redis_url(app)  # starts the embedded Redis when REDIS_URL is unset
        recovered = recover_lost_jobs()
        if recovered:
            print(f"recovered {len(recovered)} job(s) left over from the last run")
    return app, url


def main() -> int:
    from portal.core.errors import DepotError
    from portal.extensions import stop_embedded_redis

    try:
        app, url = prepare()
    except DepotError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    port = os.environ.get("PORT", "8080")
    env = dict(os.environ, REDIS_URL=url, PYTHONPATH=os.getcwd())
    procs = {name: subprocess.Popen(cmd, env=env) for name, cmd in _children(url, port).items()}
    print(f"Depot is running: http://localhost:{port}/  (Ctrl-C stops web, central's DP node "
          f"on {app.config['DEPOT_CENTRAL_DP_BIND']}, worker, scheduler and watcher)")

    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    status = 0
    while not stopping:
        for name, proc in procs.items():
            if proc.poll() is not None:
                print(f"{name} exited with status {proc.returncode}; stopping the rest", file=sys.stderr)
                stopping, status = True, 1
                break
        time.sleep(0.5)
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 20
    for proc in procs.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:  # stuck: kill it and what it started (work horses)
            for pid in [*descendants(proc.pid), proc.pid]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait()
    server = app.extensions.get("depot_embedded_redis")
    if server is not None:
        stop_embedded_redis(server)
    return status


if __name__ == "__main__":
    sys.exit(main())
