"""A failed deployment in Depot's words: a one-line summary, with the agent's output (wimlib's)
line by line behind a disclosure."""
import os
import shutil
import subprocess

import pytest
from sqlalchemy import select

from portal.agent.runner import apply_failure, terminal_lines
from portal.extensions import db
from portal.models import Deployment, Notification
from portal.services.agents import text_lines_fact
from portal.services.failures import deployment_failure
from tests.factories import write_file

# What wimlib-imagex 1.14 prints applying a file that is not a WIM (used where it is missing).
NOT_A_WIM = (b'[ERROR] "/x/Win11.wim": Invalid magic characters in header\n'
             b"ERROR: Exiting with error code 43:\n"
             b"       The file did not begin with the magic characters that identify a WIM file.\n")
SUMMARY_43 = ("The agent could not apply the image: the image is not a WIM file (a damaged copy, "
              "or not a WIM at all) (wimlib error 43).")


def wimlib_output(tmp_path) -> tuple[int, bytes]:
    """(exit code, output) of applying random bytes with the real wimlib-imagex, when here."""
    wimlib = shutil.which("wimlib-imagex")
    if not wimlib:
        return 43, NOT_A_WIM
    bad = tmp_path / "Win11.wim"
    bad.write_bytes(os.urandom(4096))
    done = subprocess.run([wimlib, "apply", str(bad), "1", str(tmp_path / "out")],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    return done.returncode, done.stdout


@pytest.fixture
def image(central, rescan):
    """Images/Win11.wim at central, scanned (its bytes do not matter: the report is the test's)."""
    write_file(central.root, "Images/Win11.wim", b"w" * 1000)
    rescan(central)
    return "Images/Win11.wim"


def report(agent_calls, token, deployment, **body):
    return agent_calls.call("POST", f"/deployments/{deployment.id}/progress", token, json=body)


def test_a_wimlib_failure_is_a_summary_with_the_output_disclosed(
        agent_calls, enroll_secret, central, image, deploy, login_as, tmp_path):
    """Does a failed apply read as one sentence on the deployment's page and in the bell, with
    wimlib's output kept line by line inside a <details>?"""
    code, output = wimlib_output(tmp_path)
    error = apply_failure(code, output)
    device_id, token = agent_calls.enrolled(enroll_secret)
    deployment = deploy(device_id, central, image)
    report(agent_calls, token, deployment, seq=1, state="downloading")
    assert report(agent_calls, token, deployment, seq=2, state="failed",
                  error=error).status_code == 200
    row = db.session.get(Deployment, deployment.id)
    db.session.refresh(row)
    lines = row.error.splitlines()
    assert lines[0] == "wimlib-imagex apply failed with exit code 43"
    assert lines[1].startswith("[ERROR]")
    assert lines[1].endswith("Invalid magic characters in header")
    assert lines[2] == "ERROR: Exiting with error code 43:"
    html = login_as("admin").get(f"/deployments/{deployment.id}").get_data(as_text=True)
    assert SUMMARY_43 in html
    assert "<summary class=\"small\">The agent's output</summary>" in html
    assert "Invalid magic characters in header\nERROR: Exiting with error code 43:\n" in html
    note = db.session.scalars(select(Notification).where(
        Notification.kind == "deployment.failed")).first()
    assert note.message.endswith(f"failed: {SUMMARY_43}") and "[ERROR]" not in note.message


def test_summaries_of_other_failures_and_older_run_together_errors():
    """Is an older error (lines run together) split at wimlib's markers, an unknown wimlib code
    told in wimlib's own explanation, and any other error's first line its summary?"""
    old = ('wimlib-imagex apply failed (43): [ERROR] "/x.wim": Invalid magic characters in '
           "header ERROR: Exiting with error code 43: The file did not begin with the magic "
           "characters that identify a WIM file.")
    failure = deployment_failure(old)
    assert failure.summary == SUMMARY_43
    assert failure.lines[0].startswith("[ERROR]") and failure.lines[1].startswith("ERROR: Exit")
    full = apply_failure(71, b"[ERROR] Write error\nERROR: Exiting with error code 71:\n"
                             b"       Failed to write data to a file.\n")
    assert deployment_failure(full).summary == ("The agent could not apply the image: failed to "
                                                "write data to a file (wimlib error 71).")
    plain = deployment_failure("hash mismatch: Images/Win11.wim at Central")
    assert plain.summary == "hash mismatch: Images/Win11.wim at Central" and plain.lines == []
    assert deployment_failure("download failed\nretry 1\nretry 2").lines == ["retry 1", "retry 2"]
    assert deployment_failure(None) is None and deployment_failure("  ") is None


def test_progress_redraws_and_control_characters_do_not_reach_the_page():
    """Are wimlib's carriage-return progress lines collapsed to their last state (agent and
    server), control characters dropped line by line, and a long output cut from its start?"""
    out = "Applying image 1\n\rExtracting: 0%\rExtracting: 50%\rExtracting: 100% done\r\n[ERROR] x"
    assert terminal_lines(out) == "Applying image 1\nExtracting: 100% done\n[ERROR] x"
    kept = text_lines_fact({"error": "first\r\n\x1b[31mred\u202e\x07\n\n  indented"}, "error", 100)
    assert kept == "first\n[31mred\n  indented"
    long = text_lines_fact({"error": "head\n" + "\n".join(f"line {n}" for n in range(500))},
                           "error", 300)
    assert len(long) <= 300 and long.startswith("head\n…\n") and long.endswith("line 499")
    assert text_lines_fact({}, "error", 10) is None
