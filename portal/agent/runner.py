"""One deployment, start to end: manifest, downloads (resumed, verified), staging, apply, and the
progress reports the server sees every report_interval (whose answer may say: stop, cancelled).

The reports are sent by `reports.Reporter`; where files are staged is in `staging`.
"""
import logging
import os
import shutil
import subprocess
import time

from .api import ServerError
from .reports import FINISHED, Reporter, deliver_saved_final
from .staging import BadPath, already_staged, confined, is_hex_digest, size_or_zero
from .transfer import (CertificateMismatch, HashMismatch, LinkRefused, Stopped, TransferError,
                       fetch)

log = logging.getLogger("depot.agent")
# Waits between tries of a file that makes no progress: about 5 minutes of patience with a DP
# that restarts or a link that drops, then the deployment fails with the last error.
BACKOFF = (1, 2, 4, 8, 15, 30, 60, 60, 60, 60)


def terminal_lines(output: str) -> str:
    """A tool's output as a terminal leaves it: of a line redrawn with carriage returns (a
    progress count), only its last state; blank lines dropped."""
    lines = []
    for line in output.split("\n"):
        states = [part for part in line.split("\r") if part.strip()]
        if states:
            lines.append(states[-1].rstrip())
    return "\n".join(lines)


def apply_failure(returncode: int, output: bytes) -> str:
    """The error of a failed `wimlib-imagex apply`: its exit code, then the end of its output
    line by line (the console shows a summary and these lines behind a disclosure)."""
    tail = terminal_lines(output.decode(errors="replace"))[-3000:]
    return f"wimlib-imagex apply failed with exit code {returncode}\n{tail}".rstrip()


class Failed(Exception):
    """The deployment fails with this message."""


