"""Throughput and time left (portal/core/throughput.py) and the words a job card and a deployment
show (services/progress_words.py): honest states, "—" for what cannot be known."""
from datetime import timedelta

import pytest

from portal.core.throughput import (
    RateWindow,
    duration_words,
    progress_words,
    rate,
    rate_words,
    time_left,
)
from portal.models import Deployment, DistributionPoint, Job, utcnow
from portal.services.progress_words import (
    deployment_progress,
    job_progress,
    job_title,
    jobs_summary,
    started_note,
)

MB = 1_000_000


@pytest.mark.parametrize("moved, seconds, expected", [
    (10 * MB, 2.0, 5 * MB),
    (0, 5.0, 0.0),
    (10 * MB, 0.0, None),  # no elapsed time: no rate, not a division by zero
    (10 * MB, 0.2, None),  # too short a span to tell
    (None, 5.0, None),
    (10 * MB, None, None),
    (-1, 5.0, None),
])
def test_rate(moved, seconds, expected):
    """Is the rate bytes over seconds, and None where it cannot be told?"""
    assert rate(moved, seconds) == expected


@pytest.mark.parametrize("done, total, bps, expected", [
    (2 * MB, 10 * MB, 1 * MB, 8.0),
    (10 * MB, 10 * MB, 1 * MB, 0.0),
    (11 * MB, 10 * MB, 1 * MB, 0.0),  # never a negative time
    (2 * MB, None, 1 * MB, None),  # unknown total
    (2 * MB, 0, 1 * MB, None),
    (2 * MB, 10 * MB, None, None),  # unknown rate
    (2 * MB, 10 * MB, 0, None),  # stalled: no time can be told
])
def test_time_left(done, total, bps, expected):
    """Is the time left what remains over the rate, and None without a total or a rate?"""
    assert time_left(done, total, bps) == expected


def test_the_window_forgets_old_samples_and_restarts_when_the_count_goes_back():
    """Does the window rate follow the last seconds (a fast start does not hide a slow-down),
    and start again when the count goes back (a new run)?"""
    window = RateWindow(window=10)
    assert window.bytes_per_second() is None
    window.add(0, 0)
    assert window.bytes_per_second() is None  # one sample: nothing to tell
    window.add(5, 100 * MB)  # fast: 20 MB/s
    assert window.bytes_per_second() == 20 * MB
    for t in range(6, 31):  # then 1 MB/s for 25 s
        window.add(t, 100 * MB + (t - 5) * MB)
    assert window.bytes_per_second() == pytest.approx(1 * MB)
    window.add(31, 0)
    window.add(31.5, MB)
    assert window.bytes_per_second() is None  # half a second since the restart: too short
    window.add(33, 3 * MB)
    assert window.bytes_per_second() == pytest.approx(1.5 * MB)


def test_words():
    """Are rates in MB/s and durations in s, min and h, with "—" for what is unknown?"""
    assert rate_words(12_345_678) == "12.3 MB/s"
    assert rate_words(250 * MB) == "250 MB/s"
    assert rate_words(None) == "— MB/s"
    assert [duration_words(s) for s in (0, 42, 95, 600, 7300, 7200, None)] == [
        "0 s", "42 s", "1 min 35 s", "10 min", "2 h 1 min", "2 h", "—"]
    assert progress_words(2 * MB, 10 * MB, 1 * MB) == "1.0 MB/s · 8 s left"
    assert progress_words(2 * MB, None, 1 * MB) == "1.0 MB/s · time left —"
    assert progress_words(2 * MB, 10 * MB, None) == "— MB/s · time left —"


def a_job(state, **fields):
    job = Job(kind="copy", state=state, **{"bytes_done": 0, "files_done": 0, **fields})
    job.dp = DistributionPoint(name="Seattle", kind="local")
    return job


