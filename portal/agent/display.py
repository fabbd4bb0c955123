"""Logging, and a progress bar on stderr when it is a terminal (the log lines clear it first)."""
import logging
import sys
import threading
import time


class ProgressBar:
    """One line on a TTY: bar, percent, bytes, rate and what is downloading."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.enabled = hasattr(stream, "isatty") and stream.isatty()
        self.lock = threading.Lock()
        self.shown = False
        self.last = 0.0
        self.started, self.start_bytes = None, 0

    def begin(self, done: int) -> None:
        # The rate is measured from the first update on: what was there before (files staged,
        # the part of a file downloaded before a restart) arrives in it at once.
        self.started, self.start_bytes = None, done

    def update(self, done: int, total: int, label: str, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self.last < 0.2:
            return
        self.last = now
        if self.started is None:
            self.started, self.start_bytes = now, done
        percent = done * 100 // total if total else 100
        width = 30
        filled = width * percent // 100
        elapsed = now - self.started
        rate = f"{_size((done - self.start_bytes) / elapsed)}/s" if elapsed > 0.1 else "…"
        line = (f"[{'#' * filled}{'.' * (width - filled)}] {percent:3d}% "
                f"{_size(done)}/{_size(total)} {rate} {label}")
        with self.lock:
            self.stream.write("\r\033[K" + line[:160])
            self.stream.flush()
            self.shown = True

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
    """Log lines on stderr; a progress bar too when stderr is a terminal."""
    bar = ProgressBar()
    handler = _BarAwareHandler(bar)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger("depot.agent")
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
