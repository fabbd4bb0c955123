"""The agent API client (/agent/v1/): JSON over urllib, errors as ServerError."""
import json
import urllib.error
import urllib.request

TIMEOUT = 30


class ServerError(Exception):
    """An answer other than success: `status` (0 when the server was not reached), `code`,
    `message`, and `retry_after` seconds when the server gave one."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None):
        super().__init__(f"{status} {code}: {message}" if status else message)
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after


class Api:
    """Calls to one server, with the device token once there is one."""

    def __init__(self, server: str, token: str | None = None, user_agent: str = "depot-agent"):
        self.server = server.rstrip("/")
        self.token = token
        self.user_agent = user_agent

    def call(self, method: str, path: str, body: dict | None = None, auth: bool = True) -> dict:
        """One call; the JSON answer, or ServerError."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json", "User-Agent": self.user_agent}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if auth and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(f"{self.server}/agent/v1{path}", data=data,
                                         headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise _error(exc) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServerError(0, "unreachable", f"cannot reach {self.server}: {reason}") from None

    def enroll(self, enroll_token: str, facts: dict) -> dict:
        return self.call("POST", "/enroll", {"enroll_token": enroll_token, **facts}, auth=False)

    def heartbeat(self, facts: dict) -> dict:
        return self.call("POST", "/heartbeat", facts)

    def work(self) -> dict:
        return self.call("GET", "/work")

    def manifest(self, deployment_id: int) -> dict:
        return self.call("GET", f"/deployments/{deployment_id}")

    def progress(self, deployment_id: int, report: dict) -> dict:
        return self.call("POST", f"/deployments/{deployment_id}/progress", report)


def _error(exc: urllib.error.HTTPError) -> ServerError:
    try:
        body = json.loads(exc.read() or b"{}")
        error = body.get("error") or {}
        code, message = error.get("code", "error"), error.get("message", exc.reason)
    except (ValueError, AttributeError, OSError):
        code, message = "error", str(exc.reason)
    retry = exc.headers.get("Retry-After") if exc.headers else None
    try:
        retry_after = float(retry) if retry else None
    except ValueError:
        retry_after = None
    exc.close()
    return ServerError(exc.code, code, message, retry_after)
