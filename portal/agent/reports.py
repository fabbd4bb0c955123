"""The progress reports of one deployment: a thread that reports every report_interval and hears
the server's answer (stop: a cancel, or the deployment already ended there), and the final
report, tried a few times and kept in the state folder when it cannot be delivered (sent at the
agent's next start)."""
import logging
import threading

from .api import ServerError

log = logging.getLogger("depot.agent")
FINISHED = ("succeeded", "failed", "cancelled")
FINAL_TRIES = (1, 2, 4, 8)


class Reporter:
    """Progress reports in a thread, every `interval` seconds; `cancel` is set when the server
    says stop (a cancel, or the deployment already ended there)."""

    def __init__(self, agent, deployment_id: int, state: str):
        self.agent, self.id = agent, deployment_id
        self.state, self.bytes_done, self.phase = state, 0, None
        self.cancel = threading.Event()
        self.ended_as: str | None = None
        self._quit = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="reporter", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._quit.wait(self.agent.report_interval):
            self.send_quietly()

    def stop(self) -> None:
        self._quit.set()
        if self._thread.is_alive():
            self._thread.join(timeout=60)

    def _report(self, state: str, error: str | None = None) -> dict:
        with self._lock:  # the number is saved before it is sent: never reused after a restart
            saved = self.agent.state.deployment(self.id)
            seq = int(saved.get("seq", 0)) + 1
            saved["seq"] = seq
            self.agent.state.save_deployment(self.id, saved)
        return {"seq": seq, "state": state, "bytes_done": self.bytes_done, "phase": self.phase,
                "error": error}

    def send(self, report: dict) -> dict:
        answer = self.agent.api.progress(self.id, report)
        if answer.get("cancel"):
            self.cancel.set()
        if answer.get("state") in FINISHED and report["state"] not in FINISHED:
            self.ended_as = answer["state"]
            self.cancel.set()
        return answer

    def send_quietly(self) -> None:
        try:
            self.send(self._report(self.state))
        except ServerError as exc:
            log.warning("progress report of deployment %s not delivered: %s", self.id, exc)
            if exc.status == 401:  # the device was forgotten, its deployments cancelled: stop
                self.ended_as = "the device token was refused"
                self.cancel.set()

    def now(self) -> None:
        """Report at once (a change of state the console should show without waiting)."""
        self.send_quietly()

    def final(self, state: str, error: str | None = None) -> bool:
        """The last report, tried a few times; kept in the state folder if never delivered."""
        report = self._report(state, error)
        for wait in (*FINAL_TRIES, None):
            try:
                answer = self.send(report)
                self.agent.state.forget_deployment(self.id)
                log.info("deployment %s: server says %s", self.id, answer.get("state"))
                return True
            except ServerError as exc:
                if exc.status in (400, 404, 409):
                    log.warning("deployment %s: final report refused: %s", self.id, exc)
                    self.agent.state.forget_deployment(self.id)
                    return False
                log.warning("deployment %s: final report not delivered: %s", self.id, exc)
                if wait is None or self.agent.stopping.wait(wait):
                    break
        saved = self.agent.state.deployment(self.id)
        saved["final"] = report
        self.agent.state.save_deployment(self.id, saved)
        log.warning("deployment %s: the final report is kept and sent at the next start", self.id)
        return False


def deliver_saved_final(agent, deployment_id: int) -> bool:
    """Send a final report an earlier run could not deliver; True when one was pending."""
    saved = agent.state.deployment(deployment_id)
    if not saved.get("final"):
        return False
    try:
        agent.api.progress(deployment_id, saved["final"])
        agent.state.forget_deployment(deployment_id)
        log.info("deployment %s: delivered the final report kept from the last run", deployment_id)
    except ServerError as exc:
        if exc.status in (400, 404, 409):
            agent.state.forget_deployment(deployment_id)
        else:
            log.warning("deployment %s: kept final report still not delivered: %s",
                        deployment_id, exc)
    return True
