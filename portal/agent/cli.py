"""The command line and the main loop: enroll once, heartbeat, poll for work, run deployments."""
import argparse
import json
import logging
import os
import signal
import sys
import threading
import time

from . import facts as machine
from .api import Api, ServerError
from .display import setup_logging
from .runner import Runner
from .state import State, TokenNotSaved
from .transfer import RateCap
from .version import __version__ as VERSION

log = logging.getLogger("depot.agent")


class Stop(Exception):
    """The agent cannot go on (exit code 2): a bad enrollment token, no token at all."""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="depot-agent", description="Depot's reference endpoint agent: enrolls with the "
        "central server and carries out deployments into a target folder.")
    parser.add_argument("--server", help="the central server's URL (http://depot:8080)")
    parser.add_argument("--enroll-token", help="the enrollment token an admin gave you")
    parser.add_argument("--config", help='JSON file {"server": ..., "enroll_token": ...} '
                        "(the client installer's); command-line values win")
    parser.add_argument("--target", required=True, help="folder deployments go into")
    parser.add_argument("--state", help="folder for the device token and progress "
                        "(default <target>/.depot-agent)")
    parser.add_argument("--max-rate", type=int, default=0, metavar="BYTES_PER_S",
                        help="download bandwidth cap (0: none)")
    parser.add_argument("--interval", type=float, help="seconds between heartbeats and polls "
                        "(default: what the server says)")
    parser.add_argument("--hostname", help="report this hostname")
    parser.add_argument("--serial", help="report this serial number")
    parser.add_argument("--mac", action="append", help="report this MAC (repeatable)")
    parser.add_argument("--ip", action="append", help="report this IP address (repeatable)")
    parser.add_argument("--once", action="store_true",
                        help="exit once there is no work left (exit code 1 if a deployment failed)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.config:
        try:
            with open(args.config) as fh:
                config = json.load(fh)
        except (OSError, ValueError) as exc:
            parser.error(f"cannot read --config {args.config}: {exc}")
        if not isinstance(config, dict):
            parser.error(f"--config {args.config} must hold a JSON object")
        args.server = args.server or config.get("server")
        args.enroll_token = args.enroll_token or config.get("enroll_token")
    if not args.server:
        parser.error("--server (or a --config naming it) is required")
    if args.max_rate < 0:
        parser.error("--max-rate must be 0 or more")
    return args


class Agent:
    def __init__(self, args: argparse.Namespace, bar):
        self.args = args
        self.server = args.server.rstrip("/")
        self.target = os.path.abspath(args.target)
        os.makedirs(self.target, exist_ok=True)
        self.state = State(os.path.abspath(args.state or os.path.join(self.target, ".depot-agent")))
        self.api = Api(self.server, user_agent=f"depot-agent/{VERSION}")
        self.cap = RateCap(args.max_rate)
        self.bar = bar
        self.stopping = threading.Event()
        self.interval = args.interval or 60.0
        self.report_interval = 2.0
        self.outcomes: list[str] = []

    def stop(self, why: str) -> None:
        if not self.stopping.is_set():
            log.info("stopping (%s)", why)
        self.stopping.set()

    def facts(self) -> dict:
        return machine.gather(self.args, self.server, VERSION)

    def _intervals(self, answer: dict) -> None:
        if not self.args.interval and answer.get("interval"):
            self.interval = float(answer["interval"])
        if answer.get("report_interval"):
            self.report_interval = float(answer["report_interval"])

    # --- enrollment ------------------------------------------------------------------------

    def ensure_enrolled(self) -> None:
        saved = self.state.device(self.server)
        if saved:
            self.api.token = saved["device_token"]
            log.info("enrolled as device %s (token kept in %s)", saved["device_id"],
                     self.state.folder)
            return
        if not self.args.enroll_token:
            raise Stop("not enrolled yet: give --enroll-token (or --config with enroll_token)")
        answer = self.api.enroll(self.args.enroll_token, self.facts())
        try:
            self.state.save_device(self.server, answer["device_id"], answer["device_token"])
        except TokenNotSaved as exc:
            raise Stop(str(exc)) from None
        self.api.token = answer["device_token"]
        self._intervals(answer)
        log.info("enrolled with %s as device %s", self.server, answer["device_id"])

    # --- the loop --------------------------------------------------------------------------

    def run(self) -> int:
        failures = 0
        next_heartbeat = 0.0
        while not self.stopping.is_set():
            try:
                if self.api.token is None:
                    self.ensure_enrolled()
                if time.monotonic() >= next_heartbeat:
                    body = self.facts()
                    body["free_bytes"] = machine.free_bytes(self.target)
                    self._intervals(self.api.heartbeat(body))
                    next_heartbeat = time.monotonic() + self.interval
                pending = self.api.work()["deployments"]
                failures = 0
                if pending:
                    state = Runner(self, pending[0]["id"]).run()
                    if state:
                        self.outcomes.append(state)
                        continue
                    wait = 1.0  # it ended elsewhere, or its report waits: not in a tight loop
                else:
                    self._drop_orphaned_partials()
                    if self.args.once:
                        break
                    wait = min(self.interval, max(0.0, next_heartbeat - time.monotonic()))
            except ServerError as exc:
                wait = self._after_error(exc, failures)
                failures += 1
            self.stopping.wait(wait)
        return 1 if "failed" in self.outcomes else 0

    def _drop_orphaned_partials(self) -> None:
        """With no unfinished deployment, no partial download can be resumed: remove what a
        deployment ended at the server while this agent was down left in .partial/."""
        folder = os.path.join(self.target, ".partial")
        names = os.listdir(folder) if os.path.isdir(folder) else []
        for name in names:
            try:
                os.remove(os.path.join(folder, name))
            except OSError as exc:
                log.warning("could not remove the partial download %s: %s", name, exc)
        if names:
            log.info("removed %d partial download(s) no deployment needs any more", len(names))

    def _after_error(self, exc: ServerError, failures: int) -> float:
        """What a failed call means, and how long to wait before the next one."""
        if exc.code == "enroll_token_invalid":
            raise Stop(f"enrollment refused: {exc.message}")
        if exc.status == 401:
            log.warning("the server no longer knows this device's token; enrolling again")
            self.state.forget_device()
            self.api.token = None
            if not self.args.enroll_token:
                raise Stop("the device token was refused and there is no enrollment token")
            return 1.0
        if exc.status == 429:
            log.warning("the server asks us to slow down: %s", exc.message)
            return exc.retry_after or self.interval
        log.warning("%s", exc)
        return min(self.interval, 2.0 ** min(failures, 6), exc.retry_after or 3600)


def main(argv=None) -> None:
    """Run the agent until Ctrl-C or SIGTERM (or, with --once, until no work is left)."""
    args = parse_args(argv)
    bar = setup_logging(args.verbose)
    agent = Agent(args, bar)
    signal.signal(signal.SIGTERM, lambda *_: agent.stop("SIGTERM"))
    signal.signal(signal.SIGINT, lambda *_: agent.stop("interrupted"))
    log.info("depot agent %s: server %s, target %s", VERSION, agent.server, agent.target)
    try:
        code = agent.run()
    except Stop as exc:
        log.error("%s", exc)
        code = 2
    bar.clear()
    sys.exit(code)
