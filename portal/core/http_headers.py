"""The security headers every answer carries, the console's and a DP node's alike.

- `Content-Security-Policy`: the console runs only its own scripts and styles (no inline script,
  no inline style: the pages' behaviour is in static/depot.js, and htmx is told not to inject its
  indicator styles), may not be framed, posts forms only to itself (and to the OAuth providers'
  consent pages its Connect forms are redirected to), and has no <base>. A DP node serves JSON
  and files, never a page: nothing may run in what it answers (`sandbox`).
- `X-Frame-Options: DENY` for browsers older than frame-ancestors, `X-Content-Type-Options:
  nosniff`, and a Referrer-Policy that keeps URLs (signed links among them) to the site itself.
- `Strict-Transport-Security` (one year; no includeSubDomains, no preload: other hosts of the
  domain are not Depot's to decide for) when the console is behind HTTPS, as
  DEPOT_SECURE_COOKIES says: a browser that has seen it never tries http:// again, so nobody on
  the path can strip the TLS off the next visit.
- `Cache-Control: no-store` on answers that are made for one person (pages, API and agent JSON),
  never kept by a browser or a proxy: some show a secret once (an API token, an enrollment token,
  an installer). Static files keep the caching their server gives them.

Headers a view set itself are left as they are.
"""
from urllib.parse import urlsplit

NO_STORE = "no-store"
HSTS = "max-age=31536000"  # one year


def console_csp(form_targets=()) -> str:
    """The console's policy; `form_targets` are the origins (scheme://host[:port]) a form may
    be redirected to besides the console itself."""
    form_action = " ".join(["'self'", *sorted(set(form_targets))])
    return ("default-src 'self'; script-src 'self'; style-src 'self'; "
            f"object-src 'none'; frame-ancestors 'none'; form-action {form_action}; "
            "base-uri 'none'")


NODE_CSP = ("default-src 'none'; frame-ancestors 'none'; form-action 'none'; base-uri 'none'; "
            "sandbox")


def origin(url) -> str | None:
    """scheme://host[:port] of an http(s) URL, or None for anything else."""
    try:
        parts = urlsplit(str(url or "").strip())
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def console_headers(form_targets=(), https: bool = False) -> list[tuple[str, str]]:
    """Every console answer's security headers (Cache-Control is decided per answer); `https`:
    the console is reached over HTTPS only (HSTS)."""
    headers = [("Content-Security-Policy", console_csp(form_targets)),
               ("X-Frame-Options", "DENY"),
               ("X-Content-Type-Options", "nosniff"),
               ("Referrer-Policy", "same-origin")]  # Flask-WTF checks the Referer over HTTPS
    if https:
        headers.append(("Strict-Transport-Security", HSTS))
    return headers


NODE_HEADERS = [("Content-Security-Policy", NODE_CSP),
                ("X-Frame-Options", "DENY"),
                ("X-Content-Type-Options", "nosniff"),
                ("Referrer-Policy", "no-referrer")]

def add_missing(headers, pairs) -> None:
    """Set each (name, value) of `pairs` on a Werkzeug-style `headers` that lacks it."""
    for name, value in pairs:
        if name not in headers:
            headers[name] = value
