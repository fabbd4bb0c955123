"""Answers from outside: what a DP node or a cloud provider sends back, read typed and bounded.

Central stores what a DP says (free space, file sizes, hashes) and shows it on pages everyone
opens, so nothing a DP answers is taken as it came: a number must be a whole number within the
column it goes to (never a bool, a float or a string of digits unless the provider sends sizes
as strings), a text must be a string of bounded length without control characters, a body
must be a JSON object of bounded size and depth. What fails is `UnreadableAnswer`, whose message
is Depot's own (the field that was wrong, never the value the DP sent).
"""
import re
import socket
import ssl
from typing import Iterable, Iterator
from urllib.parse import urlsplit

import requests

from portal.core import jsonbody
from portal.core.errors import StorageRefused
from portal.core.files import FileEntry

MAX_BYTES = 2**63 - 1  # a BigInteger column
MIN_TIME_NS = -(2**63)
MAX_BODY = 1024 * 1024  # a JSON answer of a DP (health, an upload's state, a delta plan)
MAX_LINE = 64 * 1024  # one line of a DP node's inventory
MAX_TEXT = 200
MAX_PATH = 4096  # an escaped path (a byte may take three characters)
SHA256_RE = re.compile(r"[0-9a-f]{64}")
UPLOAD_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069"
                         r"\ud800-\udfff]")
# In a path (escaped as portal.core.names does) and a file's error, which quote names as they
# are: no control characters or lone surrogates (no database stores those), any other letter.
_PATH_BAD_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


class UnreadableAnswer(StorageRefused):
    """A DP answered something Depot cannot read (a wrong type, a number out of range, a body
    too large or too deep): refused; the message names the answer and the field, not the value."""

    code = "dp_answer_unreadable"


class _Bad(ValueError):
    """One field of an answer is wrong (`field`, and what it should have been)."""


def whole(value, field: str, *, low: int = 0, high: int = MAX_BYTES, digits: bool = False) -> int:
    """A whole number in [low, high]; with `digits`, a string of digits too (Drive and others
    send 64-bit sizes as strings). Bools, floats and anything else are refused."""
    if digits and isinstance(value, str) and 0 < len(value) <= 20 and value.isascii() \
            and (value.isdigit() or (value[0] == "-" and value[1:].isdigit())):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad(f"{field} is not a whole number")
    if not low <= value <= high:
        raise _Bad(f"{field} is out of range")
    return value


def optional_whole(value, field: str, **kw) -> int | None:
    return None if value is None else whole(value, field, **kw)


def text(value, field: str, max_length: int = MAX_TEXT, *, names: bool = False) -> str:
    """A string of at most `max_length` characters, with no control or direction characters
    (with `names`, a path or a message quoting file names: direction characters allowed)."""
    if not isinstance(value, str):
        raise _Bad(f"{field} is not a text")
    if len(value) > max_length:
        raise _Bad(f"{field} is longer than {max_length} characters")
    if (_PATH_BAD_RE if names else _CONTROL_RE).search(value):
        raise _Bad(f"{field} holds control characters")
    return value


def optional_text(value, field: str, max_length: int = MAX_TEXT, **kw) -> str | None:
    return None if value is None else text(value, field, max_length, **kw)


def sha256(value, field: str = "sha256") -> str | None:
    """A SHA-256 in lower-case hex, or None."""
    if value is None:
        return None
    if not isinstance(value, str) or not SHA256_RE.fullmatch(value):
        raise _Bad(f"{field} is not a SHA-256")
    return value


def shown(value, max_length: int = MAX_TEXT) -> str:
    """A text from outside made safe to show in a message: control characters dropped, cut to
    `max_length` (for the rare places a DP's own words are passed on, such as a node's reason
    for refusing an upload)."""
    if not isinstance(value, str):
        return ""
    cleaned = _CONTROL_RE.sub("", value)
    return cleaned if len(cleaned) <= max_length else cleaned[:max_length - 1] + "…"


def parse_object(data: bytes | str, what: str) -> dict:
    """A JSON object of bounded size and depth (`what` names the answer in the message)."""
    if len(data) > MAX_BODY:
        raise UnreadableAnswer(f"{what} is larger than Depot reads ({MAX_BODY // 1024} KiB)")
    try:  # jsonbody's reader, as for the bodies Depot is sent: depth-limited, never a
        body = jsonbody.loads(data, strict=False)  # RecursionError; NaN as json.loads takes it
    except jsonbody.TooDeep:
        raise UnreadableAnswer(f"{what} nests deeper than Depot reads") from None
    except ValueError:
        raise UnreadableAnswer(f"{what} is not JSON") from None
    if not isinstance(body, dict):
        raise UnreadableAnswer(f"{what} is not a JSON object")
    return body


