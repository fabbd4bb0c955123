"""Central's DP node: where it listens and the address endpoints download central's files from.

Endpoints do not download central's files from the console's processes (a few slow downloads
held every console thread): central runs the lean DP node on its own content root, in
downloads-only mode, on a port of its own (`flask --app wsgi dp-node central`, started by
`make run`). Central signs the links with a key it shares with that node (DEPOT_CENTRAL_DP_KEY).
"""
from urllib.parse import urlsplit

from portal.core.errors import DepotError

MIN_KEY_LENGTH = 16  # what a DP node takes (portal.dpnode.MIN_KEY_LENGTH)


class CentralNodeMisconfigured(DepotError):
    """A setting of central's DP node will not do: said with the setting's name."""

    code = "central_dp_misconfigured"


def parse_bind(value, setting: str = "DEPOT_CENTRAL_DP_BIND") -> tuple[str, int]:
    """HOST:PORT (as gunicorn takes it) as (host, port)."""
    host, sep, port = str(value or "").strip().rpartition(":")
    if not sep or not host.strip("[]") or not port.isdigit() or int(port) > 65535:
        raise CentralNodeMisconfigured(f"{setting} must be HOST:PORT with a port from 0 to 65535, "
                                       f"such as 0.0.0.0:8081 (it is {value!r})")
    return host.strip("[]"), int(port)


def check_url(value, setting: str = "DEPOT_CENTRAL_DP_URL") -> str:
    """An http(s) address with a host and nothing after its path, without the trailing slash."""
    message = (f"{setting} must be the http:// or https:// address endpoints reach central's DP "
               f"node at, such as http://depot.example.com:8081 (it is {value!r})")
    try:
        parts = urlsplit(str(value).strip())
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number or too large
    except ValueError:
        raise CentralNodeMisconfigured(message) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or \
            parts.fragment:
        raise CentralNodeMisconfigured(message)
    return str(value).strip().rstrip("/")


def check_settings(bind, url, key, workers) -> tuple[str, int]:
    """Every setting of central's node checked, its (host, port) returned; the first that will
    not do raises CentralNodeMisconfigured naming it."""
    host, port = parse_bind(bind)
    if url:
        check_url(url)
    elif port == 0:
        raise CentralNodeMisconfigured("DEPOT_CENTRAL_DP_BIND has port 0 (any free port): set "
                                       "DEPOT_CENTRAL_DP_URL to the address endpoints reach it at")
    if not key or len(key) < MIN_KEY_LENGTH:
        raise CentralNodeMisconfigured(f"DEPOT_CENTRAL_DP_KEY must be at least {MIN_KEY_LENGTH} "
                                       "characters (unset: one is generated and kept in the "
                                       "instance folder)")
    if not isinstance(workers, int) or workers < 1:
        raise CentralNodeMisconfigured(f"DEPOT_CENTRAL_DP_WORKERS must be 1 or more (it is "
                                       f"{workers!r})")
    return host, port


def node_url(url, public_url, bind) -> str | None:
    """Where endpoints reach central's node: DEPOT_CENTRAL_DP_URL, else the host of central's
    public address (DEPOT_PUBLIC_URL or the asking request's) on the port the node listens on;
    None when neither is known."""
    if url:
        return check_url(url)
    _, port = parse_bind(bind)
    if not public_url:
        return None
    if port == 0:
        raise CentralNodeMisconfigured("DEPOT_CENTRAL_DP_BIND has port 0 (any free port): set "
                                       "DEPOT_CENTRAL_DP_URL to the address endpoints reach it at")
    parts = urlsplit(public_url)
    host = parts.hostname or "localhost"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme or 'http'}://{host}:{port}"
