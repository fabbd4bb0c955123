"""The plan of an S3 delta upload: which parts of the new object are copied from the object
already at the key (`UploadPartCopy` with a byte range of it) and which are uploaded.

S3 has no partial write; a multipart upload can take any part from a range of an existing object
instead of from the network. Each new chunk (central's chunk index of the new file) is looked up
by digest in the index of the version the DP holds; runs of new chunks found one after another
in the old object become copy parts where they are at least 5 MiB long. S3 wants every part but
the last to be at least 5 MiB, so a shorter stretch to upload between two copies is grown by
taking bytes off the copies beside it (which stay 5 MiB or more, else are uploaded too): each
place that changed costs at least 5 MiB on the wire, a 1% change of a 2 GiB image in 40 places
about 10% of it. The plan is kept in the upload's resume record, so another process resumes the
same parts through ListParts.
"""
from dataclasses import dataclass

from portal.core.chunks import ChunkIndex

MiB = 1024 * 1024
MIN_PART = 5 * MiB  # S3's smallest part (all but the last)
MAX_PART = 5 * 1024 * MiB  # and its largest
MAX_PARTS = 10_000
# The most one UploadPartCopy is asked to copy: S3 copies at its own pace while the request
# waits, and a part should end well within the client's read timeout.
COPY_PART = 1024 * MiB


@dataclass(frozen=True)
class Part:
    """`length` bytes of the new file at `offset`: copied from `source` in the old object, or
    uploaded when `source` is None."""

    offset: int
    length: int
    source: int | None = None


@dataclass(frozen=True)
class DeltaPlan:
    """The parts of a delta upload, and the object they copy from: its ETag (copies are made
    only while the object is that one), SHA-256 and size (the DP's version planned from)."""

    etag: str
    sha256: str
    size: int
    parts: tuple[Part, ...]

    @property
    def reused(self) -> int:
        """Bytes of the new file copied at the DP instead of sent."""
        return sum(part.length for part in self.parts if part.source is not None)

    def record(self) -> dict:
        """The plan as the resume record keeps it (JSON): each part as [length, source]."""
        return {"etag": self.etag, "sha256": self.sha256, "size": self.size,
                "parts": [[part.length, part.source] for part in self.parts]}

    @classmethod
    def from_record(cls, record, file_size: int) -> "DeltaPlan | None":
        """The plan a resume record kept; None when it is not one for a file of `file_size`
        bytes (malformed, or its parts do not add up): the upload then starts afresh."""
        try:
            etag, sha256, size = record["etag"], record["sha256"], record["size"]
            parts, offset = [], 0
            for length, source in record["parts"]:
                if not (isinstance(length, int) and length > 0 and
                        (source is None or isinstance(source, int) and
                         0 <= source <= size - length)):
                    return None
                parts.append(Part(offset, length, source))
                offset += length
        except (KeyError, TypeError, ValueError):
            return None
        if not (isinstance(etag, str) and etag and isinstance(sha256, str)
                and isinstance(size, int)) or offset != file_size or not parts:
            return None
        return cls(etag, sha256, size, tuple(parts))


