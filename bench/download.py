"""Benchmark of endpoints downloading an image from a DP node at once, against nginx serving the
same file in the same run.

A file of --size-gib (random bytes, written in full: nothing sparse) is written to
bench/.work/node-root/Images/bench.wim and read once, so every run below reads it from the page
cache (which cannot be dropped). These servers offer it on 127.0.0.1:
- Depot: a DP node started by its documented production command, `flask --app wsgi dp-node run
  --root DIR --bind 127.0.0.1:PORT` (it execs gunicorn: gthread, 1 worker x 16 threads, access
  log on), and a signed link made as the central server makes it for an agent
  (`portal.core.signing.sign`, what `storage_for(dp).download_link(path, ttl)` calls for a DP
  node): `GET /dp/v1/download?path&expires&sig`. The node checks the signature, then hands
  gunicorn the file (seeked to a Range's start) as a file wrapper, sent with sendfile(2).
- nginx: Debian's /usr/sbin/nginx as this bench's own process (`daemon off`, config, pid, logs
  and temp folders in bench/.work/nginx/), `worker_processes 2` (one a core, as gunicorn's
  workers), `sendfile on`, access log on, serving the same root with a plain `location`.
- For reference, the README's optional "behind nginx" set-up: a second node started the same way
  with DEPOT_DP_X_ACCEL_PREFIX=/depot-files/ behind that nginx, which proxies /dp/ to it; the node
  checks the link and answers X-Accel-Redirect, nginx sends the bytes.
The client is the same for all: --clients (8) `curl` processes from Debian started at once, each
fetching the whole file over its own connection to /dev/null (`-o /dev/null`, no hashing:
hashing 8 GiB on this machine's cores would measure the client). Each transfer is checked for
exit status, HTTP 200 and the full size. Outside the timing, one download from each server is
hashed (SHA-256) against the file, and the Depot link is checked to be refused once tampered with.
Throughput = clients x size / wall time from the first curl's start to the last one's exit.
Every server runs --rounds (3) times, interleaved round by round (order turned each round) so a
slow spell of the machine hits all; each figure is the best of its runs, every run is printed.
- The first node again under waitress (`--server waitress`, the server a Windows branch runs):
  the node checks the link, then hands waitress the file (seeked to a Range's start) as its
  wsgi.file_wrapper, and waitress reads and sends it in blocks itself.
Every server is also asked, by the same clients, for the file's second half (Range, 206), as an
endpoint resuming does, and the node's CPU seconds per GiB served are printed for both nodes,
whole files and Ranges (goal under waitress: median <= 1.5).
ratio = Depot MiB/s / nginx MiB/s, higher is better, goal >= 0.8. Client, servers and bench
share this machine's cores: the figures compare the servers under the same load, not a network.
About how much CPU other processes took during the runs is printed (see `others`), with a warning
above 15% of the machine: then the figures are not the servers' alone.

Usage: .venv/bin/python bench/download.py [--size-gib 1] [--clients 8] [--rounds 3]
       [--skip-accel] [--keep]
"""
import os
import sys

BENCH_DIR = os.path.dirname(os.path.realpath(__file__))
# Off with bench/ (its copy.py would shadow the standard library's `copy`), on with the repository.
sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != BENCH_DIR]
sys.path.insert(0, os.path.dirname(BENCH_DIR))

import argparse  # noqa: E402
import contextlib  # noqa: E402
import hashlib  # noqa: E402
import logging  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

import requests  # noqa: E402

from bench._depot import WORK, MiB, check, run, sha256_file  # noqa: E402
from bench.copy import NODE_KEY, NodeProcess, poll_until, port_for_nginx, stop_process, write_image  # noqa: E402
from portal.core import signing  # noqa: E402
from portal.launcher import descendants  # noqa: E402

NGINX = "/usr/sbin/nginx"
IMAGE = "Images/bench.wim"
LINK_TTL = 3600  # DEPOT_DOWNLOAD_LINK_TTL's default
DEPOT, NGINX_NAME, ACCEL = "Depot DP node", "nginx", "Depot node behind nginx (X-Accel)"
WAITRESS = "Depot DP node (waitress)"
RANGED = (DEPOT, WAITRESS, NGINX_NAME)  # also asked for a Range
WAITRESS_CPU_GOAL = 1.5  # CPU s per GiB served under waitress, whole files and Ranges alike


