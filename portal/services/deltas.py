"""Delta replication as people see it: which DPs reuse parts of what they hold, and what a copy
sent across the network against its size.

What the console shows is decided here from the rows (the job, the DP); nothing here asks a DP
anything, so a page costs no round trip. A DP node too old to speak the delta protocol is still
counted as reusing parts (only its health check would tell), and gets whole files from the copy
itself.
"""
from portal.core.units import human_bytes
from portal.models import DistributionPoint, Job

# Cloud providers whose uploads can take parts of an object already there (S3's UploadPartCopy).
# OneDrive, Google Drive and Dropbox have no server-side partial copy: whole files only.
REUSING_PROVIDERS = ("s3",)
WHOLE_FILE = "whole file: the provider cannot reuse parts"


def reuses_parts(dp: DistributionPoint) -> bool:
    """Can a copy to this DP send only the chunks it lacks: DP nodes and S3, not the others?"""
    return dp.kind == "local" or (dp.kind == "cloud" and dp.provider in REUSING_PROVIDERS)


def copy_words(job: Job) -> str | None:
    """What a copy's progress says beside its bar of the network: "5.2 GiB: 61.0 MiB sent, 5.1
    GiB reused" (reused: bytes covered but not sent; while running, of the bytes done so far),
    or WHOLE_FILE for a DP whose provider cannot reuse parts. None for other jobs, a copy that
    has not counted its bytes (bytes_sent NULL: older jobs, or none sent yet), a copy that
    failed or was cancelled (its error says what happened), and a finished copy whose summary
    already says the same words."""
    if job.kind != "copy" or job.state not in ("queued", "running", "succeeded"):
        return None
    if job.dp is not None and not reuses_parts(job.dp):
        return WHOLE_FILE
    if job.bytes_sent is None or not job.bytes_total:
        return None
    covered = job.bytes_done if job.is_active else job.bytes_total
    reused = max(0, (covered or 0) - job.bytes_sent)
    words = (f"{human_bytes(job.bytes_total)}: {human_bytes(job.bytes_sent)} sent, "
             f"{human_bytes(reused)} reused")
    if not job.is_active and words in (job.summary or ""):
        return None
    return words