def plan_parts(new: ChunkIndex, old: ChunkIndex, part_size: int) -> list[Part] | None:
    """The parts of the new file (index `new`) as a multipart upload that copies what it can from
    the old object (index `old`) and uploads the rest in parts of about `part_size`, uploading
    as few bytes as S3's part sizes allow; None when nothing can be copied (no run of 5 MiB or
    more in common), so a plain upload does as well. Every part but the last is 5 MiB to 5 GiB,
    and there are at most 10,000."""
    runs = _runs(new, old)
    floor, part_size = MIN_PART, min(max(part_size, MIN_PART), MAX_PART // 2)
    while floor <= MAX_PART // 2:
        kept = _trimmed(_kept([run for run in runs if run[2] >= floor], floor), floor)
        if not kept:
            return None
        parts = _cut(_segments(new.size, kept), floor, max(part_size, floor),
                     max(COPY_PART, 2 * floor))
        if len(parts) <= MAX_PARTS:
            return parts
        floor *= 2  # too many places apart: coarser parts, fewer of them
    return None


def uploaded_bytes(new: ChunkIndex, old: ChunkIndex, part_size: int = 64 * MiB) -> int:
    """The bytes a delta upload of the new file over the old object sends: what its plan
    uploads, all of it when there is no plan (an estimate's question)."""
    parts = plan_parts(new, old, part_size)
    return new.size if parts is None else sum(p.length for p in parts if p.source is None)


def _runs(new: ChunkIndex, old: ChunkIndex) -> list[list[int]]:
    """[offset in new, offset in old, length] of the stretches of consecutive new chunks found
    one after another in the old file, in order (a chunk that is in the old file more than once
    is taken where it continues the stretch before it, else where it first is)."""
    first: dict[bytes, int] = {}
    at: dict[int, bytes] = {}
    for offset, _, digest in old.spans():
        first.setdefault(digest, offset)
        at[offset] = digest
    runs: list[list[int]] = []
    run: list[int] | None = None
    for offset, length, digest in new.spans():
        if run is not None and run[0] + run[2] == offset and at.get(run[1] + run[2]) == digest:
            run[2] += length
            continue
        source = first.get(digest)
        run = None if source is None else [offset, source, length]
        if run is not None:
            runs.append(run)
    return runs


def _kept(runs: list[list[int]], floor: int) -> list[list[int]]:
    """The runs (each `floor` or longer) worth copying: those that upload the fewest bytes.

    Between two copies, what is uploaded must be `floor` long unless it is nothing (S3's part
    size): a shorter stretch is grown by trimming the copies beside it, each of which must stay
    `floor` long. A stretch with a run left out in it is long enough already, so only runs kept
    side by side trim each other, and a run's trim to its left is taken first off the run before
    (what it can spare after its own left trim), the rest off itself. Each choice so is one step
    of a chain, solved by dynamic programming over (bytes copied, spare left for the next run),
    keeping the pairs no other pair beats in both."""
    def need(k: int) -> int:
        gap = runs[k][0] - (runs[k - 1][0] + runs[k - 1][2] if k else 0)
        return floor - gap if 0 < gap < floor else 0

    # Per run: the best (copied, spare, kept before?, index of that state) when it is kept, and
    # the best copied so far when it is not (with where that came from).
    keeps: list[list[tuple[int, int, bool, int]]] = []
    drops: list[tuple[int, bool, int]] = []
    for k, (_, _, length) in enumerate(runs):
        cap, wanted = length - floor, need(k)
        found = []
        if k == 0:
            if wanted <= cap:
                found.append((length - wanted, cap - wanted, False, -1))
        else:
            found.append((drops[k - 1][0] + length, cap, False, -1))
            for i, (copied, spare, _, _) in enumerate(keeps[k - 1]):
                own = wanted - min(wanted, spare)
                if own <= cap:
                    found.append((copied + length - wanted, cap - own, True, i))
        found.sort(key=lambda state: (-state[0], -state[1]))
        best: list[tuple[int, int, bool, int]] = []
        for state in found:
            if not best or state[1] > best[-1][1]:
                best.append(state)
        keeps.append(best)
        before = drops[k - 1] if k else (0, False, -1)
        kept_before = max(range(len(keeps[k - 1])), key=lambda i: keeps[k - 1][i][0],
                          default=None) if k else None
        if kept_before is not None and keeps[k - 1][kept_before][0] > before[0]:
            drops.append((keeps[k - 1][kept_before][0], True, kept_before))
        else:
            drops.append((before[0], False, -1))
    if not runs:
        return []
    # Back from the best end: which runs were kept.
    chosen: list[list[int]] = []
    k = len(runs) - 1
    last_kept = max(range(len(keeps[k])), key=lambda i: keeps[k][i][0], default=None)
    if last_kept is not None and keeps[k][last_kept][0] > drops[k][0]:
        kept, i = True, last_kept
    else:
        kept, i = False, -1
    while k >= 0:
        if kept:
            chosen.append(runs[k])
            _, _, kept, i = keeps[k][i]
        else:
            _, kept, i = drops[k]
        k -= 1
    return chosen[::-1]


def _trimmed(kept: list[list[int]], floor: int) -> list[list[int]]:
    """The kept runs with the trims `_kept` planned: a stretch shorter than `floor` between two
    of them (or before the first) grown to `floor`, off the run before first."""
    out: list[list[int]] = []
    spare = 0
    for start, source, length in kept:
        gap = start - (out[-1][0] + out[-1][2] if out else 0)
        wanted = floor - gap if 0 < gap < floor else 0
        taken = min(wanted, spare) if out else 0
        if taken:
            out[-1][2] -= taken
        own = wanted - taken
        out.append([start + own, source + own, length - own])
        spare = length - own - floor
    return out


def _segments(size: int, copies: list[list[int]]) -> list[list]:
    """The file as [start, length, source] in order: the copies, and uploads (source None)
    between them."""
    segments: list[list] = []
    position = 0
    for start, source, length in copies:
        if start > position:
            segments.append([position, start - position, None])
        segments.append([start, length, source])
        position = start + length
    if position < size:
        segments.append([position, size - position, None])
    return segments


def _cut(segments: list[list], floor: int, part_size: int, copy_part: int) -> list[Part]:
    """The segments as parts, near-equal within a segment: uploads in parts of at most
    `part_size` (or a little more where a smaller one would be under `floor`), copies in parts
    of at most `copy_part`."""
    parts: list[Part] = []
    for start, length, source in segments:
        if source is None:
            count = max(1, min(-(-length // part_size), length // floor))
        else:
            count = -(-length // copy_part)
        position = 0
        for n in range(count):
            piece = length // count + (1 if n < length % count else 0)
            parts.append(Part(start + position, piece,
                              None if source is None else source + position))
            position += piece
    return parts