@contextlib.contextmanager
def environment(**values):
    """os.environ with `values` set for the duration (NodeProcess builds its env from it)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class NginxProcess:
    """nginx in the foreground as this bench's own process, serving the `servers` blocks (its
    config, pid, logs and temp folders in bench/.work/<name>/), 2 workers, sendfile and access
    log on. `probe` is a URL that answers (any status) once it is up."""

    def __init__(self, name: str, servers: str, probe: str):
        self.prefix, self.probe = os.path.join(WORK, name), probe
        for folder in ("logs", "temp"):
            os.makedirs(os.path.join(self.prefix, folder), exist_ok=True)
        # As root, nginx would hand its workers to `nobody`; keep them this user, like gunicorn.
        user = "user root root;\n" if os.geteuid() == 0 else ""
        temp = os.path.join(self.prefix, "temp")
        self.conf = os.path.join(self.prefix, "nginx.conf")
        with open(self.conf, "w") as fh:
            fh.write(f"""{user}daemon off;
worker_processes 2;
pid {self.prefix}/nginx.pid;
error_log {self.prefix}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log {self.prefix}/logs/access.log;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
{servers}
}}
""")
        self.log = open(os.path.join(self.prefix, "logs", "stderr.log"), "wb")
        self.proc = subprocess.Popen([NGINX, "-p", self.prefix, "-c", self.conf, "-e",
                                      os.path.join(self.prefix, "logs", "error.log")],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def wait_up(self) -> None:
        def up():
            check(self.proc.poll() is None, f"nginx exited; see {self.prefix}/logs/")
            try:
                requests.get(self.probe, timeout=5)
                return True
            except requests.ConnectionError:
                return False
        poll_until(up, 30, "nginx to answer", interval=0.1)

    def stop(self) -> None:
        stop_process(self.proc)  # SIGTERM: nginx's fast shutdown; its workers go with it
        self.log.close()


def nginx_for_downloads(root: str, accel_upstream: str | None) -> tuple[NginxProcess, int, int]:
    """nginx serving `root` as static files on one port and, when `accel_upstream` (a DP node
    with DEPOT_DP_X_ACCEL_PREFIX=/depot-files/) is given, the README's proxy in front of it on
    another: (nginx, static port, proxy port)."""
    port, accel_port = port_for_nginx(), port_for_nginx()
    servers = f"""    server {{
        listen 127.0.0.1:{port};
        location / {{ root {root}; }}
    }}"""
    if accel_upstream:
        servers += f"""
    server {{
        listen 127.0.0.1:{accel_port};
        location /dp/ {{ proxy_pass {accel_upstream}; proxy_request_buffering off;
                        client_max_body_size 80m; }}
        location /depot-files/ {{ internal; alias {root}/; }}
    }}"""
    return NginxProcess("nginx", servers, f"http://127.0.0.1:{port}/"), port, accel_port


def machine_cpu() -> float:
    """CPU seconds the machine has spent busy so far (/proc/stat, all cores): user, nice, system,
    irq and softirq time (a process's own CPU time counts the softirq work of its sockets, which
    /proc/stat books apart); idle, iowait and steal left out."""
    with open("/proc/stat") as fh:
        user, nice, system, _idle, _iowait, irq, softirq = (
            int(v) for v in fh.readline().split()[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of a process and each of its descendants (gunicorn and its workers), by pid;
    the first also counts its reaped children."""
    ticks, cpu = os.sysconf("SC_CLK_TCK"), {}
    for p in [pid, *descendants(pid)]:
        try:
            with open(f"/proc/{p}/stat") as fh:
                rest = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        cpu[p] = sum(int(v) for v in rest[11:13] + (rest[13:15] if p == pid else [])) / ticks
    return cpu


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its descendants."""
    return sum(process_cpu(pid).values())


def others(cpu: float, wall: float) -> None:
    """Say how much of the machine's CPU went to other processes in a run: /proc/stat's busy time
    less this run's own processes. /proc/stat samples on timer ticks, which an idle core skips,
    so it undercounts light, bursty load (the figure may come out below zero: none measurable);
    it tells a machine busy with other work from a quiet one, no more."""
    cpu = max(0.0, cpu)
    share = cpu / (wall * (os.cpu_count() or 1))
    print(f"  other processes: about {cpu:.1f} CPU s ({share:.0%} of the machine)"
          + ("; WARNING: the machine was busy with other work, these figures are not the "
             "server's alone" if share > 0.15 else ""))


def fetch_all(url: str, clients: int, size: int, timeout: float, server_pids: list[int],
              range_from: int = 0) -> tuple[float, list[float], float, float]:
    """`clients` curl processes fetching `url` at once to /dev/null (from byte `range_from` on
    with a Range header when it is not 0): (wall s, each one's B/s, CPU s that neither they nor
    the servers `server_pids` (with descendants) used, CPU s the servers used); every transfer
    checked for exit status, HTTP 200 (206 for a Range) and the bytes asked for."""
    servers_before = sum(tree_cpu(pid) for pid in server_pids)
    children_before, machine_before = resource.getrusage(resource.RUSAGE_CHILDREN), machine_cpu()
    argv = ["curl", "--silent", "--show-error", "--max-time", str(int(timeout)), "--output",
            "/dev/null", "--write-out", "%{http_code} %{size_download} %{speed_download}", url]
    if range_from:
        argv[1:1] = ["--range", f"{range_from}-"]
    start = time.perf_counter()
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(clients)]
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=timeout + 10)
            results.append((proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    wall = time.perf_counter() - start
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    curl_cpu = (children.ru_utime + children.ru_stime - children_before.ru_utime
                - children_before.ru_stime)
    server_cpu = sum(tree_cpu(pid) for pid in server_pids) - servers_before
    rest = machine_cpu() - machine_before - curl_cpu - server_cpu
    speeds = []
    for code, out, err in results:
        check(code == 0, f"curl exited with {code}: {err.strip()}")
        status, downloaded, speed = out.split()
        expected = "206" if range_from else "200"
        check(status == expected, f"the server answered {status}, not {expected}")
        check(int(downloaded) == size - range_from,
              f"curl received {downloaded} of {size - range_from} bytes")
        speeds.append(float(speed))
    return wall, speeds, rest, server_cpu


def verify_download(url: str, digest: str) -> None:
    """One download hashed as it arrives: the bytes are the file's."""
    sha = hashlib.sha256()
    with requests.get(url, stream=True, timeout=60) as response:
        check(response.status_code == 200,
              f"{url} answered {response.status_code}: {response.text[:300]}")
        for chunk in response.iter_content(MiB):
            sha.update(chunk)
    check(sha.hexdigest() == digest, f"the download from {url} differs from the file (SHA-256)")