class Runner:
    """Carries out one deployment for `agent`; `run()` returns the state it ended in (or None
    when the agent is stopping, or the server ended it)."""

    def __init__(self, agent, deployment_id: int):
        self.agent, self.id = agent, deployment_id
        self.target = agent.target
        self.partial_dir = os.path.join(self.target, ".partial")
        self.staged_dir = os.path.join(self.target, "staged", str(deployment_id))
        self.reporter: Reporter | None = None
        self.manifest: dict = {}

    # --- the steps ---------------------------------------------------------------------------

    def run(self) -> str | None:
        if deliver_saved_final(self.agent, self.id):
            return None
        manifest = self._manifest()
        if manifest is None:
            return None
        if manifest["state"] in FINISHED:
            return None
        start_state = "applying" if manifest["state"] == "applying" else "downloading"
        self.reporter = Reporter(self.agent, self.id, start_state)
        if manifest.get("cancel_requested"):
            return self._end("cancelled")
        log.info("deployment %s: %s from %s, %d file(s), %d bytes", self.id, manifest["image"],
                 manifest["dp"]["name"], len(manifest["files"]), manifest["bytes_total"])
        self.reporter.phase = "starting"
        self.reporter.now()
        self.reporter.start()
        try:
            return self._carry_out(manifest)
        finally:
            self.reporter.stop()

    def _carry_out(self, manifest: dict) -> str | None:
        try:
            self._check_space(manifest)
            staged = self._download_all()
            self._apply(staged)
        except Failed as exc:
            self.reporter.stop()
            log.error("deployment %s failed: %s", self.id, exc)
            return self._end("failed", str(exc))
        except OSError as exc:  # the target's disk: full, read-only, gone
            self.reporter.stop()
            message = f"cannot write under {self.target}: {exc.strerror or exc}"
            log.error("deployment %s failed: %s", self.id, message)
            return self._end("failed", message)
        except Stopped as exc:
            self.reporter.stop()
            if exc.reason == "cancel":
                if self.reporter.ended_as and self.reporter.ended_as != "cancelled":
                    log.warning("deployment %s ended at the server (%s); stopping", self.id,
                                self.reporter.ended_as)
                    self._clean(partials=True)
                    return None
                log.info("deployment %s: cancel asked for; stopping", self.id)
                return self._end("cancelled")
            log.info("deployment %s: stopped; partial downloads kept, they resume at the next "
                     "start", self.id)
            return None
        self.reporter.stop()
        return self._end("succeeded")

    def _manifest(self) -> dict | None:
        try:
            self.manifest = self.agent.api.manifest(self.id)
        except ServerError as exc:
            if exc.code == "deployment_changed":
                log.error("deployment %s failed at the server: %s", self.id, exc.message)
                self._clean(partials=True)
                return None
            if exc.status == 404:
                log.warning("deployment %s is not ours any more", self.id)
                return None
            raise
        return self.manifest

    def _refresh_links(self) -> None:
        manifest = self._manifest()
        if manifest is None:
            raise Stopped("cancel")
        if manifest["state"] in FINISHED or manifest.get("cancel_requested"):
            self.reporter.cancel.set()
            raise Stopped("cancel")
        log.info("deployment %s: fresh download links", self.id)

    def _check_space(self, manifest: dict) -> None:
        os.makedirs(self.partial_dir, exist_ok=True)
        need = 0
        for index, meta in enumerate(manifest["files"]):
            # What a resumed download holds already (partial, or staged whole) needs no space.
            held = size_or_zero(self._partial(index, meta["sha256"]))
            try:
                if size_or_zero(confined(self.staged_dir, meta["path"])) == meta["size"]:
                    held = meta["size"]
            except BadPath:
                pass  # refused when the download starts
            need += max(0, meta["size"] - min(held, meta["size"]))
        free = shutil.disk_usage(self.target).free
        if need > free:
            raise Failed(f"not enough space under {self.target}: need {need} bytes, {free} free")

    def _stop_reason(self) -> str | None:
        if self.reporter.cancel.is_set():
            return "cancel"
        if self.agent.stopping.is_set():
            return "exit"
        return None

    def _download_all(self) -> dict[str, str]:
        files = self.manifest["files"]
        try:
            staged = {f["path"]: confined(self.staged_dir, f["path"]) for f in files}
        except BadPath as exc:
            raise Failed(str(exc)) from None
        dp = self.manifest["dp"]["name"]
        total = sum(f["size"] for f in files)
        done = 0
        bar = self.agent.bar
        bar.begin(0)
        for index, meta in enumerate(files):
            path, size, sha = meta["path"], meta["size"], meta["sha256"]
            self.reporter.phase = path
            final = staged[path]
            if already_staged(final, size, sha):
                log.info("%s: already staged", path)
                done += size
                self.reporter.bytes_done = done
                continue
            partial = self._partial(index, sha)

            def on_bytes(have, base=done, path=path):
                self.reporter.bytes_done = base + have
                bar.update(base + have, total, path)

            self._fetch_with_retries(meta, partial, dp, on_bytes)
            os.makedirs(os.path.dirname(final), exist_ok=True)
            os.replace(partial, final)
            done += size
            self.reporter.bytes_done = done
            bar.update(done, total, path, force=True)
        bar.clear()
        return staged

    def _partial(self, index: int, sha256: str) -> str:
        """Where file `index` of the manifest is downloaded to before it is verified."""
        return os.path.join(self.partial_dir, sha256 if is_hex_digest(sha256) else f"file-{index}")

    def _fetch_with_retries(self, meta: dict, partial: str, dp: str, on_bytes) -> None:
        path = meta["path"]
        tries, last_error = 0, None
        while True:
            item = next((f for f in self.manifest["files"] if f["path"] == path), {})
            url = item.get("url")
            before = os.path.getsize(partial) if os.path.exists(partial) else 0
            fresh_links = False
            try:
                fetch(url, partial, meta["size"], meta["sha256"], path, self.agent.cap,
                      self._stop_reason, on_bytes, tls_fingerprint=item.get("tls_fingerprint"))
                return
            except HashMismatch as exc:
                raise Failed(f"hash mismatch: {path} at {dp}: {exc}") from None
            except CertificateMismatch as exc:
                raise Failed(f"certificate refused: {dp} is not the server it should be: "
                             f"{exc}") from None
            except LinkRefused as exc:
                log.info("%s; asking the server for fresh links", exc)
                last_error = exc
                self._refresh_links()
                fresh_links = True
            except TransferError as exc:
                log.warning("%s", exc)
                last_error = exc
            after = os.path.getsize(partial) if os.path.exists(partial) else 0
            tries = 0 if after > before else tries + 1
            if tries >= len(BACKOFF):
                raise Failed(f"download of {path} from {dp} failed: {last_error}")
            if tries and not fresh_links:
                self.reporter.phase = f"retrying: {last_error}"[:200]
                self._pause(BACKOFF[tries - 1])
                self.reporter.phase = path

    def _pause(self, seconds: float) -> None:
        """Wait, in slices, unless asked to stop (then Stopped)."""
        deadline = time.monotonic() + seconds
        while True:
            reason = self._stop_reason()
            if reason:
                raise Stopped(reason)
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.agent.stopping.wait(min(left, 0.2))

    def _apply(self, staged: dict[str, str]) -> None:
        image = self.manifest["image"]
        wim = staged.get(image)
        wimlib = shutil.which("wimlib-imagex")
        if not (wim and image.lower().endswith(".wim")):
            self.reporter.phase = "image staged (not a WIM)"
            return
        if not wimlib:
            self.reporter.phase = "image staged (no wimlib-imagex)"
            log.info("deployment %s: %s", self.id, self.reporter.phase)
            return
        applied = os.path.join(self.target, "applied")
        shutil.rmtree(applied, ignore_errors=True)
        os.makedirs(applied)
        self.reporter.state, self.reporter.phase = "applying", f"applying {image}"
        self.reporter.now()
        log.info("deployment %s: applying %s to %s", self.id, image, applied)
        with open(os.path.join(self.agent.state.folder, "wimlib.log"), "w+b") as out:
            proc = subprocess.Popen([wimlib, "apply", wim, "1", applied], stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            while proc.poll() is None:
                self.agent.stopping.wait(0.2)
                if self._stop_reason():
                    proc.terminate()
                    proc.wait(timeout=30)
                    raise Stopped(self._stop_reason() or "exit")
            out.seek(0)
            output = out.read()[-65536:]
        if proc.returncode != 0:
            raise Failed(apply_failure(proc.returncode, output))
        self.reporter.phase = f"image applied to {applied}"
        log.info("deployment %s: %s", self.id, self.reporter.phase)

    # --- the end -----------------------------------------------------------------------------

    def _end(self, state: str, error: str | None = None) -> str:
        if state == "cancelled":
            self._clean(partials=True, staged=True)
        elif state == "failed":
            self._clean(partials=True)
        self.reporter.final(state, error)
        if state == "succeeded":
            log.info("deployment %s succeeded: %s", self.id, self.reporter.phase)
            self._forget_earlier()
        return state

    def _forget_earlier(self) -> None:
        """Staged files of earlier deployments go once a newer one succeeded (images are big)."""
        parent = os.path.dirname(self.staged_dir)
        for name in os.listdir(parent):
            if name != str(self.id) and name.isdigit():
                shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
                log.info("removed the staged files of earlier deployment %s", name)

    def _clean(self, partials: bool = False, staged: bool = False) -> None:
        if partials:
            # Every partial there is this deployment's (the device has one unfinished at a time),
            # also when the manifest of a cancelled one lists no files to name them by.
            for name in os.listdir(self.partial_dir) if os.path.isdir(self.partial_dir) else ():
                try:
                    os.remove(os.path.join(self.partial_dir, name))
                except OSError:
                    pass
        if staged:
            shutil.rmtree(self.staged_dir, ignore_errors=True)
