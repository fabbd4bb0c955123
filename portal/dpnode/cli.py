"""`python -m portal.dpnode run --root DIR --bind HOST:PORT`: start a DP node, without the console.

`flask --app wsgi dp-node run` (portal/cli.py) calls the same `serve`.
"""
import argparse
import os
import sys

from portal.dpnode import NodeMisconfigured, check_settings
from portal.dpnode.config import BASE_DIR

DEFAULT_BIND = "0.0.0.0:8081"
# glibc's malloc hands the node's multi-MiB buffers (a batch's body, the chunks read for it)
# back to the kernel as soon as they are freed, and every next buffer faults its pages in again:
# a 1 GiB copy cost about 800,000 page faults and seconds of kernel time. Kept, they are reused.
# (32 MiB is the most glibc takes.) Other C libraries ignore these; an admin's own values win.
MALLOC_SETTINGS = {"MALLOC_MMAP_THRESHOLD_": str(32 * 1024 * 1024),
                   "MALLOC_TRIM_THRESHOLD_": str(128 * 1024 * 1024)}


def serve(root: str, bind: str, workers: int = 1) -> None:
    """Replace this process with gunicorn serving `root` as a DP node on `bind` (key from
    DEPOT_DP_KEY); NodeMisconfigured, before anything starts, if the root or key will not do."""
    root = os.path.abspath(root)
    check_settings(root, os.environ.get("DEPOT_DP_KEY"))
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    # gthread workers: a long download keeps its thread without tripping the worker timeout.
    argv = [gunicorn, "--bind", bind, "--worker-class", "gthread", "--workers", str(workers),
            "--threads", "16", "--chdir", str(BASE_DIR), "--access-logfile", "-",
            "--no-control-socket", "portal.dpnode:create_node_app()"]
    print(f"DP node serving {root} on {bind}", flush=True)
    os.execve(gunicorn, argv, {**MALLOC_SETTINGS, **os.environ, "DEPOT_DP_ROOT": root})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m portal.dpnode",
                                     description="Run this machine as a Depot DP node.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="serve a content root (key from DEPOT_DP_KEY)")
    run.add_argument("--root", required=True, help="the content root this node serves")
    run.add_argument("--bind", default=DEFAULT_BIND, help=f"HOST:PORT (default {DEFAULT_BIND})")
    run.add_argument("--workers", type=int, default=1,
                     help="gunicorn worker processes (1: a delta upload's running hash lives in "
                          "the process that assembles it)")
    args = parser.parse_args(argv)
    try:
        serve(args.root, args.bind, args.workers)
    except NodeMisconfigured as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    return 0