def test_job_titles_say_where_the_work_goes():
    """Is a copy "Copy to Seattle" (not "of"), a delete "from", a rescan "of"?"""
    assert job_title(a_job("queued")) == "Copy to Seattle"
    assert job_title(Job(kind="delete", dp=DistributionPoint(name="Seattle"))) == \
        "Delete from Seattle"
    assert job_title(Job(kind="rescan", dp=DistributionPoint(name="Central"))) == \
        "Rescan of Central"
    assert job_title(Job(kind="rescan")) == "Rescan"


def test_job_states_read_honestly():
    """Does a queued job wait for a worker with no percent (even with bytes left from an earlier
    try), a running one count bytes with rate and time left, and one at its end say finishing,
    never "waiting for a worker · 100%"?"""
    queued = job_progress(a_job("queued", bytes_done=5 * MB, bytes_total=10 * MB))
    assert queued == (None, "waiting for a worker")
    retry = job_progress(a_job("queued", phase="try 2 in 30 s: Seattle does not answer"))
    assert retry.words == "try 2 in 30 s: Seattle does not answer"
    running = job_progress(a_job("running", phase="copying Images/a.wim", bytes_done=4 * MB,
                                 bytes_total=10 * MB, bytes_per_second=2 * MB))
    assert running.percent == 40
    assert running.words == "copying Images/a.wim · 3.8 MiB of 9.5 MiB (40%) · 2.0 MB/s · 3 s left"
    unknown = job_progress(a_job("running", phase="copying", bytes_done=MB, bytes_total=10 * MB))
    assert unknown.words.endswith("— MB/s · time left —")
    ending = job_progress(a_job("running", bytes_done=10 * MB, bytes_total=10 * MB))
    assert ending.words == "finishing · 9.5 MiB of 9.5 MiB (100%)"
    assert "waiting for a worker" not in ending.words
    assert job_progress(a_job("running")).words == "starting"


def a_deployment(state, elapsed=None, **fields):
    now = utcnow()
    return Deployment(state=state, phase=fields.pop("phase", None),
                      started_at=now - timedelta(seconds=elapsed) if elapsed is not None else None,
                      reported_at=now, **fields)


def test_deployment_progress_from_what_the_agent_reported():
    """Is a deployment's rate its bytes since it started, the time left from it, and "—" with no
    time elapsed or no start; pending waits for the agent?"""
    assert deployment_progress(a_deployment("pending", bytes_done=0, bytes_total=10 * MB)) == (
        None, "waiting for the agent")
    going = deployment_progress(a_deployment("downloading", elapsed=4, bytes_done=4 * MB,
                                             bytes_total=10 * MB, phase="Images/a.wim"))
    assert going.words == "Images/a.wim · 3.8 MiB of 9.5 MiB (40%) · 1.0 MB/s · 6 s left"
    just = deployment_progress(a_deployment("downloading", elapsed=0, bytes_done=0,
                                            bytes_total=10 * MB))
    assert just.words.endswith("— MB/s · time left —")
    unstarted = deployment_progress(a_deployment("downloading", bytes_done=MB, bytes_total=10 * MB))
    assert unstarted.words.endswith("— MB/s · time left —")
    no_total = deployment_progress(a_deployment("applying", elapsed=4, bytes_done=0,
                                                bytes_total=0))
    assert no_total == (None, "applying")


def test_a_note_over_jobs_follows_them():
    """Does the note over jobs started together say what they amount to now, and stop following
    them once all have finished?"""
    jobs = [a_job("queued"), a_job("queued")]
    for n, job in enumerate(jobs):
        job.id = f"job-{n}"
    assert started_note(jobs) == ("2 copies to Seattle queued", ["job-0", "job-1"])
    jobs[0].state = "running"
    assert jobs_summary(jobs) == "1 copy to Seattle running, 1 queued"
    jobs[0].state = jobs[1].state = "succeeded"
    assert started_note(jobs) == ("2 copies to Seattle done", [])
    jobs[1].state = "failed"
    assert jobs_summary(jobs) == "1 copy to Seattle done, 1 failed"
    jobs[1].dp = DistributionPoint(name="Boston")
    assert jobs_summary(jobs) == "1 copy done, 1 failed"
    assert started_note([], "Nothing is missing") == ("Nothing is missing", [])
