"""The agent API's fast path: a WSGI middleware in front of the Flask app (inside ProxyFix, so the
client's address is already the forwarded one) that answers the two calls every endpoint makes
every minute when nothing happened since the last time:

- a quiet heartbeat (`POST /agent/v1/heartbeat` whose body and address are those of the last one
  written to the database): its time goes to Redis, written to the database in batches by the
  `flush_agent_seen` job every DEPOT_AGENT_SEEN_FLUSH seconds;
- an idle work poll (`GET /agent/v1/work` of a device whose idle marker equals its work version):
  no deployments.

One Redis round trip each (a Lua script: token -> device, the marker or facts, the rate limit,
last seen), no database, no Flask request, session, CSRF or login. Anything else (another path,
no or an unknown token, changed facts, work, Redis not answering, DEPOT_AGENT_LEAN=0) goes on to
the Flask routes unchanged, which answer it and write what lets the next one be fast (see
`portal.services.agent_cache`). The bodies answered are the routes' own, byte for byte, with the
same security headers (portal.web.headers).
"""
import hashlib
import io
import json
import logging
import time

from portal.blueprints.agent_api.limits import WINDOW
from portal.core.errors import error_body
from portal.services import agent_cache
from portal.web.headers import answer_headers

log = logging.getLogger(__name__)

HEARTBEAT, WORK = "/agent/v1/heartbeat", "/agent/v1/work"
MAX_BODY = 64 * 1024  # a heartbeat is a few hundred bytes; a bigger one takes the slow path

# ARGV: token hash, kind ("beat" or "work"), facts digest, now, rate window, its TTL, rate limit.
# Returns {0} unknown token, {1} not quiet/idle (slow path), {2} answered, {3, n} over the limit.
SCRIPT = """
local p = 'depot:agent:'
local id = redis.call('GET', p .. 'token:' .. ARGV[1])
if (not id) or id == '-' then return {0} end
if ARGV[2] == 'work' then
  local idle = redis.call('GET', p .. 'idle:' .. id)
  if (not idle) or idle ~= (redis.call('GET', p .. 'work:' .. id) or '-') then return {1} end
else
  if redis.call('GET', p .. 'facts:' .. id) ~= ARGV[3] then return {1} end
end
local rate = 'depot:agent-rate:device:' .. id .. ':' .. ARGV[5]
local count = redis.call('INCR', rate)
redis.call('EXPIRE', rate, ARGV[6])
if count > tonumber(ARGV[7]) then return {3, count} end
if ARGV[2] == 'beat' then redis.call('HSET', p .. 'seen', id, ARGV[4]) end
return {2, count}
"""


def _json(value) -> bytes:
    """As Flask's jsonify writes it (compact, keys sorted, a newline)."""
    return (json.dumps(value, separators=(",", ":"), sort_keys=True) + "\n").encode()


class AgentFastPath:
    """WSGI middleware: quiet heartbeats and idle polls answered from Redis, the rest passed on."""

    def __init__(self, app, wsgi_app):
        self.app = app
        self.wsgi_app = wsgi_app
        self._script = None
        self._answers = None  # (interval, report interval) -> (heartbeat body, work body)

    def __call__(self, environ, start_response):
        path, method = environ.get("PATH_INFO"), environ.get("REQUEST_METHOD")
        if path == HEARTBEAT and method == "POST":
            kind = "beat"
        elif path == WORK and method == "GET":
            kind = "work"
        else:
            return self.wsgi_app(environ, start_response)
        config = self.app.config
        if not config.get("DEPOT_AGENT_LEAN"):
            return self.wsgi_app(environ, start_response)
        scheme, _, secret = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not secret:
            return self.wsgi_app(environ, start_response)
        digest = ""
        if kind == "beat":
            body = self._body(environ)
            if body is None:
                return self.wsgi_app(environ, start_response)
            digest = agent_cache.facts_digest(body, environ.get("REMOTE_ADDR"))
        now = time.time()
        window = int(now // WINDOW)
        try:
            outcome = self._run(hashlib.sha256(secret.encode()).hexdigest(), kind, digest,
                                f"{now:.3f}", window, config["DEPOT_AGENT_RATE_LIMIT"])
        except agent_cache.REDIS_ERRORS as exc:
            log.warning("agent fast path skipped (Redis: %s)", exc)
            return self.wsgi_app(environ, start_response)
        if outcome[0] == 2:
            beat, work = self._bodies(config)
            return self._answer(start_response, "200 OK", beat if kind == "beat" else work,
                                answer_headers(self.app))
        if outcome[0] == 3:
            limit = config["DEPOT_AGENT_RATE_LIMIT"]
            wait = max(1, int((window + 1) * WINDOW - now + 0.999))
            return self._answer(start_response, "429 TOO MANY REQUESTS", _json(error_body(
                "rate_limited", f"more than {limit} calls a minute; try again in {wait} s")),
                [("Retry-After", str(wait)), *answer_headers(self.app)])
        return self.wsgi_app(environ, start_response)

    @staticmethod
    def _body(environ) -> bytes | None:
        """The request body, read once and put back for the Flask app; None when it has no
        Content-Length (chunked) or a large one: then the slow path reads it."""
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            return None
        if not 0 < length <= MAX_BODY:
            return None
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return body

    def _run(self, token_hash, kind, digest, now, window, limit):
        if self._script is None:
            from portal.extensions import redis_for

            self._script = redis_for(self.app).register_script(SCRIPT)
        return self._script(args=[token_hash, kind, digest, now, window, WINDOW + 5, limit])

    def _bodies(self, config) -> tuple[bytes, bytes]:
        key = (config["DEPOT_AGENT_INTERVAL"], config["DEPOT_AGENT_REPORT_INTERVAL"])
        if self._answers is None or self._answers[0] != key:
            beat = _json({"interval": key[0], "report_interval": key[1]})
            work = _json({"deployments": [], "interval": key[0]})
            self._answers = (key, (beat, work))
        return self._answers[1]

    @staticmethod
    def _answer(start_response, status: str, body: bytes, headers=()):
        start_response(status, [("Content-Type", "application/json"),
                                ("Content-Length", str(len(body))), *headers])
        return [body]


def init_app(app) -> None:
    """Put the fast path in front of the app (call before `web.init_app`, so that ProxyFix goes
    around it) and the hooks that keep its Redis state right."""
    agent_cache.install_session_hooks()
    app.wsgi_app = AgentFastPath(app, app.wsgi_app)
