"""Signed download links out of logs: an access log line keeps the link's path and expiry, never
its signature (a link is valid for an hour, and the log is read by more people than the node).

- gunicorn (a node on Linux, central's node, the console): `--logger-class
  portal.core.gunicorn_logger.RedactingLogger`, which the node's and `make run`'s commands pass;
- Werkzeug's development server (`flask run`, the tests' in-process nodes): a filter on its
  logger (`redact_logger("werkzeug")`), installed by both apps;
- waitress and cheroot (a node on Windows) write no access log.
"""
import logging
import re

# The query parameters that make a link: `sig` of Depot's own (portal.core.signing), and the
# ones of an S3 presigned URL, should one be logged.
SECRET_PARAMS = ("sig", "X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token")
REDACTED = "[redacted]"
_SECRET = re.compile(r"(?i)((?:^|[?&;\s\"'])(?:%s)=)[^&;\s\"']*" % "|".join(
    re.escape(p) for p in SECRET_PARAMS))


def redact(text: str) -> str:
    """`text` with the value of every signature parameter of a URL in it replaced."""
    if "=" not in text:
        return text
    return _SECRET.sub(r"\1" + REDACTED, text)


class RedactingFilter(logging.Filter):
    """A logging filter that takes signatures out of a record's message (formatted first)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


def redact_logger(name: str) -> None:
    """Put the filter on the logger `name` once (Werkzeug's request lines: "werkzeug")."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