def read_body(response, what: str, limit: int = MAX_BODY) -> bytes:
    """The body of a streamed `requests` response, refused past `limit` bytes (read no further)."""
    parts, size = [], 0
    for block in response.iter_content(64 * 1024):
        size += len(block)
        if size > limit:
            response.close()
            raise UnreadableAnswer(f"{what} is larger than Depot reads ({limit // 1024} KiB)")
        parts.append(block)
    return b"".join(parts)


def lines(blocks: Iterable[bytes], what: str, limit: int = MAX_LINE) -> Iterator[bytes]:
    """The lines of a streamed body (`blocks`), each refused past `limit` bytes."""
    pending = b""
    for block in blocks:
        pending += block
        *complete, pending = pending.split(b"\n")
        for line in complete:
            if len(line) > limit:
                raise UnreadableAnswer(f"{what} has a line longer than Depot reads")
            yield line
        if len(pending) > limit:
            raise UnreadableAnswer(f"{what} has a line longer than Depot reads")
    if pending:
        yield pending


def reading(what: str):
    """A context in which a wrong field (`_Bad`) becomes UnreadableAnswer: "<what> Depot cannot
    read (<field> is not a whole number)"."""
    return _Reading(what)


class _Reading:
    def __init__(self, what: str):
        self.what = what

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if kind is not None and issubclass(kind, (_Bad, KeyError, TypeError, AttributeError)):
            if isinstance(exc, _Bad):
                detail = str(exc)
            elif isinstance(exc, KeyError) and exc.args and isinstance(exc.args[0], str) \
                    and len(exc.args[0]) < 40:
                detail = f"{exc.args[0]} is missing"
            else:
                detail = "a field is missing or of the wrong type"
            raise UnreadableAnswer(f"{self.what} Depot cannot read ({detail})") from None
        return False


# --- failures in Depot's words ------------------------------------------------------------------

def failure_kind(exc: BaseException) -> str:
    """What kind of connection failure an exception (and its chain) is: "timeout", "refused",
    "name", "tls", "reset", "unreachable" or "failed"; read from the classes and their words,
    which are never shown."""
    chain, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__ or (exc.args[0] if exc.args and isinstance(
            exc.args[0], BaseException) else None)
        reason = getattr(chain[-1], "reason", None)
        if exc is None and isinstance(reason, BaseException):
            exc = reason
    tests = (
        ("timeout", lambda f, w: isinstance(f, (requests.Timeout, socket.timeout, TimeoutError))
         or "timed out" in w or "timeout" in w),
        ("refused", lambda f, w: isinstance(f, ConnectionRefusedError)
         or "connection refused" in w or "errno 111" in w),
        ("name", lambda f, w: isinstance(f, socket.gaierror) or "name or service not known" in w
         or "failed to resolve" in w),
        ("tls", lambda f, w: isinstance(f, (ssl.SSLError, requests.exceptions.SSLError))),
        ("reset", lambda f, w: isinstance(f, ConnectionResetError)),
        ("unreachable", lambda f, w: "no route to host" in w or "network is unreachable" in w
         or "could not connect" in w),
    )
    words = [str(failure).lower() for failure in chain]
    for kind, test in tests:  # the most telling kind anywhere in the chain wins
        if any(test(failure, said) for failure, said in zip(chain, words)):
            return kind
    return "failed"


def failure_words(exc: BaseException, timeout: float | None = None) -> str:
    """Why a connection failed, in Depot's words: never the exception's class or text, which
    may carry what a server answered or the URL it was given."""
    kind = failure_kind(exc)
    if kind == "timeout":
        return "it did not answer" + (f" within {timeout:g} s" if timeout else "")
    return {"refused": "it refused the connection",
            "name": "its name does not resolve to an address",
            "tls": "the TLS handshake failed (is it the node's https:// URL?)",
            "reset": "it closed the connection",
            "unreachable": "it could not be reached"}.get(kind, "the connection failed")


def unreachable_words(exc: BaseException | None, where: str, timeout: float | None = None,
                      kind: str | None = None) -> str:
    """Why Depot could not talk to `where` (host:port), as a sentence that starts from what
    Depot tried: "Depot could not connect to seattle.example:8443 (connection refused)"."""
    kind = kind or failure_kind(exc)
    host = where.rsplit(":", 1)[0] if where.count(":") == 1 else where
    if kind == "timeout":
        return f"{where} did not answer" + (f" within {timeout:g} s" if timeout else " in time")
    return {
        "refused": f"Depot could not connect to {where} (connection refused)",
        "name": f"Depot could not find {host}: the name does not resolve to an address",
        "tls": f"Depot could not make a secure connection to {where}: the TLS handshake "
               "failed (is it an https:// address, on the right port?)",
        "reset": f"{where} closed the connection before it answered",
        "unreachable": f"Depot could not reach {where} (no route to it from this server)",
    }.get(kind, f"Depot could not connect to {where}")


