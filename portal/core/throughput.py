"""Throughput and time left of a transfer, in numbers and in the words the console shows.

A copy's worker samples its byte count as it goes (`RateWindow`) and stores the rate over the
last seconds, so a copy that slowed down says so; a deployment only has what its agent reported
(bytes done at the last report, when the run started), so its rate is the average since the start.
Whatever cannot be known (no time elapsed yet, no total, nothing moved) is None, and "—" in words.
"""
from collections import deque

WINDOW_SECONDS = 10.0  # the "recent" in "MB/s over the recent window"
MIN_SPAN_SECONDS = 1.0  # less than this between samples says nothing reliable about a rate


def rate(bytes_moved: int | None, seconds: float | None) -> float | None:
    """Bytes per second for `bytes_moved` in `seconds`; None for no elapsed time (or too little to
    tell), an unknown or negative count."""
    if bytes_moved is None or seconds is None or seconds < MIN_SPAN_SECONDS or bytes_moved < 0:
        return None
    return bytes_moved / seconds


def time_left(done: int | None, total: int | None, bytes_per_second: float | None) -> float | None:
    """Seconds until `total` at the rate; None when the total, the count or the rate is unknown
    (or the rate is zero: a stalled transfer has no time left to tell)."""
    if not total or done is None or not bytes_per_second or bytes_per_second <= 0:
        return None
    return max(0.0, (total - done) / bytes_per_second)


class RateWindow:
    """Byte counts sampled over time; the rate over the last `window` seconds of them."""

    def __init__(self, window: float = WINDOW_SECONDS):
        self.window = window
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, at: float, done: int) -> None:
        """One sample: `done` bytes at time `at` (seconds, monotonic). A count that went back (a
        new file's count restarted, a new run) starts the window again."""
        if self._samples and done < self._samples[-1][1]:
            self._samples.clear()
        self._samples.append((at, done))
        # Keep one sample older than the window, so the span covers the whole window.
        while len(self._samples) > 2 and self._samples[1][0] <= at - self.window:
            self._samples.popleft()

    def bytes_per_second(self) -> float | None:
        """The rate over the samples in the window; None with too short a span."""
        if len(self._samples) < 2:
            return None
        (t0, d0), (t1, d1) = self._samples[0], self._samples[-1]
        return rate(d1 - d0, t1 - t0)


def rate_words(bytes_per_second: float | None) -> str:
    """12_300_000 -> "12.3 MB/s"; unknown -> "— MB/s"."""
    if bytes_per_second is None:
        return "— MB/s"
    mb = bytes_per_second / 1e6
    return f"{mb:.1f} MB/s" if mb < 100 else f"{mb:.0f} MB/s"


def duration_words(seconds: float | None) -> str:
    """95 -> "1 min 35 s"; 7300 -> "2 h 2 min"; unknown -> "—"."""
    if seconds is None:
        return "—"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds and minutes < 10 else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def progress_words(done: int | None, total: int | None, bytes_per_second: float | None) -> str:
    """What a running transfer shows beside its bar: "12.3 MB/s · 4 min left", with "—" for what
    is not known ("— MB/s · time left —")."""
    left = time_left(done, total, bytes_per_second)
    return f"{rate_words(bytes_per_second)} · " + (
        f"{duration_words(left)} left" if left is not None else "time left —")
