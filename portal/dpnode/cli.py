"""`python -m portal.dpnode run --root DIR --bind HOST:PORT [--server waitress|gunicorn]
[--cert FILE --key FILE | --self-signed]`: start a DP node, without the console.

Two servers: gunicorn (the default on Linux: processes, sendfile) and waitress (pure Python,
the default on Windows, where gunicorn does not run; one process of threads). gunicorn is
started as its own program, never imported, so nothing of it is needed on Windows.
With a certificate the node speaks HTTPS only: gunicorn with its certfile and keyfile, and in
place of waitress (which has no TLS) cheroot's WSGI server with its builtin SSL adapter, pure
Python as well. The certificate's SHA-256 fingerprint is printed at start: the console shows the
same one when the node is added, and pins it.
`flask --app wsgi dp-node run` (portal/cli.py) calls the same `serve`.
"""
import argparse
import os
import signal
import sys

from portal.dpnode import NodeMisconfigured, check_settings
from portal.dpnode import tls as node_tls
from portal.dpnode.config import BASE_DIR, NodeConfig, default_root

DEFAULT_BIND = "0.0.0.0:8081"
# Access log lines without the signatures of download links (portal/core/log_redaction.py).
GUNICORN_LOGGER = "portal.core.gunicorn_logger.RedactingLogger"
SERVERS = ("waitress", "gunicorn")
THREADS = 16  # requests at once, under either server
# glibc's malloc hands the node's multi-MiB buffers (a batch's body, the chunks read for it)
# back to the kernel as soon as they are freed, and every next buffer faults its pages in again:
# a 1 GiB copy cost about 800,000 page faults and seconds of kernel time. Kept, they are reused.
# (32 MiB is the most glibc takes.) Other C libraries ignore these; an admin's own values win.
MALLOC_SETTINGS = {"MALLOC_MMAP_THRESHOLD_": str(32 * 1024 * 1024),
                   "MALLOC_TRIM_THRESHOLD_": str(128 * 1024 * 1024)}


def default_server() -> str:
    """waitress on Windows (gunicorn does not run there), gunicorn elsewhere."""
    return "waitress" if os.name == "nt" else "gunicorn"


def serve(root: str | None, bind: str, workers: int = 1, server: str | None = None, *,
          cert: str | None = None, key: str | None = None, self_signed: bool = False) -> None:
    """Serve `root` as a DP node on `bind` (key from DEPOT_DP_KEY) under `server` (the
    platform's default when None) until stopped, over HTTPS with `cert` and `key` or the node's
    own self-signed pair; NodeMisconfigured, before anything starts, if the root, key, server or
    certificate will not do."""
    root = os.path.abspath(root or NodeConfig.DEPOT_DP_ROOT)
    server = server or default_server()
    if server not in SERVERS:
        raise NodeMisconfigured(f"unknown server {server!r}: choose waitress or gunicorn")
    if server == "gunicorn" and os.name == "nt":
        raise NodeMisconfigured("gunicorn does not run on Windows: use --server waitress (the "
                                "default there)")
    if server == "waitress" and workers != 1:
        raise NodeMisconfigured("waitress serves from one process (its threads): --workers is "
                                "for gunicorn")
    check_settings(root, os.environ.get("DEPOT_DP_KEY"))
    pair = node_tls.resolve(root, cert, key, self_signed)
    if pair is not None:
        print(node_tls.fingerprint_line(pair[0]), flush=True)
    if server == "waitress" and pair is not None:
        _serve_cheroot(root, *_split_bind(bind), pair)
    elif server == "waitress":
        _serve_waitress(root, *_split_bind(bind))
    else:
        _exec_gunicorn(root, bind, workers, pair)


def _split_bind(bind: str) -> tuple[str, int]:
    """HOST:PORT (the host may be [IPv6]) as waitress takes it."""
    host, sep, port = bind.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise NodeMisconfigured(f"--bind {bind!r} is not HOST:PORT (e.g. 0.0.0.0:8081)")
    return host.strip("[]"), int(port)


def _exec_gunicorn(root: str, bind: str, workers: int, pair: tuple[str, str] | None) -> None:
    """Replace this process with gunicorn (serving HTTPS with `pair`, a certificate and key)."""
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    # gthread workers: a long download keeps its thread without tripping the worker timeout.
    argv = [gunicorn, "--bind", bind, "--worker-class", "gthread", "--workers", str(workers),
            "--threads", str(THREADS), "--chdir", str(BASE_DIR), "--access-logfile", "-",
            "--logger-class", GUNICORN_LOGGER, "--no-control-socket"]
    if pair is not None:
        argv += ["--certfile", pair[0], "--keyfile", pair[1]]
    argv.append("portal.dpnode:create_node_app()")
    scheme = "https" if pair is not None else "http"
    print(f"DP node serving {root} on {scheme}://{bind} (gunicorn)", flush=True)
    os.execve(gunicorn, argv, {**MALLOC_SETTINGS, **os.environ, "DEPOT_DP_ROOT": root})


