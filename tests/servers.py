"""Servers for tests, on loopback ports they bind themselves (port 0, never a port picked and
released first): WSGI apps served in this process (DP nodes, moto's S3, the OAuth providers'
fakes), gunicorn processes whose port is read from their log, and a port that refuses."""
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

from werkzeug.serving import make_server


class LoopbackServer:
    """An app served on 127.0.0.1 by werkzeug's threaded server. A test may stop it (the port then
    refuses connections, as a machine that is down) and start it again on the same port."""

    def __init__(self, app, name: str, request_handler=None):
        self.app, self.name, self.request_handler = app, name, request_handler
        self.url = ""
        self._server = self._thread = None
        self._port = 0

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> str:
        """Serve on the server's port (a new one the first time); its URL."""
        assert self._server is None, f"{self.name} is already running"
        self._server, self._port, loop = self._bind(self._port)
        self.url = f"http://127.0.0.1:{self._port}"
        self._thread = threading.Thread(target=loop, name=self.name, daemon=True)
        self._thread.start()
        return self.url

    def _bind(self, port: int):
        """The server listening on `port` (0: a new one), the port it got, and its loop."""
        server = make_server("127.0.0.1", port, self.app, threaded=True,
                             request_handler=self.request_handler)
        return server, server.server_port, lambda: server.serve_forever(poll_interval=0.05)

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        self._server = self._thread = None


class WaitressLoopback(LoopbackServer):
    """An app served on 127.0.0.1 by waitress in a thread of this process, as LoopbackServer (a
    DP node under the server it runs with on Windows); stop and start again on the same port."""

    def _bind(self, port: int):
        from waitress import create_server

        server = create_server(self.app, host="127.0.0.1", port=port, threads=8,
                               asyncore_loop_timeout=0.05)
        return server, server.effective_port, server.run

    def stop(self) -> None:
        """Close the listening socket and every connection (in the server's own loop, which
        then ends), then wait for the request threads."""
        if self._server is None:
            return
        server = self._server

        def close_all():
            for dispatcher in list(server._map.values()):
                dispatcher.close()

        try:
            server.trigger.pull_trigger(close_all)
        except OSError:  # the loop already ended and closed its trigger: close what is left here
            close_all()
        self._thread.join(timeout=10)
        server.task_dispatcher.shutdown(timeout=10)
        self._server = self._thread = None


class TlsLoopback(LoopbackServer):
    """An app served over HTTPS on 127.0.0.1 by werkzeug's threaded server with a certificate and
    key (files); `certificate` may be changed between a stop and a start on the same port, as a
    node whose certificate was replaced (or a machine that took its address)."""

    def __init__(self, app, name: str, certificate: tuple[str, str]):
        super().__init__(app, name)
        self.certificate = certificate

    def start(self) -> str:
        self.url = super().start().replace("http://", "https://", 1)
        return self.url

    def _bind(self, port: int):
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*self.certificate)
        server = make_server("127.0.0.1", port, self.app, threaded=True, ssl_context=context)
        return server, server.server_port, lambda: server.serve_forever(poll_interval=0.05)


def serve_in_process(app, name: str):
    """LoopbackServer, or WaitressLoopback when DEPOT_TEST_DP_SERVER=waitress (make test runs
    tests/dpnode once more so)."""
    if os.environ.get("DEPOT_TEST_DP_SERVER", "gunicorn") == "waitress":
        return WaitressLoopback(app, name)
    return LoopbackServer(app, name)


class ClosedPort:
    """A loopback port held bound but never listening: connections to it are refused (as a machine
    where nothing runs), and no other process can take the port while the test holds it."""

    def __init__(self):
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._sock.close()


# gunicorn, waitress (and cheroot, the node's HTTPS server without gunicorn)
LISTENING = re.compile(r"(?:Listening at:|Serving on) https?://[\d.]+:(\d+)")


def log_text(path) -> str:
    with open(path, "rb") as fh:
        return fh.read().decode(errors="replace")


def bound_port(proc: subprocess.Popen, log_path, timeout: float = 90) -> int:
    """The port a gunicorn started with `--bind HOST:0` listens on, read from its log ("Listening
    at: http://HOST:PORT"); a process that exits first fails at once, with its log."""
    deadline = time.monotonic() + timeout
    while True:
        found = LISTENING.search(log_text(log_path))
        if found:
            return int(found.group(1))
        if proc.poll() is not None:
            raise AssertionError(f"the server exited while starting:\n{log_text(log_path)[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"the server did not listen within {timeout} s:\n"
                                 f"{log_text(log_path)[-3000:]}")
        time.sleep(0.05)


def wait_answering(url: str, proc: subprocess.Popen, log_path, timeout: float = 90) -> None:
    """Until GET url answers (any status): refused, reset or slow answers are waited out until
    the deadline; a process that exits fails at once, with its log."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=10).close()
            return
        except urllib.error.HTTPError:  # an answer, if not a 200
            return
        except OSError:  # refused, reset, or a read that timed out while the server starts
            pass
        if proc.poll() is not None:
            raise AssertionError(f"the server exited while starting:\n{log_text(log_path)[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer within {timeout} s:\n"
                                 f"{log_text(log_path)[-3000:]}")
        time.sleep(0.05)


class Gunicorn:
    """The console (wsgi:app) served by a real gunicorn on a loopback port it binds itself (port
    0, read from its log), in its own process group; `url` once it answers."""

    def __init__(self, env: dict, log_path, cwd: str):
        self.log_path = log_path
        gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [gunicorn, "--bind", "127.0.0.1:0", "--worker-class", "gthread", "--workers", "1",
                 "--threads", "4", "--no-control-socket", "wsgi:app"],
                env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self.url = f"http://127.0.0.1:{bound_port(self.proc, log_path)}"
            wait_answering(f"{self.url}/login", self.proc, log_path)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGKILL of its process group: at the end of a test nothing is left to check, and a
        graceful stop waits a second or more for the browser's kept-alive connections.
        (`make run` stopping cleanly on Ctrl-C is a test of its own, in tests/test_cli.py.)"""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
