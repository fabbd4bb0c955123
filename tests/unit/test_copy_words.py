"""What a copy's progress says of the network (services/deltas.py): sent against the size, reused,
or whole files where the provider cannot reuse parts."""
import pytest

from portal.models import DistributionPoint, Job
from portal.services.deltas import WHOLE_FILE, copy_words, reuses_parts

MiB, GiB = 1024 ** 2, 1024 ** 3
SIZE, SENT = int(5.2 * GiB), 61 * MiB


def a_dp(kind="local", provider=None):
    return DistributionPoint(name="Seattle", kind=kind, provider=provider)


def a_copy(state="running", dp=None, kind="copy", **fields):
    job = Job(kind=kind, state=state, **fields)
    job.dp = a_dp() if dp is None else dp
    return job


@pytest.mark.parametrize("kind, provider, reuses", [
    ("local", None, True), ("cloud", "s3", True), ("cloud", "onedrive", False),
    ("cloud", "gdrive", False), ("cloud", "dropbox", False), ("central", None, False),
])
def test_dp_nodes_and_s3_reuse_parts_and_the_oauth_providers_do_not(kind, provider, reuses):
    """Do DP nodes and S3 reuse parts, and OneDrive, Google Drive and Dropbox not?"""
    assert reuses_parts(a_dp(kind, provider)) is reuses


def test_a_running_copy_says_what_was_sent_and_reused_of_what_is_done():
    """While a copy runs, is reused what is done but was not sent, against the size?"""
    job = a_copy(bytes_total=SIZE, bytes_done=2 * GiB + SENT, bytes_sent=SENT)
    assert copy_words(job) == "5.2 GiB: 61.0 MiB sent, 2.0 GiB reused"
    assert copy_words(a_copy("queued", bytes_total=SIZE, bytes_done=GiB, bytes_sent=0)) == (
        "5.2 GiB: 0 B sent, 1.0 GiB reused")  # waiting to try again after a passing failure


def test_a_finished_copy_counts_reused_against_the_whole_size():
    """At the end, is reused the size less what was sent (to S3 as to a node)?"""
    job = a_copy("succeeded", bytes_total=SIZE, bytes_done=SIZE, bytes_sent=SENT,
                 summary="Images/Win11.wim is current at Seattle: 1 file(s) sent, 0 already there")
    assert copy_words(job) == "5.2 GiB: 61.0 MiB sent, 5.1 GiB reused"
    job.dp = a_dp("cloud", "s3")
    assert copy_words(job) == "5.2 GiB: 61.0 MiB sent, 5.1 GiB reused"


def test_a_finished_copy_whose_summary_says_it_already_is_not_said_twice():
    """Does the widget leave out the words when the copy's summary already holds them?"""
    job = a_copy("succeeded", bytes_total=SIZE, bytes_done=SIZE, bytes_sent=SENT,
                 summary="Images/Win11.wim is current at Seattle: 1 file(s) sent, 0 already "
                         "there; 5.2 GiB: 61.0 MiB sent, 5.1 GiB reused")
    assert copy_words(job) is None


@pytest.mark.parametrize("provider", ["onedrive", "gdrive", "dropbox"])
@pytest.mark.parametrize("state, sent", [("running", 2 * GiB), ("succeeded", SIZE),
                                         ("queued", None)])
def test_copies_to_the_oauth_providers_say_whole_file(provider, state, sent):
    """Does a copy to OneDrive, Drive or Dropbox say it sends whole files, counted or not?"""
    job = a_copy(state, a_dp("cloud", provider), bytes_total=SIZE, bytes_done=sent or 0,
                 bytes_sent=sent)
    assert copy_words(job) == WHOLE_FILE == "whole file: the provider cannot reuse parts"


@pytest.mark.parametrize("job", [
    a_copy(bytes_total=SIZE, bytes_done=GiB, bytes_sent=None),  # an older job: as before
    a_copy("succeeded", bytes_total=SIZE, bytes_done=SIZE, bytes_sent=None),
    a_copy(bytes_total=None, bytes_done=0, bytes_sent=None),  # not started
    a_copy("succeeded", bytes_total=0, bytes_done=0, bytes_sent=0),  # everything was there
    a_copy("failed", bytes_total=SIZE, bytes_done=GiB, bytes_sent=SENT, error="node gone"),
    a_copy("cancelled", a_dp("cloud", "dropbox"), bytes_total=SIZE, bytes_done=GiB,
           bytes_sent=GiB),
    a_copy(kind="rescan", bytes_total=SIZE, bytes_done=GiB),
    a_copy(kind="verify", dp=a_dp("cloud", "onedrive"), bytes_total=SIZE, bytes_done=GiB),
], ids=["null-running", "null-finished", "not-started", "nothing-to-send", "failed",
        "cancelled", "rescan", "verify"])
def test_no_words_where_there_is_nothing_to_say(job):
    """Do older copies (bytes_sent NULL), empty ones, failed or cancelled ones and other jobs
    show no network words?"""
    assert copy_words(job) is None


def test_more_sent_than_done_reuses_nothing():
    """When more was sent than is done (a piece sent again), is reused 0 B, never negative?"""
    job = a_copy(bytes_total=SIZE, bytes_done=SENT, bytes_sent=SENT + MiB)
    assert copy_words(job) == "5.2 GiB: 62.0 MiB sent, 0 B reused"


def test_a_copy_of_a_forgotten_dp_still_says_what_it_sent():
    """A job whose DP was forgotten since (dp NULL): are its bytes still shown?"""
    job = a_copy("succeeded", bytes_total=SIZE, bytes_done=SIZE, bytes_sent=SENT)
    job.dp = None
    assert copy_words(job) == "5.2 GiB: 61.0 MiB sent, 5.1 GiB reused"
