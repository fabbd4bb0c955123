"""Signatures of download links never reach a log: the request lines of Werkzeug's server and
gunicorn's access log (tests/dpnode/test_node_process.py reads a real node's) keep a link's path
and expiry, not its `sig`."""
import logging

import pytest

from portal.core.log_redaction import RedactingFilter, redact, redact_logger

SIG = "9f" * 32


@pytest.mark.parametrize("text, expected", [
    (f'"GET /dp/v1/download?path=Images%2Fa.wim&expires=1700000000&sig={SIG} HTTP/1.1" 200',
     '"GET /dp/v1/download?path=Images%2Fa.wim&expires=1700000000&sig=[redacted] HTTP/1.1" 200'),
    (f"/agent/v1/download?sig={SIG}&path=a&expires=1", "/agent/v1/download?sig=[redacted]&path=a&expires=1"),
    (f"https://dp/cloud-links/v1/3/download?path=a&SIG={SIG}", "https://dp/cloud-links/v1/3/download?path=a&SIG=[redacted]"),
    (f"?X-Amz-Signature={SIG}&X-Amz-Credential=AKIA%2F1", "?X-Amz-Signature=[redacted]&X-Amz-Credential=[redacted]"),
    ("/dp/v1/download?design=1&signal=2", "/dp/v1/download?design=1&signal=2"),
    ("GET /dp/v1/health HTTP/1.1", "GET /dp/v1/health HTTP/1.1"),
])
def test_redact(text, expected):
    assert redact(text) == expected


def test_werkzeugs_request_lines_are_redacted(caplog):
    """Is a request line Werkzeug logs (a format and its arguments) written without the
    signature, and a line without one left as it was?"""
    logger = logging.getLogger("test-werkzeug-like")
    redact_logger("test-werkzeug-like")
    redact_logger("test-werkzeug-like")  # once is enough
    assert sum(isinstance(f, RedactingFilter) for f in logger.filters) == 1
    with caplog.at_level(logging.INFO, logger="test-werkzeug-like"):
        logger.info('%s - - [%s] "%s" %s %s', "127.0.0.1", "now",
                    f"GET /dp/v1/download?path=a&expires=1&sig={SIG} HTTP/1.1", "200", "-")
        logger.info("%s answered %d", "health", 200)
    assert SIG not in caplog.text and "&sig=[redacted] HTTP/1.1" in caplog.text
    assert "health answered 200" in caplog.text


def test_both_apps_filter_werkzeugs_logger(app):
    """Do the console (`flask run`) and a node put the filter on Werkzeug's logger, and do
    `make run` and a node under gunicorn name the redacting logger class?"""
    from portal.dpnode import cli as node_cli
    from portal.launcher import _children

    assert any(isinstance(f, RedactingFilter) for f in logging.getLogger("werkzeug").filters)
    web = _children("redis://x", "8080")["web"]
    assert web[web.index("--logger-class") + 1] == "portal.core.gunicorn_logger.RedactingLogger"
    assert node_cli.GUNICORN_LOGGER == "portal.core.gunicorn_logger.RedactingLogger"