def _serve_waitress(root: str, host: str, port: int) -> None:
    """Serve in this process with waitress until SIGTERM, SIGINT or Ctrl+C (a Windows service
    wrapper's stop)."""
    from waitress import create_server

    app = _node_app(root)
    # A whole 64 MiB chunk is taken in memory rather than spooled to a temporary file first.
    server = create_server(app, host=host, port=port, threads=THREADS, ident="Depot DP node",
                           inbuf_overflow=NodeConfig.MAX_CONTENT_LENGTH)
    print(f"DP node serving {root} on http://{host}:{server.effective_port} (waitress)",
          flush=True)
    server.print_listen("Serving on http://{}:{}")

    def stop(_signum, _frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    server.run()  # returns once stopped (waitress catches the SystemExit)


def _node_app(root: str):
    from portal.dpnode import create_node_app

    return create_node_app(type("NodeConfig", (NodeConfig,), {"DEPOT_DP_ROOT": root}))


def _serve_cheroot(root: str, host: str, port: int, pair: tuple[str, str]) -> None:
    """HTTPS without gunicorn (Windows, or --server waitress): cheroot's WSGI server with its
    builtin SSL adapter, in this process, until SIGTERM, SIGINT or Ctrl+C."""
    from cheroot import wsgi
    from cheroot.ssl.builtin import BuiltinSSLAdapter

    server = wsgi.Server((host, port), _node_app(root), numthreads=THREADS,
                         server_name="Depot DP node")
    server.max_request_body_size = NodeConfig.MAX_CONTENT_LENGTH
    server.ssl_adapter = BuiltinSSLAdapter(*pair)
    server.prepare()  # binds: port 0 becomes the one the system gave
    bound_host, bound_port = server.bind_addr[:2]
    print(f"DP node serving {root} on https://{bound_host}:{bound_port} (cheroot, TLS)",
          flush=True)
    print(f"Serving on https://{bound_host}:{bound_port}", flush=True)  # as waitress says it

    def stop(_signum, _frame):
        raise SystemExit(0)  # out of the serve loop, in this thread; then stopped below

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.stop()


def fingerprint(root: str | None, cert: str | None) -> str:
    """The line `dp-node fingerprint` prints: of `cert`, else of the node's self-signed one."""
    if not cert:
        cert = node_tls.self_signed_paths(os.path.abspath(root or NodeConfig.DEPOT_DP_ROOT))[0]
        if not os.path.exists(cert):
            raise NodeMisconfigured(f"no self-signed certificate at {cert} yet: it is made on "
                                    "the first `run --self-signed`")
    try:
        return node_tls.fingerprint_line(cert)
    except (OSError, ValueError) as exc:
        raise NodeMisconfigured(f"cannot read the certificate {cert}: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m portal.dpnode",
                                     description="Run this machine as a Depot DP node.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="serve a content root (key from DEPOT_DP_KEY)")
    run.add_argument("--root", default=None,
                     help=f"the content root this node serves (default: DEPOT_DP_ROOT, else "
                          f"{default_root()})")
    run.add_argument("--bind", default=DEFAULT_BIND, help=f"HOST:PORT (default {DEFAULT_BIND})")
    run.add_argument("--server", choices=SERVERS, default=None,
                     help=f"the HTTP server (default here: {default_server()}; waitress on "
                          "Windows, gunicorn elsewhere)")
    run.add_argument("--workers", type=int, default=1,
                     help="gunicorn worker processes (1: a delta upload's running hash lives in "
                          "the process that assembles it)")
    run.add_argument("--cert", default=None, help="serve HTTPS with this certificate (PEM)")
    run.add_argument("--key", default=None, help="the certificate's private key (PEM)")
    run.add_argument("--self-signed", action="store_true",
                     help="serve HTTPS with the node's own certificate, made on first start in "
                          "<root>/.depot/tls/ and reused after")
    show = commands.add_parser("fingerprint",
                               help="print the SHA-256 fingerprint of the node's certificate")
    show.add_argument("--root", default=None, help="the content root (for --self-signed nodes)")
    show.add_argument("--cert", default=None, help="a certificate file (default: the self-signed "
                                                   "one of --root)")
    args = parser.parse_args(argv)
    try:
        if args.command == "fingerprint":
            print(fingerprint(args.root, args.cert))
        else:
            serve(args.root, args.bind, args.workers, args.server, cert=args.cert, key=args.key,
                  self_signed=args.self_signed)
    except NodeMisconfigured as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    return 0
