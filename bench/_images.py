"""Images for bench/delta.py and the updates a month brings them, written to files on disk.

The kinds of update are those of tests/images.py (changed in place, shifted, appended to with a
new header); the tests build small images as bytes in memory, which at the bench's 2 GiB would
hold three copies of the image at once, so here an update is a list of edits streamed from the
old file into the new one. Every inserted byte is random (what compressed WIM data looks like):
no chunk of the new version can be found anywhere but where it was.
"""
import os
import random
import subprocess

from bench._depot import BenchFailed

MiB = 1024 * 1024
BLOCK = 8 * MiB
WIM_HEADER = 4096

# (offset in the old file, bytes removed there, random bytes inserted there)
Edit = tuple[int, int, int]


def in_place(size: int, places: int = 40, share: float = 0.01, seed: int = 7) -> list[Edit]:
    """`share` of the bytes rewritten, in `places` spots spread over the file (same size)."""
    rng, span, stride = random.Random(seed), int(size * share / places), size // places
    return [(stride * n + rng.randrange(stride - span), span, span) for n in range(places)]


def shifted(size: int, places: int = 40, share: float = 0.01, seed: int = 8) -> list[Edit]:
    """`share` of the file's size inserted and deleted, half each, alternately in `places` spots:
    the data between two spots moves, back and forth (the size stays)."""
    rng, span, stride = random.Random(seed), int(size * share / places), size // places
    edits = []
    for n in range(places):
        at = stride * n + rng.randrange(stride - span)
        edits.append((at, 0, span) if n % 2 == 0 else (at, span, 0))
    return edits


def appended(size: int, share: float = 0.01) -> list[Edit]:
    """What a WIM update does: the header at the start rewritten, new resources appended."""
    return [(0, WIM_HEADER, WIM_HEADER), (size, 0, int(size * share))]


def write_random(fh, count: int) -> None:
    while count > 0:
        fh.write(os.urandom(min(BLOCK, count)))
        count -= BLOCK


def write_update(old: str, new: str, edits: list[Edit]) -> None:
    """Write `new`: `old` with `edits` (not overlapping) applied, streamed."""
    with open(old, "rb") as src, open(new, "wb") as dst:
        position = 0
        for at, removed, inserted in sorted(edits):
            copy_run(src, dst, at - position)
            write_random(dst, inserted)
            src.seek(removed, os.SEEK_CUR)
            position = at + removed
        while block := src.read(BLOCK):
            dst.write(block)


def copy_run(src, dst, count: int) -> None:
    while count > 0:
        block = src.read(min(BLOCK, count))
        if not block:
            raise ValueError("an edit lies past the end of the old file")
        dst.write(block)
        count -= len(block)


def random_folder(folder: str, total: int, seed: int = 11) -> int:
    """Files of random bytes, 64 KiB to 16 MiB each, adding up to `total`: their count."""
    rng, written, count = random.Random(seed), 0, 0
    while written < total:
        size = min(rng.randrange(64 * 1024, 16 * MiB), total - written)
        sub = os.path.join(folder, f"dir{count % 7}")
        os.makedirs(sub, exist_ok=True)
        with open(os.path.join(sub, f"file{count:04}.bin"), "wb") as fh:
            write_random(fh, size)
        written, count = written + size, count + 1
    return count


def wimlib(*argv: str) -> None:
    """Run `wimlib-imagex` quietly (it draws progress on the terminal); BenchFailed with its
    error if it fails."""
    done = subprocess.run(["wimlib-imagex", *argv], capture_output=True, text=True)
    if done.returncode:
        raise BenchFailed(f"wimlib-imagex {argv[0]} failed: {done.stderr.strip()[-500:]}")
