"""What tests call (not fixtures): waits with deadlines, rows as the database has them now, the
console and API as a browser or a script speaks them, and an in-process RQ worker."""
import re
import time

from flask.testing import FlaskClient
from rq import Queue, SimpleWorker

from portal.extensions import QUEUE_NAMES, db, get_redis
from portal.models import Job
from portal.services import distribution_points
from tests.factories import PASSWORD

CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def poll(predicate, timeout=60.0, interval=0.05, message="condition"):
    """Poll until predicate() is truthy; its value. No database involved: for files, processes
    and sockets. Deadlines are generous (a machine twice as slow and busy passes); the interval
    is short, so a quick machine does not wait for nothing."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def wait_for(predicate, timeout=60.0, interval=0.05, message="condition"):
    """poll(), with the database session refreshed before each try (to see what other processes
    or threads committed)."""
    def refreshed():
        db.session.rollback()
        db.session.expire_all()
        return predicate()
    return poll(refreshed, timeout=timeout, interval=interval, message=message)


def fresh(job_id):
    """The job row as the database has it now."""
    db.session.expire_all()
    return db.session.get(Job, job_id)


def status_at(dp, key):
    """The status of asset `key` at the DP now (None when the DP does not list it)."""
    db.session.expire_all()
    items = {i["key"]: i for i in distribution_points.content(dp)}
    return items[key]["status"] if key in items else None


class InProcessWorker(SimpleWorker):
    """RQ's SimpleWorker without the thread that listens for commands sent to a worker (kill the
    horse, stop a job): Depot never sends them (a cancel is a column of the job row), and joining
    that thread at the end of each burst costs up to a second."""

    def subscribe(self):
        pass


def run_worker(burst=True):
    """Run a real RQ worker (in this process) on the real Redis until the queues drain."""
    conn = get_redis()
    worker = InProcessWorker([Queue(name, connection=conn) for name in QUEUE_NAMES],
                             connection=conn)
    worker.work(burst=burst)
    db.session.expire_all()


def copy_one(admin, work, key, dp):
    """Copy one asset to the DP on an in-process worker; the job row as it ended (or waits)."""
    from portal.services import copies

    [job] = copies.request_copies(admin, [key], [dp.id])
    work()
    return fresh(job.id)


def csrf_from(html: str) -> str:
    """The CSRF token a page carries (in its form or its meta tag)."""
    match = CSRF_RE.search(html)
    assert match, "page has no CSRF token"
    return match.group(1)


class IsolatedClient(FlaskClient):
    """Each request in an app context of its own, as in production: its own `g` (CSRF token,
    signed-in user) and database session; the test's session then sees what it committed."""

    def open(self, *args, **kwargs):
        with self.application.app_context():
            response = super().open(*args, **kwargs)
        db.session.expire_all()
        return response


class Console:
    """A signed-in browser session: sends the CSRF token like the pages do; `hx` adds HX-Request."""

    hx_default = False

    def __init__(self, client, user, token):
        self.client, self.user, self.csrf = client, user, token

    def _headers(self, hx, extra=None):
        headers = {"X-CSRFToken": self.csrf}
        if hx:
            headers["HX-Request"] = "true"
        headers.update(extra or {})
        return headers

    def get(self, url, hx=None, **kw):
        hx = self.hx_default if hx is None else hx
        return self.client.get(url, headers=self._headers(hx, kw.pop("headers", None)), **kw)

    def post(self, url, data=None, hx=None, **kw):
        hx = self.hx_default if hx is None else hx
        return self.client.post(url, data=data or {},
                                headers=self._headers(hx, kw.pop("headers", None)), **kw)


class HxConsole(Console):
    """A console session whose requests are all htmx requests."""

    hx_default = True


def sign_in(page, base_url, email, password=PASSWORD):
    """Sign in through the login page in the browser (Playwright), as a person does."""
    from playwright.sync_api import expect

    page.goto(f"{base_url}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()


class Api:
    """JSON API calls with a bearer token."""

    def __init__(self, client, token, user=None):
        self.client, self.token, self.user = client, token, user

    def _h(self):
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def get(self, url, **kw):
        return self.client.get(url, headers=self._h(), **kw)

    def post(self, url, json=None, **kw):
        return self.client.post(url, json=json, headers=self._h(), **kw)

    def patch(self, url, json=None, **kw):
        return self.client.patch(url, json=json, headers=self._h(), **kw)

    def delete(self, url, **kw):
        return self.client.delete(url, headers=self._h(), **kw)


class AgentCalls:
    """The agent API through the test client, as an agent speaks it."""

    def __init__(self, client, facts):
        self.client, self.facts = client, facts

    def enroll(self, secret, **facts):
        return self.client.post("/agent/v1/enroll",
                                json={"enroll_token": secret, **self.facts, **facts})

    def enrolled(self, secret, **facts) -> tuple[int, str]:
        """(device id, device token) of a new enrollment."""
        response = self.enroll(secret, **facts)
        assert response.status_code == 201, response.get_data(as_text=True)
        return response.json["device_id"], response.json["device_token"]

    def call(self, method, path, token, json=None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.client.open(f"/agent/v1{path}", method=method, json=json, headers=headers)


class RebindingDns:
    """A rebinding DNS server in front of socket.getaddrinfo: `name` resolves to 127.0.0.1 the
    first time and to the cloud metadata address 169.254.169.254 every time after; `asked`
    counts the lookups of `name` (other names resolve as usual)."""

    def __init__(self, monkeypatch, name: str = "dp.branch.test"):
        import socket

        self.name, self.asked, real = name, 0, socket.getaddrinfo

        def resolve(host, port, *args, **kw):
            if host != self.name:
                return real(host, port, *args, **kw)
            self.asked += 1
            address = "127.0.0.1" if self.asked == 1 else "169.254.169.254"
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port or 0)))]

        monkeypatch.setattr(socket, "getaddrinfo", resolve)

    def url(self, loopback_url: str) -> str:
        """`loopback_url` (http(s)://127.0.0.1:PORT) with the name in place of the address."""
        return loopback_url.replace("127.0.0.1", self.name)
