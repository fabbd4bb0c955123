"""Actions on many rows of a list at once: cancel jobs, retry failed copies, redeploy failed or
cancelled deployments.

Each goes row by row through the service the single-row action uses (`jobs.cancel_job`,
`copies.request_copies`, `deployments.create_deployments`), so every check and every audit entry
is the same as when a person clicks one row; a row that cannot be done is counted with why, and
the others still go ahead. The outcome reads as one sentence for a flash:
"3 jobs cancelled, 1 had already finished".
"""
from dataclasses import dataclass, field

from portal.core.errors import DepotError, NotFound
from portal.core.numbers import id_from_text
from portal.services import copies, deployments, job_lists, jobs
from portal.services.actors import Actor
from portal.services.permissions import require

MAX_ROWS = 500  # a page holds 50; a hand-made request cannot make one click do more than this


@dataclass
class Outcome:
    """How a bulk action went: how many rows it did, and the others grouped by why not."""

    noun: tuple[str, str]  # ("job", "jobs")
    verb: str  # "cancelled"
    done: int = 0
    others: dict[tuple[str, str], int] = field(default_factory=dict)  # (is, are) -> count
    reasons: list[str] = field(default_factory=list)  # what the services said, first few

    def skip(self, why: tuple[str, str], reason: str | None = None) -> None:
        self.others[why] = self.others.get(why, 0) + 1
        if reason and len(self.reasons) < 3:
            self.reasons.append(reason)

    @property
    def level(self) -> str:
        """The flash's colour: ok when every row was done, error when none was, else info."""
        return "ok" if self.done and not self.others else "error" if not self.done else "info"

    def sentence(self) -> str:
        """"3 jobs cancelled, 1 had already finished" (with what refused a row, when any)."""
        parts = [f"{self.done} {self.noun[self.done != 1]} {self.verb}"]
        parts += [f"{n} {why[n != 1]}" for why, n in self.others.items()]
        text = ", ".join(parts)
        return f"{text} ({'; '.join(self.reasons)})" if self.reasons else text


NOT_FOUND = ("was not found", "were not found")
FINISHED = ("had already finished", "had already finished")


def _ids(ids, what: str) -> list:
    ids = list(dict.fromkeys(i for i in ids or [] if i not in (None, "")))
    if not ids:
        raise DepotError(f"tick the {what} first", code="nothing_selected")
    if len(ids) > MAX_ROWS:
        raise DepotError(f"at most {MAX_ROWS} {what} at once")
    return ids


def _visible_jobs(actor: Actor, job_ids, what: str, outcome: Outcome):
    """The ticked jobs the actor may see, one by one; the others counted as not found."""
    for job_id in _ids(job_ids, what):
        try:
            job = job_lists.visible_job(actor.user, job_id)
        except NotFound:
            outcome.skip(NOT_FOUND)
            continue
        yield job


def cancel_jobs(actor: Actor, job_ids) -> Outcome:
    """Cancel each queued job, and ask each running one to stop (one audit entry per job)."""
    require(actor.user, "cancel_job")
    outcome = Outcome(("job", "jobs"), "cancelled")
    for job in _visible_jobs(actor, job_ids, "jobs to cancel", outcome):
        if not job.is_active:
            outcome.skip(FINISHED)
            continue
        try:
            jobs.cancel_job(job.id, actor)
        except DepotError:  # it finished between the look and the cancel
            outcome.skip(FINISHED)
            continue
        outcome.done += 1
    return outcome


def retry_copies(actor: Actor, job_ids) -> Outcome:
    """Copy again the asset of each failed copy to its DP, as Copy to… starts a copy."""
    require(actor.user, "copy")
    outcome = Outcome(("copy", "copies"), "started again")
    for job in _visible_jobs(actor, job_ids, "failed copies to retry", outcome):
        if job.kind != "copy" or job.state != "failed":
            outcome.skip(("was not a failed copy", "were not failed copies"))
            continue
        if job.dp_id is None or not job.asset_key:
            outcome.skip(("has no DP any more", "have no DP any more"))
            continue
        if jobs.active_job(f"copy:{job.dp_id}:{job.asset_key}"):
            outcome.skip(("was already being copied again", "were already being copied again"))
            continue
        try:
            copies.request_copies(actor, [job.asset_key], [job.dp_id])
        except DepotError as exc:
            outcome.skip(("could not start", "could not start"), exc.message)
            continue
        outcome.done += 1
    return outcome


REDEPLOYABLE = ("failed", "cancelled")


def redeploy(actor: Actor, deployment_ids) -> Outcome:
    """A new deployment of the same image, packs and answer file to the same device for each
    failed or cancelled deployment, created (and checked) as the deploy form creates one; the
    rules choose the DP again."""
    require(actor.user, "deploy")
    outcome = Outcome(("deployment", "deployments"), "started again")
    for deployment_id in _ids(deployment_ids, "failed or cancelled deployments to redeploy"):
        try:
            old = deployments.get_deployment(actor.user, id_from_text(deployment_id))
        except NotFound:
            outcome.skip(NOT_FOUND)
            continue
        if old.state not in REDEPLOYABLE:
            outcome.skip(("was not failed or cancelled", "were not failed or cancelled"))
            continue
        if old.device_id is None:
            outcome.skip(("is of a device Depot forgot", "are of devices Depot forgot"))
            continue
        try:
            deployments.create_deployments(
                actor, device_ids=[old.device_id], image=old.image,
                platform_pack=old.platform_pack,
                application_packs=list(old.application_packs or []), answer_file=old.answer_file)
        except DepotError as exc:
            outcome.skip(("could not start", "could not start"), exc.message)
            continue
        outcome.done += 1
    return outcome
