"""What a job card and a deployment's progress say, decided once so that the states read honestly:
a queued job waits for a worker (no percent, no bar value), a running one shows bytes done of the
total with its throughput and time left, a finished one says done.

Templates call these (registered in portal/web/context.py) instead of deciding in Jinja.
"""
from typing import NamedTuple

from portal.core.throughput import progress_words, rate
from portal.core.units import human_bytes
from portal.models import Deployment, Job
from portal.services.job_lists import MAX_FOLLOWED

# A job's kind and the word that ties it to its DP: "Copy to Seattle", "Delete from Seattle".
_TIES = {"copy": "to", "delete": "from", "rescan": "of", "verify": "of"}
# How many of a kind: "1 copy", "2 copies".
_NOUNS = {"copy": ("copy", "copies"), "delete": ("delete", "deletes"),
          "rescan": ("rescan", "rescans"), "verify": ("verify", "verifies")}
_STATE_WORDS = {"queued": "queued", "running": "running", "succeeded": "done",
                "failed": "failed", "cancelled": "cancelled"}


class ProgressLine(NamedTuple):
    """A progress bar's value (None: none, the bar shows that it waits) and the words under it."""

    percent: int | None
    words: str


def job_title(job: Job) -> str:
    """"Copy to Seattle", "Rescan of Central"; the kind alone for a job of no DP."""
    title = job.kind.capitalize()
    if job.dp is None:
        return title
    return f"{title} {_TIES.get(job.kind, 'of')} {job.dp.name}"


def job_progress(job: Job) -> ProgressLine:
    """The bar and words of an active job: queued waits for a worker (or says why it waits: a
    retry later, a copy window), running counts bytes with throughput and time left."""
    if job.state == "queued":
        return ProgressLine(None, job.phase or "waiting for a worker")
    parts = [job.phase or ("finishing" if job.bytes_total and job.bytes_done >= job.bytes_total
                           else "starting")]
    if job.bytes_total:
        parts.append(f"{human_bytes(job.bytes_done)} of {human_bytes(job.bytes_total)} "
                     f"({job.percent}%)")
    if job.files_total:
        parts.append(f"{job.files_done} / {job.files_total} files")
    if job.bytes_total and job.bytes_done < job.bytes_total:
        parts.append(progress_words(job.bytes_done, job.bytes_total, job.bytes_per_second))
    return ProgressLine(job.percent, " · ".join(parts))


def deployment_progress(d: Deployment) -> ProgressLine:
    """The bar and words of an active deployment: pending waits for the agent; downloading and
    applying show the bytes the agent reported, with the average rate since it started and the
    time left (what the agent reports holds no more: "—" when it cannot be told)."""
    if d.state == "pending":
        return ProgressLine(None, "waiting for the agent")
    parts = [d.phase or d.state]
    if d.bytes_total:
        parts.append(f"{human_bytes(d.bytes_done)} of {human_bytes(d.bytes_total)} ({d.percent}%)")
        if d.bytes_done < d.bytes_total:
            elapsed = (d.reported_at - d.started_at).total_seconds() \
                if d.reported_at and d.started_at else None
            parts.append(progress_words(d.bytes_done, d.bytes_total, rate(d.bytes_done, elapsed)))
    return ProgressLine(d.percent, " · ".join(parts))


def jobs_summary(jobs: list[Job]) -> str:
    """What a set of jobs started together amounts to now: "2 copies to Seattle queued", "1 copy
    running, 1 queued", "2 copies done", "1 copy done, 1 failed"."""
    if not jobs:
        return "nothing started"
    kinds = {job.kind for job in jobs}
    kind = kinds.pop() if len(kinds) == 1 else None
    singular, plural = _NOUNS.get(kind, ("job", "jobs"))
    dps = {job.dp.name for job in jobs if job.dp is not None}
    where = f" {_TIES.get(kind, 'of')} {dps.pop()}" if kind and len(dps) == 1 else ""
    counts: dict[str, int] = {}
    for job in jobs:
        word = _STATE_WORDS.get(job.state, job.state)
        counts[word] = counts.get(word, 0) + 1
    order = ("running", "queued", "done", "failed", "cancelled")
    phrases = [f"{counts[w]} {w}" for w in order if counts.get(w)]
    total = len(jobs)
    noun = singular if total == 1 else plural
    if len(phrases) == 1:
        return f"{total} {noun}{where} {phrases[0].split(' ', 1)[1]}"
    first_count, first_word = phrases[0].split(" ", 1)
    first_noun = singular if first_count == "1" else plural
    return f"{first_count} {first_noun}{where} {first_word}, " + ", ".join(phrases[1:])


def started_note(jobs: list[Job], nothing: str = "nothing started") -> tuple[str, list[str]]:
    """The note over jobs started together and the ids it keeps following (none once they have
    all finished, or too many to follow: the note then stays as it is)."""
    if not jobs:
        return nothing, []
    follow = [job.id for job in jobs] if any(job.is_active for job in jobs) else []
    return jobs_summary(jobs), follow if len(follow) <= MAX_FOLLOWED else []
