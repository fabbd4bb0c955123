"""WSGI apps served on loopback ports for tests: DP nodes, moto's S3, the OAuth providers' fakes."""
import threading

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
        self._server = make_server("127.0.0.1", self._port, self.app, threaded=True,
                                   request_handler=self.request_handler)
        self._port = self._server.server_port
        self.url = f"http://127.0.0.1:{self._port}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, name=self.name,
                                        daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        self._server = self._thread = None