def failure_detail(exc: BaseException | None, asked: str) -> str:
    """The technical account of a failed connection for a disclosure: what was asked and the
    chain of exception classes (with an errno), never their texts (a server's words, a URL)."""
    names, seen = [], set()
    while exc is not None and id(exc) not in seen and len(names) < 6:
        seen.add(id(exc))
        errno = getattr(exc, "errno", None)
        names.append(type(exc).__name__ + (f" (errno {errno})" if isinstance(errno, int) else ""))
        nxt = exc.__cause__ or exc.__context__ or getattr(exc, "reason", None)
        if nxt is None and exc.args and isinstance(exc.args[0], BaseException):
            nxt = exc.args[0]
        exc = nxt if isinstance(nxt, BaseException) else None
    return f"{asked}: " + (" ← ".join(names) if names else "no answer")


def host_port(url: str) -> str:
    """host:port of a URL as people type it (the scheme's default port when none is given)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    port = port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or ""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --- what the answers hold --------------------------------------------------------------------

def space(free, total, what: str = "the DP answered a free space") -> tuple[int | None, int | None]:
    """(free, total) bytes, each a whole number in a BigInteger or None."""
    with reading(what):
        return optional_whole(free, "free_bytes"), optional_whole(total, "total_bytes")


def size_of(value, what: str) -> int:
    """A file's size in a provider's listing (a number, or digits in a string as Drive sends;
    absent is 0), or UnreadableAnswer naming `what` ("OneDrive answered a listing")."""
    with reading(what):
        return whole(0 if value is None else value, "size", digits=True)


def quota(free, total, what: str) -> tuple[int | None, int | None]:
    """(free, total) of a provider's quota: whole numbers (digits in strings taken), free never
    below 0 (an account over its quota), or UnreadableAnswer naming `what`."""
    with reading(what):
        free = optional_whole(free, "free space", low=-MAX_BYTES, digits=True)
        total = optional_whole(total, "total space", digits=True)
    return (None if free is None else max(0, free)), total


def health(body: dict, name: str) -> dict:
    """A DP node's /health: {status, version, free_bytes, total_bytes, reserve_bytes, features}."""
    with reading(f"{name} answered a health report"):
        if not isinstance(body, dict):
            raise _Bad("it is not a JSON object")
        features = body.get("features") or []
        if not isinstance(features, list) or len(features) > 50:
            raise _Bad("features is not a short list")
        status = text(body.get("status"), "status", 20)
        if status != "ok":
            raise _Bad("its status is not ok")
        return {
            "status": status,
            "version": text(body.get("version"), "version", 64),
            "free_bytes": optional_whole(body.get("free_bytes"), "free_bytes"),
            "total_bytes": optional_whole(body.get("total_bytes"), "total_bytes"),
            "reserve_bytes": optional_whole(body.get("reserve_bytes"), "reserve_bytes"),
            "features": [text(f, "a feature", 40) for f in features],
        }


def entry(item: FileEntry, what: str) -> FileEntry:
    """A file a DP listed (`what`: "Seattle's inventory"), checked before it reaches the
    inventory: path, size and time within their columns, hashes in their forms."""
    with reading(what):
        text(item.path, "a file's path", MAX_PATH, names=True)
        whole(item.size, "a file's size")
        whole(item.mtime_ns, "a file's time", low=MIN_TIME_NS)
        sha256(item.sha256)
        optional_text(item.error, "a file's error", 500, names=True)
        hashes(item.hashes, "a file's hashes are not a short object")
    return item


def placed(result: dict, what: str) -> dict:
    """What a DP says of a file an upload placed: {size, mtime_ns, sha256, hashes?}."""
    with reading(what):
        if not isinstance(result, dict):
            raise _Bad("it is not a JSON object")
        whole(result["size"], "size")
        whole(result["mtime_ns"], "mtime_ns", low=MIN_TIME_NS)
        sha256(result.get("sha256"))
        hashes(result.get("hashes"), "hashes is not a short object")
    return result


def hashes(value, not_short: str) -> None:
    """A file's other hashes, if any: {name: digest}, at most 8 (`not_short`: the message)."""
    if value is None:
        return
    if not isinstance(value, dict) or len(value) > 8:
        raise _Bad(not_short)
    for kind, digest in value.items():
        text(kind, "a hash's name", 20)
        text(digest, "a hash", 200)


def upload_id(value) -> str:
    """The name a DP node gave an upload (it goes into the URL of the calls that follow)."""
    if not isinstance(value, str) or not UPLOAD_ID_RE.fullmatch(value):
        raise _Bad("id is not an upload's name")
    return value
