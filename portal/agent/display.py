"""Logging, and the download's progress on stderr: a bar redrawn in place on a terminal that
takes ANSI sequences (the log lines clear it first), else plain lines at most every
PLAIN_EVERY seconds ("Images/Win11.wim 42% 1.2 GiB of 5.2 GiB, 9.8 MiB/s") for a service
log, a pipe, a Windows console without VT support, or NO_COLOR."""
import logging
import os
import sys
import threading
import time

PLAIN_EVERY = 5.0


def takes_ansi(stream, environ=None) -> bool:
    """Whether a bar redrawn with ANSI sequences works on `stream`."""
    environ = os.environ if environ is None else environ
    if environ.get("NO_COLOR") or environ.get("TERM") == "dumb":
        return False
    if not (hasattr(stream, "isatty") and stream.isatty()):
        return False
    if sys.platform == "win32":
        return _enable_vt(stream)
    return True


def _enable_vt(stream) -> bool:
    from . import win32  # ctypes and kernel32: only ever imported on Windows

    return win32.enable_vt(stream)


class ProgressBar:
    """The progress of the files downloading: bar, percent, bytes, rate and what is downloading,
    as one line redrawn (`ansi`) or as plain lines handed to `say` (default: written to
    `stream`)."""

    def __init__(self, stream=None, ansi: bool | None = None, say=None):
        self.stream = stream = sys.stderr if stream is None else stream
        self.ansi = takes_ansi(stream) if ansi is None else ansi
        self.say = say or self._write_line
        self.lock = threading.Lock()
        self.shown = False
        self.last = float("-inf")  # the first update is shown at once
        self.started, self.start_bytes = None, 0

    def begin(self, done: int) -> None:
        # The rate is measured from the first update on: what was there before (files staged,
        # the part of a file downloaded before a restart) arrives in it at once.
        self.started, self.start_bytes = None, done
        self.last = float("-inf")  # the first update is shown at once

    def update(self, done: int, total: int, label: str, force: bool = False) -> None:
        now = time.monotonic()
        if self.ansi:
            due = force or now - self.last >= 0.2
        else:
            # A line per file would flood a log on a pack of thousands of drivers: only the
            # end of the whole download is forced out.
            due = (force and done >= total) or now - self.last >= PLAIN_EVERY
        if not due:
            return
        self.last = now
        if self.started is None:
            self.started, self.start_bytes = now, done
        percent = done * 100 // total if total else 100
        elapsed = now - self.started
        rate = f"{_size((done - self.start_bytes) / elapsed)}/s" if elapsed > 0.1 else "…"
        if not self.ansi:
            self.say(f"{label} {percent}% {_size(done)} of {_size(total)}, {rate}")
            return
        width = 30
        filled = width * percent // 100
        line = (f"[{'#' * filled}{'.' * (width - filled)}] {percent:3d}% "
                f"{_size(done)}/{_size(total)} {rate} {label}")
        with self.lock:
            self.stream.write("\r\033[K" + line[:160])
            self.stream.flush()
            self.shown = True

    def _write_line(self, line: str) -> None:
        with self.lock:
            self.stream.write(line + "\n")
            self.stream.flush()

    def clear(self) -> None:
        with self.lock:
            if self.shown:
                self.stream.write("\r\033[K")
                self.stream.flush()
                self.shown = False


class _BarAwareHandler(logging.StreamHandler):
    def __init__(self, bar: ProgressBar):
        super().__init__(sys.stderr)
        self.bar = bar

    def emit(self, record):
        self.bar.clear()
        super().emit(record)


def setup_logging(verbose: bool = False) -> ProgressBar:
    """Log lines on stderr, with the progress: a bar on a terminal, else log lines."""
    root = logging.getLogger("depot.agent")
    bar = ProgressBar(say=lambda line: root.info("%s", line))
    handler = _BarAwareHandler(bar)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False
    return bar


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
