"""Failures in Depot's words: a one-line summary of what went wrong for people, with the
technical output behind it kept line by line for a disclosure (a deployment's wimlib output)."""
import re
from dataclasses import dataclass, field

WIMLIB_FAILED = re.compile(r"^wimlib-imagex apply failed (?:with exit code (\d+)|\((\d+)\)):?\s*")
WIMLIB_EXIT = re.compile(r"ERROR: Exiting with error code (\d+):\s*(.*)", re.DOTALL)
# wimlib's own markers: where the lines of an output run together by an older server start.
WIMLIB_MARKERS = re.compile(r"\s+(?=\[ERROR\]|\[WARNING\]|ERROR:|WARNING:)")
MAX_LINES = 200
# Hints for the wimlib errors people meet; wimlib's own explanation says the rest.
WIMLIB_HINTS = {
    43: "the image is not a WIM file (a damaged copy, or not a WIM at all)",
    37: "the agent could not create a folder where it applies the image",
    18: "the image index does not exist in this WIM",
}


@dataclass(frozen=True)
class Failure:
    """What failed, in one line, and the output behind it (empty when there is none)."""

    summary: str
    lines: list[str] = field(default_factory=list)


def _lines(text: str) -> list[str]:
    if "\n" not in text:  # stored by a server that ran the lines together
        text = WIMLIB_MARKERS.sub("\n", text)
    return [line.rstrip() for line in text.splitlines() if line.strip()][:MAX_LINES]


def deployment_failure(error: str | None) -> Failure | None:
    """A failed deployment's error as a summary in words and the agent's output line by line;
    None when there is no error."""
    if not error or not error.strip():
        return None
    error = error.strip()
    started = WIMLIB_FAILED.match(error)
    if not started:
        lines = _lines(error)
        return Failure(lines[0], lines[1:] if len(lines) > 1 else [])
    output = error[started.end():]
    lines = _lines(output)
    code = int(started.group(1) or started.group(2))
    said = WIMLIB_EXIT.search("\n".join(lines))
    if said:
        code = int(said.group(1))
        explanation = " ".join(part.strip() for part in said.group(2).splitlines()).strip()
    else:
        explanation = ""
    reason = WIMLIB_HINTS.get(code) or explanation.rstrip(".") or "wimlib-imagex stopped"
    reason = reason[0].lower() + reason[1:]
    return Failure(f"The agent could not apply the image: {reason} (wimlib error {code}).",
                   lines)
