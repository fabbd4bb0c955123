"""gunicorn's logger, with access log lines that hold no signature of a download link
(`--logger-class portal.core.gunicorn_logger.RedactingLogger`; see portal/core/log_redaction.py).
Imported by gunicorn only: a node on Windows has no gunicorn."""
from gunicorn.glogging import Logger

from portal.core.log_redaction import redact


class RedactingLogger(Logger):
    """Every atom of an access log line (the request line %(r)s, the query %(q)s, the Referer
    %(f)s, headers and environ values) with signatures redacted."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for key, value in list(atoms.items()):
            if isinstance(value, str) and "=" in value:
                atoms[key] = redact(value)
        return atoms