def bench(args) -> None:
    size = int(args.size_gib * 1024 * MiB)
    os.makedirs(WORK)
    root = os.path.join(WORK, "node-root")
    start = time.perf_counter()
    write_image(os.path.join(root, IMAGE), size)
    os.sync()  # written back now, not while something is measured
    digest = sha256_file(os.path.join(root, IMAGE))  # also the warm-up read
    print(f"image of {size / MiB:.0f} MiB written and read once ({time.perf_counter() - start:.1f}"
          " s); every run below reads it from the page cache")

    node = NodeProcess(root, os.path.join(WORK, "node.log"))
    servers: list = [node]
    try:
        waitress = NodeProcess(root, os.path.join(WORK, "node-waitress.log"), server="waitress")
        servers.append(waitress)
        accel_node = None
        if not args.skip_accel:
            with environment(DEPOT_DP_X_ACCEL_PREFIX="/depot-files/"):
                accel_node = NodeProcess(root, os.path.join(WORK, "node-accel.log"))
            servers.append(accel_node)
        nginx, nginx_port, accel_port = nginx_for_downloads(
            root, accel_node.url if accel_node else None)
        servers.append(nginx)
        for started in servers:
            started.wait_up()

        def depot_link(base: str) -> str:
            return signing.sign(signing.DP_NODE, base, NODE_KEY, IMAGE, LINK_TTL)
        urls = {DEPOT: lambda: depot_link(node.url),
                WAITRESS: lambda: depot_link(waitress.url),
                NGINX_NAME: lambda: f"http://127.0.0.1:{nginx_port}/{IMAGE}"}
        if accel_node:
            urls[ACCEL] = lambda: depot_link(f"http://127.0.0.1:{accel_port}")

        # Outside the timing: the bytes are right, a tampered link is refused, and each server
        # has served (gunicorn's workers have imported the app) before anything is measured.
        for name, url in urls.items():
            verify_download(url(), digest)
        for base in (node.url, waitress.url):
            tampered = base + "/dp/v1/download?" + depot_link(base).split("?", 1)[1].replace(
                "Images%2Fbench.wim", "Images%2Fother.wim")
            check(requests.get(tampered, timeout=10).status_code == 403,
                  "the node served a link whose path was changed")
        print(f"servers on 127.0.0.1: {DEPOT} (`flask --app wsgi dp-node run`: gunicorn gthread, "
              f"1 worker x 16 threads) :{node.port}; {WAITRESS} (the same with --server "
              f"waitress, 16 threads) :{waitress.port}; {NGINX_NAME} {nginx_version()} "
              f"(worker_processes 2, sendfile on) :{nginx_port}"
              + (f"; {ACCEL} :{accel_port}" if accel_node else "")
              + f"; {os.cpu_count()} cores; one download from each hashed: identical")

        timeout = 60 + args.clients * size / MiB / 20  # >= 20 MiB/s together, or something is wrong
        pids = {DEPOT: [node.proc.pid], WAITRESS: [waitress.proc.pid],
                NGINX_NAME: [nginx.proc.pid]}
        if accel_node:
            pids[ACCEL] = [nginx.proc.pid, accel_node.proc.pid]
        # The same servers asked for the file's second half (Range: bytes=N-, 206), as an
        # endpoint resuming a download does.
        range_from = size // 2
        cases = [(name, False) for name in urls] + [(name, True) for name in RANGED]
        runs: dict = {case: [] for case in cases}
        for round_no in range(args.rounds):
            for name, ranged in (cases if round_no % 2 == 0 else list(reversed(cases))):
                runs[name, ranged].append(fetch_all(urls[name](), args.clients, size, timeout,
                                                    pids[name], range_from if ranged else 0))

        def line(case) -> tuple[float, str]:
            total = args.clients * (size - (range_from if case[1] else 0)) / MiB
            walls = [run[0] for run in runs[case]]
            best = min(range(len(walls)), key=walls.__getitem__)
            speeds = runs[case][best][1]
            rate = total / walls[best]
            return rate, (f"{rate:.0f} MiB/s ({total / 1024:.1f} GiB in {walls[best]:.2f} s; runs "
                          f"{', '.join(f'{total / w:.0f}' for w in walls)} MiB/s; per client in "
                          f"the best run {min(speeds) / MiB:.0f}-{max(speeds) / MiB:.0f} MiB/s)")

        def cpu_per_gib(case) -> list[float]:
            gib = args.clients * (size - (range_from if case[1] else 0)) / (1024 * MiB)
            return [run[3] / gib for run in runs[case]]

        print(f"\n== {args.clients} curl clients at once, each the whole {size / MiB:.0f} MiB file "
              f"to /dev/null, best of {args.rounds} ==")
        nginx_rate, nginx_line = line((NGINX_NAME, False))
        depot_rate, depot_line = line((DEPOT, False))
        ratio = depot_rate / nginx_rate
        print(f"{DEPOT}: {depot_line}")
        print(f"  vs {NGINX_NAME}: {nginx_line} -> ratio {ratio:.2f} (Depot/nginx, goal >= 0.8: "
              f"{'met' if ratio >= 0.8 else 'NOT met'})")
        waitress_rate, waitress_line = line((WAITRESS, False))
        print(f"{WAITRESS}: {waitress_line} -> ratio {waitress_rate / nginx_rate:.2f}")
        if accel_node:
            accel_rate, accel_line = line((ACCEL, False))
            print(f"  for reference, {ACCEL}: {accel_line} -> ratio {accel_rate / nginx_rate:.2f}")

        print(f"\n== the same, each asking for the second half (Range: bytes={range_from}-, 206) ==")
        nginx_rate, nginx_line = line((NGINX_NAME, True))
        print(f"{NGINX_NAME}: {nginx_line}")
        for name in (DEPOT, WAITRESS):
            rate, text = line((name, True))
            print(f"{name}: {text} -> ratio {rate / nginx_rate:.2f} (Depot/nginx)")

        print("\n== the node's CPU seconds per GiB served (all its processes; lower is better) ==")
        for name in (DEPOT, WAITRESS):
            for ranged in (False, True):
                figures = cpu_per_gib((name, ranged))
                middle = statistics.median(figures)
                print(f"{name}, {'Range' if ranged else 'whole file'}: median {middle:.2f} "
                      f"(runs {', '.join(f'{f:.2f}' for f in figures)})"
                      + (f"; goal <= {WAITRESS_CPU_GOAL}: "
                         f"{'met' if middle <= WAITRESS_CPU_GOAL else 'NOT met'}"
                         if name == WAITRESS else ""))
        every = [run for case in runs for run in runs[case]]
        others(sum(run[2] for run in every), sum(run[0] for run in every))
    finally:
        for server in reversed(servers):
            server.stop()


def nginx_version() -> str:
    out = subprocess.run([NGINX, "-v"], capture_output=True, text=True).stderr.strip()
    return out.rsplit("/", 1)[-1] if "/" in out else out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=float, default=1.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-accel", action="store_true",
                        help="leave out the node behind nginx (X-Accel-Redirect)")
    parser.add_argument("--keep", action="store_true", help="keep bench/.work for a look")
    args = parser.parse_args()
    logging.disable(logging.INFO)
    if args.size_gib <= 0 or args.clients < 1 or args.rounds < 1:
        parser.error("--size-gib, --clients and --rounds must be positive")
    for tool in (NGINX, "curl"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed (Debian: apt-get install nginx-light curl)")
    return run(args, [bench])


if __name__ == "__main__":
    sys.exit(main())
